"""The agent's certificate work (create a CA, issue, sign, verify), done by a signer child
process (security/signer_process.py) so that the agent never loads `cryptography`.

A node that creates a cluster or admits nodes used to keep that library resident for good:
about fourteen MiB, a quarter of an idle agent. The signer is started when there is signing
to do, answers requests one at a time over its standard input and output, and exits after
`IDLE_EXIT` seconds without one: an idle node holds none of it. What it costs instead: a
first request waits for the child to start (~0.1 s; `warm` starts it ahead, when a join's
first request or a create arrives), and each request a pipe round trip (~0.2 ms).

Requests run on one worker thread of this module's own, never on the event loop: the pipe I/O
blocks, and a second request waits for the first (the child is single-threaded anyway). A
child that dies before answering (it exited idle just as a request came, or was killed) is
replaced and the request sent once more: requests are pure functions of their arguments. One
that does not answer within `CALL_TIMEOUT` is killed and the caller gets `SignerUnavailable`
(503, retryable). A reaper thread per child collects its exit status, so no zombie is left.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import json
import logging
import os
import select
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from cnm.errors import CnmError, SignerUnavailable, error_class
from cnm.security.node_certs import CertKey

log = logging.getLogger(__name__)

# An idle child's life: longer than the gaps between the steps of one join, and between joins
# when nodes are added one after another.
IDLE_EXIT = 10.0
# Start (an interpreter importing `cryptography`: ~0.1 s, seconds on an overloaded machine)
# plus one answer.
CALL_TIMEOUT = 10.0
# Waiting behind other requests as well (twenty joins at once queue their certificates).
QUEUE_TIMEOUT = 30.0
_READ = 65536


class Signer:
    """One signer child at a time, started on demand; see the module docstring."""

    def __init__(
        self,
        *,
        idle: float = IDLE_EXIT,
        timeout: float = CALL_TIMEOUT,
        command: Sequence[str] | None = None,
    ) -> None:
        self._command = list(command) if command is not None else _child_command(idle)
        self._timeout = timeout
        self._state = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cnm-signer")
        # Children started so far (tests and the debug log).
        self.started = 0

    @property
    def pid(self) -> int | None:
        """The running child's pid, or None when there is none."""
        with self._state:
            proc = self._proc
            return proc.pid if proc is not None and proc.returncode is None else None

    def warm(self) -> None:
        """Have a child start now, on the worker thread, so that it is ready when a request
        comes; returns at once. A running child is left as it is: only requests keep it from
        its idle exit (GET /v1/join/ca, which anyone may send, warms it)."""
        proc = self._proc
        if proc is None or proc.returncode is not None:
            self._executor.submit(self._warm)

    def _warm(self) -> None:
        try:
            with self._state:
                self._running()
        except SignerUnavailable as exc:
            log.warning("%s", exc.message)

    def close(self) -> None:
        """End the current child, if any, after the requests already queued (it exits at the
        end of its input); returns at once. A later request starts a new one."""
        with contextlib.suppress(RuntimeError):  # the interpreter is exiting: so is the child
            self._executor.submit(self._forget, None)

    async def call(self, op: str, args: dict[str, Any]) -> Any:
        """The child's result of `op`; its error re-raised as the same cnm error (ValueError for
        a malformed argument); `SignerUnavailable` when no child answers."""
        line = json.dumps({"op": op, "args": args}, separators=(",", ":")).encode() + b"\n"
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(QUEUE_TIMEOUT):
                reply = await loop.run_in_executor(self._executor, self._exchange, line)
        except TimeoutError:
            raise SignerUnavailable(
                f"the certificate signer did not get to this request within {QUEUE_TIMEOUT:.0f} "
                "s (too many at once, or an overloaded machine); retry"
            ) from None
        if "ok" in reply:
            return reply["ok"]
        raise _error(reply.get("error"))

    # --- the worker thread ----------------------------------------------------------------

    def _running(self) -> subprocess.Popen[bytes]:
        """The live child, started if there is none (the caller holds `_state`)."""
        proc = self._proc
        if proc is not None and proc.returncode is None:
            return proc
        try:
            proc = subprocess.Popen(
                self._command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0
            )
        except OSError as exc:
            raise SignerUnavailable(f"could not start the certificate signer: {exc}") from None
        reaper = threading.Thread(target=self._reap, args=(proc,), daemon=True)
        reaper.name = f"cnm-signer-reaper-{proc.pid}"
        reaper.start()
        self._proc = proc
        self.started += 1
        log.debug("started the certificate signer (pid %d)", proc.pid)
        return proc

    def _exchange(self, line: bytes) -> dict[str, Any]:
        deadline = time.monotonic() + self._timeout
        for _ in range(2):
            with self._state:
                proc = self._running()
            reply = self._round_trip(proc, line, deadline)
            if reply is not None:
                return reply
            # It ended before answering: it reached its idle exit just as this request came,
            # or something killed it. A new one gets the request again.
            self._forget(proc)
        raise SignerUnavailable(
            "the certificate signer process (python -m cnm.security.signer_process) exited "
            "twice before answering; the agent's standard error says why"
        )

    def _round_trip(
        self, proc: subprocess.Popen[bytes], line: bytes, deadline: float
    ) -> dict[str, Any] | None:
        """The child's answer to `line`; None if it ended first."""
        assert proc.stdin is not None and proc.stdout is not None
        try:
            data = line
            while data:
                data = data[os.write(proc.stdin.fileno(), data) :]
        except BrokenPipeError:
            return None
        received = bytearray()
        fd = proc.stdout.fileno()
        while not received.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            ready = select.select([fd], [], [], max(remaining, 0))[0] if remaining > 0 else []
            if not ready:
                self._kill(proc)
                raise SignerUnavailable(
                    f"the certificate signer did not answer within {self._timeout:.0f} s "
                    "(an overloaded machine?); it was stopped, retry"
                )
            chunk = os.read(fd, _READ)
            if not chunk:
                return None
            received += chunk
        try:
            reply = json.loads(received)
        except ValueError:
            reply = None
        if not isinstance(reply, dict):
            self._kill(proc)
            raise SignerUnavailable("the certificate signer answered something unreadable")
        return reply

    def _reap(self, proc: subprocess.Popen[bytes]) -> None:
        """(Its own thread) Collect the child's exit status as soon as it exits, then have the
        worker close its pipes."""
        proc.wait()
        with contextlib.suppress(RuntimeError):  # the interpreter is exiting
            self._executor.submit(self._forget, proc)

    def _kill(self, proc: subprocess.Popen[bytes]) -> None:
        """(Worker thread) Drop a child that cannot be trusted to answer, and kill it."""
        self._forget(proc)
        proc.kill()

    def _forget(self, proc: subprocess.Popen[bytes] | None) -> None:
        """(Worker thread) Drop `proc` (None: the current child) and close our ends of its
        pipes; it exits at the end of its input if it has not already."""
        with self._state:
            if proc is None:
                proc = self._proc
            if proc is None:
                return
            if self._proc is proc:
                self._proc = None
        _close_pipes(proc)


def _close_pipes(proc: subprocess.Popen[bytes]) -> None:
    for pipe in (proc.stdin, proc.stdout):
        if pipe is not None:
            pipe.close()


def _child_command(idle: float) -> list[str]:
    return [sys.executable, "-m", "cnm.security.signer_process", "--idle", repr(float(idle))]


def _error(error: object) -> Exception:
    if not isinstance(error, dict):
        return SignerUnavailable("the certificate signer answered something unreadable")
    code, message = str(error.get("code")), str(error.get("message"))
    if code == "value_error":
        return ValueError(message)
    cls = error_class(code) or CnmError
    fields = error.get("fields")
    return cls(message, fields=fields) if fields else cls(message)


# --- the agent's signer and its operations ------------------------------------------------


@functools.cache
def shared() -> Signer:
    """This process's signer (made on first use)."""
    return Signer()


def warm() -> None:
    shared().warm()


def close_shared() -> None:
    """End this process's signer child, if one was ever made (agent stop)."""
    if shared.cache_info().currsize:
        shared().close()


def _ca(ca: CertKey) -> dict[str, str]:
    return {"cert_pem": ca.cert_pem.decode(), "key_pem": ca.key_pem.decode()}


def _pair(result: Any) -> CertKey:
    return CertKey(str(result["cert_pem"]).encode(), str(result["key_pem"]).encode())


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _text(pem: bytes) -> str:
    """A PEM as JSON text (bytes beyond ASCII, in no valid PEM, become U+FFFD)."""
    return pem.decode("ascii", errors="replace")


async def ready() -> None:
    """Return once a signer answers (a round trip, ~0.2 ms when one runs); `SignerUnavailable`
    if none can. The admission asks before it writes anything: a signer that cannot start
    then refuses the join cleanly instead of after the uid was allocated."""
    await shared().call("ping", {})


async def make_ca(cluster_name: str) -> CertKey:
    return _pair(await shared().call("make_ca", {"cluster_name": cluster_name}))


async def issue_node_cert(
    ca: CertKey, uid: int, sans: Sequence[str], *, lifetime: timedelta
) -> CertKey:
    args = {"ca": _ca(ca), "uid": uid, "sans": list(sans), "lifetime": lifetime.total_seconds()}
    return _pair(await shared().call("issue_node_cert", args))


async def issue_cert(ca: CertKey, common_name: str, sans: Sequence[str]) -> CertKey:
    args = {"ca": _ca(ca), "common_name": common_name, "sans": list(sans)}
    return _pair(await shared().call("issue_cert", args))


async def issue_store_client_cert(ca: CertKey, uid: int) -> CertKey:
    return _pair(await shared().call("issue_store_client_cert", {"ca": _ca(ca), "uid": uid}))


async def check_csr(csr_pem: bytes) -> None:
    await shared().call("check_csr", {"csr_pem": _text(csr_pem)})


async def sign_node_csr(
    ca: CertKey, csr_pem: bytes, *, uid: int, sans: Sequence[str], lifetime: timedelta
) -> bytes:
    args = {
        "ca": _ca(ca),
        "csr_pem": _text(csr_pem),
        "uid": uid,
        "sans": list(sans),
        "lifetime": lifetime.total_seconds(),
    }
    return str(await shared().call("sign_node_csr", args)).encode()


async def verify_chain(cert_pem: bytes, ca_pem: bytes) -> bool:
    args = {
        "cert_pem": _text(cert_pem),
        "ca_pem": _text(ca_pem),
    }
    return bool(await shared().call("verify_chain", args))


async def verify_data(cert_pem: bytes, data: bytes, signature: bytes) -> bool:
    args = {
        "cert_pem": _text(cert_pem),
        "data": _b64(data),
        "signature": _b64(signature),
    }
    return bool(await shared().call("verify_data", args))


async def make_csr(common_name: str, sans: Sequence[str]) -> tuple[bytes, bytes]:
    result = await shared().call("make_csr", {"common_name": common_name, "sans": list(sans)})
    return str(result["csr_pem"]).encode(), str(result["key_pem"]).encode()


async def sign_data(key_pem: bytes, data: bytes) -> bytes:
    args = {"key_pem": _text(key_pem), "data": _b64(data)}
    return base64.b64decode(str(await shared().call("sign_data", args)))


async def license_signature_verdict(
    public_keys: Sequence[str], signed: bytes, signature: bytes
) -> str | None:
    """cluster/license.py `signature_verdict`, in the signer process."""
    args = {"public_keys": list(public_keys), "signed": _b64(signed), "signature": _b64(signature)}
    verdict = await shared().call("license_signature_verdict", args)
    return None if verdict is None else str(verdict)
