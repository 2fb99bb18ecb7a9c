"""The agent process: one TaskGroup owns the API servers, the bootstrap task and the cluster
runtime; SIGTERM/SIGINT stop them in order (API first, then the store member) and exit 0.

Start-up order matters: a node that has no cluster to resume takes its restart decision before
the API listens. A completed node listens at once, while it brings its store member and snapshot
back: it knows it is in a cluster (status and local state on disk), so it never answers a request
without authentication; until its snapshot is loaded only its own GET /v1/bootstrap answers,
checked against its local copy of the users' verifiers (cluster/quorum.py `LocalUsers`).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

# httpx loads its transport (httpcore and anyio's asyncio backend) on the first request; load it
# at start so a node's first join does not pay for it mid-handshake.
import anyio._backends._asyncio  # noqa: F401
import httpcore  # noqa: F401

from cnm.api.app import create_app
from cnm.api.auth import Authenticator
from cnm.api.context import ApiContext
from cnm.api.server import ApiServers
from cnm.bootstrap.manager import BootstrapManager
from cnm.cluster import model
from cnm.cluster.runtime import ClusterRuntime
from cnm.config import NodeConfig
from cnm.errors import CnmError, ConfigError
from cnm.node.data_dir import DataDir, make_private_dir
from cnm.node.local_state import atomic_write_bytes
from cnm.node.malloc_tuning import tune_malloc
from cnm.ops.metrics import AgentMetrics
from cnm.ops.store_watch import watch_store
from cnm.security import signing
from cnm.security.passwords import PasswordVerifier

log = logging.getLogger(__name__)

# Making a P-256 key and a certificate takes well under a second, even on a loaded machine.
SELF_SIGNED_TIMEOUT = 60.0
# How long a stop gives the API to finish before every task is cancelled.
API_STOP_TIMEOUT = 5.0
# A stop still under way this long after it began, and again every as long, logs what each
# task waits at. After API_STOP_TIMEOUT, so what a report lists is stuck after its
# cancellation; before supervisors kill (~10 s).
STOP_REPORT_AFTER = 6.0
# Every task still running this long after the stop cancelled it is cancelled again, and again
# as often: a cancellation lost inside a library (asyncio.wait_for lost one on Python 3.11,
# bench/README.md "Fixed: agents that never exited") must not hold the stop for ever. Long
# enough for any cleanup a cancellation starts (closing connections: 1 s at most).
RECANCEL_AFTER = 3.0


def ensure_self_signed(data_dir: Path, addr: str) -> tuple[Path, Path]:
    """The pre-bootstrap HTTPS certificate, made at first start and kept (key 0600)."""
    tls = DataDir(data_dir).self_signed_tls
    cert_file, key_file = tls.cert_file, tls.key_file
    if not (cert_file.exists() and key_file.exists()):
        tls.directory.mkdir(parents=True, exist_ok=True)
        # In a child process: `cryptography` would otherwise stay loaded in the agent for good
        # (security/make_self_signed.py).
        command = [
            sys.executable,
            "-m",
            "cnm.security.make_self_signed",
            f"cnm node {addr}",
            str(key_file),
            str(cert_file),
            addr,
            socket.gethostname(),
        ]
        try:
            made = subprocess.run(
                command, capture_output=True, text=True, timeout=SELF_SIGNED_TIMEOUT, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ConfigError(f"could not make the self-signed HTTPS certificate: {exc}") from None
        if made.returncode != 0:
            raise ConfigError(
                f"could not make the self-signed HTTPS certificate {cert_file} (exit "
                f"{made.returncode}): {made.stderr.strip()[-500:]}"
            )
        log.info("made the self-signed HTTPS certificate %s", cert_file)
    return cert_file, key_file


def freeze_start_up_objects() -> int:
    """Move every object alive now (the imported modules, the app, the routes: ~75 000) out of
    reach of the cyclic garbage collector; how many were moved.

    They live as long as the process, yet each full collection walked all of them: 70 to 200
    ms on the loaded 2-core test machine, during which every request in flight waits (at 16
    connections, 16 requests late at once: the tail of GET /v1/bootstrap). Frozen, a full
    collection walks only what was made since. Reference counting still frees frozen objects;
    only cycles among them (none that matter: start-up garbage) are never collected."""
    gc.freeze()
    return gc.get_freeze_count()


def ensure_default_paths(config: NodeConfig) -> None:
    """Create the configured storage paths, as the product's installer does; a path that cannot
    be created is left for the bootstrap checks to report as `path_error`."""
    for path in (config.persistent_path, config.ephemeral_path):
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            log.warning("cannot create %s: %s", path, exc)


def remember_http_support(data_dir: Path, enabled: bool) -> None:
    """Keep the cluster's `http_support` for the next start (written only when it changes)."""
    path = DataDir(data_dir).http_support_file
    value = b"true" if enabled else b"false"
    try:
        if not path.exists() or path.read_bytes() != value:
            # Not synced: this runs before a create or join reports `completed`, and a file
            # lost or emptied by a machine crash reads as "true", HTTP's default, until the
            # snapshot says otherwise a moment after the start.
            atomic_write_bytes(path, value, durable=False)
    except OSError as exc:
        log.warning("could not keep the cluster's http_support in %s: %s", path, exc)


def remembered_http_support(data_dir: Path) -> bool:
    """The cluster's `http_support` as last seen (True when never seen: HTTP's default)."""
    try:
        return DataDir(data_dir).http_support_file.read_bytes().strip() != b"false"
    except OSError:
        return True


class NodeAgent:
    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        self._tasks: asyncio.TaskGroup | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._stopping = asyncio.Event()
        self.servers: ApiServers | None = None
        self.verifier = PasswordVerifier(ttl_seconds=config.auth_cache_seconds)
        self.metrics = AgentMetrics()

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        assert self._tasks is not None
        task = self._tasks.create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def _on_completed(
        self, runtime: ClusterRuntime, credentials: tuple[str, str] | None
    ) -> None:
        tls = DataDir(self.config.data_dir).cluster_tls
        assert self.servers is not None
        self.servers.use_certificate(tls.cert_file, tls.key_file)
        servers = self.servers
        runtime.certificate_listeners.append(
            lambda: servers.use_certificate(tls.cert_file, tls.key_file)
        )
        if credentials is not None:
            # The client polls next with the credentials it just bootstrapped with; they are
            # proven (hashed here at create, accepted by the cluster at join).
            user = runtime.snapshot.user_by_login(credentials[0])
            if user is not None and user.password_hash:
                self.verifier.remember(*credentials, user.password_hash)

        def apply_http_support() -> None:
            cluster = runtime.snapshot.cluster()
            if cluster is not None and self.servers is not None:
                self.servers.set_http_support(cluster.http_support)
                remember_http_support(self.config.data_dir, cluster.http_support)

        def on_change(key: str) -> None:
            if key.startswith((model.USERS_PREFIX, model.USER_LOGIN_PREFIX)):
                self.verifier.flush()
            elif key == model.CLUSTER_KEY:
                apply_http_support()

        runtime.snapshot.add_listener(on_change)
        apply_http_support()
        self._spawn(self._run_cluster(runtime))

    async def _run_cluster(self, runtime: ClusterRuntime) -> None:
        """The runtime and its store probe, until the node is removed from the cluster."""
        probe = asyncio.create_task(watch_store(self.metrics, runtime))
        try:
            await runtime.run()
        finally:
            probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await probe

    def _on_left(self) -> None:
        """Removed from its cluster: the node serves its self-signed certificate again and
        forgets the credentials it had checked."""
        assert self.servers is not None
        tls = DataDir(self.config.data_dir).self_signed_tls
        self.servers.use_certificate(tls.cert_file, tls.key_file)
        # Before bootstrap HTTP is always open, whatever the cluster had decided.
        self.servers.set_http_support(True)
        DataDir(self.config.data_dir).http_support_file.unlink(missing_ok=True)
        self.verifier.flush()

    def request_stop(self) -> None:
        self._stopping.set()

    async def run(self) -> int:
        config = self.config
        make_private_dir(config.data_dir)
        agent_log = DataDir(config.data_dir).agent_log
        if agent_log.exists():
            # A supervisor made it (cnm local, the tests); whatever umask it had, only the
            # node's account reads its log.
            agent_log.chmod(0o600)
        ensure_default_paths(config)
        cert_file, key_file = ensure_self_signed(config.data_dir, config.addr)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        manager: BootstrapManager | None = None
        report: _Every | None = None
        recancel: _Every | None = None
        try:
            async with asyncio.TaskGroup() as tasks:
                self._tasks = tasks
                manager = BootstrapManager(
                    config, spawn=self._spawn, on_completed=self._on_completed
                )
                manager.left_listeners.append(self._on_left)
                context = ApiContext(
                    config, manager, Authenticator(self.verifier), metrics=self.metrics
                )
                self.servers = ApiServers(
                    create_app(context),
                    host=config.addr,
                    http_port=config.http_port,
                    https_port=config.https_port,
                    cert_file=cert_file,
                    key_file=key_file,
                )
                servers = self.servers

                def serve() -> tuple[asyncio.Task[None], asyncio.Task[None]]:
                    log.info(
                        "serving on http://%s:%d and https://%s:%d",
                        config.host,
                        config.http_port,
                        config.host,
                        config.https_port,
                    )
                    return (
                        tasks.create_task(servers.serve_http(), name="http"),
                        tasks.create_task(servers.serve_https(), name="https"),
                    )

                listening = None
                if manager.will_resume() is not None:
                    # A completed node listens before its store member and snapshot are back
                    # (a second or more): GET /v1/bootstrap is answered from the node's copy
                    # of the users' verifiers, every other route says 503 "starting"
                    # (api/context.py); it never answers without credentials.
                    tls = DataDir(config.data_dir).cluster_tls
                    if tls.cert_file.exists() and tls.key_file.exists():
                        servers.use_certificate(tls.cert_file, tls.key_file)
                    # Port 8080 as the cluster had it (closed: HTTPS only) until it is read.
                    servers.set_http_support(remembered_http_support(config.data_dir))
                    listening = serve()
                try:
                    decision = await manager.restore()
                except CnmError as exc:
                    decision = f"could not resume the cluster: {exc.message}"
                    log.error("%s; the node answers 503 until it is restarted", decision)
                log.info("restart decision: %s", decision)
                if listening is not None and manager.runtime is None:
                    # Not resumed after all (replaced, refused): served as a node outside a
                    # cluster, its own certificate and plain HTTP open.
                    servers.use_certificate(cert_file, key_file)
                    servers.set_http_support(True)
                frozen = freeze_start_up_objects()
                log.debug("%d start-up objects kept out of garbage collection", frozen)
                http, https = listening or serve()
                stop = tasks.create_task(self._stopping.wait())
                await asyncio.wait([http, https, stop], return_when=asyncio.FIRST_COMPLETED)
                log.info("stopping: API first, then the cluster store member")
                report = _stop_reports(loop)
                self.servers.stop()
                await asyncio.wait([http, https], timeout=API_STOP_TIMEOUT)
                # uvicorn bounds its graceful shutdown; should it still run, it is cancelled
                # like everything else rather than hold the agent's exit.
                for task in (http, https, stop, *self._background):
                    task.cancel()
                recancel = _recanceller(loop, keep=asyncio.current_task())
        finally:
            if recancel is not None:
                recancel.cancel()
            if manager is not None and manager.runtime is not None:
                with contextlib.suppress(Exception):
                    await manager.runtime.stop()
            self.verifier.close()
            # The signer child would end with the agent anyway (its input closes): say so now.
            signing.close_shared()
            if report is not None:
                report.cancel()
            # Closing the loop puts SIGTERM back to its default action; a second SIGTERM from
            # a supervisor in the last instants must not turn a clean exit into a kill.
            loop.remove_signal_handler(signal.SIGTERM)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        log.info("stopped")
        return 0


class _Every:
    """`action()` every `interval` seconds from its making until `cancel`."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, interval: float, action: Callable[[], None]
    ) -> None:
        self._loop = loop
        self._interval = interval
        self._action = action
        self._handle = loop.call_later(interval, self._run)

    def _run(self) -> None:
        self._action()
        self._handle = self._loop.call_later(self._interval, self._run)

    def cancel(self) -> None:
        self._handle.cancel()


def _stop_reports(loop: asyncio.AbstractEventLoop) -> _Every:
    """`_report_unfinished` every STOP_REPORT_AFTER seconds from now."""
    began = loop.time()
    return _Every(loop, STOP_REPORT_AFTER, lambda: _report_unfinished(loop.time() - began))


def _recanceller(loop: asyncio.AbstractEventLoop, *, keep: asyncio.Task[Any] | None) -> _Every:
    """Every RECANCEL_AFTER seconds: cancel each task of the loop still running but `keep`
    (the agent's main task, which waits for them), and log which."""

    def recancel() -> None:
        running = [t for t in asyncio.all_tasks(loop) if t is not keep and not t.done()]
        for task in running:
            task.cancel()
        if running:
            log.warning(
                "cancelled again, still running after their cancellation: %s",
                ", ".join(sorted(task.get_name() for task in running)),
            )

    return _Every(loop, RECANCEL_AFTER, recancel)


def _report_unfinished(elapsed: float) -> None:
    """Log the tasks a stop still waits for, each with where it waits: the innermost
    coroutine or generator it awaits, followed down from the task's own (a task's stack shows
    only the outermost)."""
    waiting = []
    for task in asyncio.all_tasks():
        if task.done() or task is asyncio.current_task():
            continue
        waiting.append(f"{task.get_name()} at {_innermost_await(task.get_coro())}")
    log.warning(
        "still stopping after %.0f s; waiting for: %s",
        elapsed,
        "; ".join(sorted(waiting)) or "nothing (the store member's stop)",
    )


def _innermost_await(awaitable: object) -> str:
    """Where a chain of awaits ends: the innermost frame outside asyncio itself (asyncio's own,
    an Event's or a Queue's wait, added in brackets). An `async for` ends the chain at the
    generator's step object, which does not say which generator it steps."""
    frames = []
    for _ in range(100):  # a chain is short; the bound only guards against a cycle
        frame = _first_attribute(awaitable, ("cr_frame", "ag_frame", "gi_frame"))
        if frame is None:
            break
        frames.append(f"{frame.f_code.co_filename}:{frame.f_lineno}")
        awaitable = _first_attribute(awaitable, ("cr_await", "ag_await", "gi_yieldfrom"))
    ours = [where for where in frames if f"{os.sep}asyncio{os.sep}" not in where]
    if not ours:
        return frames[-1] if frames else "?"
    return ours[-1] if ours[-1] == frames[-1] else f"{ours[-1]} (in {frames[-1]})"


def _first_attribute(value: object, names: tuple[str, ...]) -> Any:
    return next((getattr(value, n) for n in names if getattr(value, n, None) is not None), None)


def run_agent(config: NodeConfig) -> int:
    tune_malloc()
    return asyncio.run(NodeAgent(config).run())
