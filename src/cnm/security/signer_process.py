"""`python -m cnm.security.signer_process --idle SECONDS`: the agent's certificate signer, a
child process that runs security/pki.py for it (security/signing.py starts and talks to it).

Why a process: `cryptography` stays resident once imported (about fourteen MiB with the EC and
X.509 parts), and the agent needs it only while it creates a cluster, admits a node or renews a
certificate. In this child it is paid while there is signing to do; the child exits once it
has had nothing to do for `--idle` seconds, and the memory goes with it.

Protocol, one JSON document per line each way: the request `{"op": NAME, "args": {...}}`, the
answer `{"ok": RESULT}` or `{"error": {"code": ..., "message": ..., "fields": [...]}}` where
`code` is a cnm error code (errors.py) or "value_error". PEMs travel as text, other bytes as
base64. The child keeps no state between requests, so a request whose answer was lost can be
sent again. It exits on end of input (the agent closed the pipe or died), after `--idle`
seconds without a request, or on a line that is not a request (the agent is not what is on the
other end). It prints nothing else and logs nothing: the requests carry the CA's private key.
"""

from __future__ import annotations

import base64
import json
import os
import select
import signal
import sys
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from cnm.errors import CnmError
from cnm.security import pki
from cnm.security.node_certs import CertKey

# Larger than any request the agent sends (a CSR is at most 16 KiB; pairs are ~1 KiB).
MAX_LINE = 1 << 20

_Op = Callable[[dict[str, Any]], Any]


def _pair(pair: CertKey) -> dict[str, str]:
    return {"cert_pem": pair.cert_pem.decode(), "key_pem": pair.key_pem.decode()}


def _ca(args: dict[str, Any]) -> CertKey:
    ca = args["ca"]
    return CertKey(str(ca["cert_pem"]).encode(), str(ca["key_pem"]).encode())


def _pem(args: dict[str, Any], name: str) -> bytes:
    return str(args[name]).encode()


def _bytes(args: dict[str, Any], name: str) -> bytes:
    return base64.b64decode(str(args[name]), validate=True)


def _lifetime(args: dict[str, Any]) -> timedelta:
    return timedelta(seconds=float(args["lifetime"]))


def _make_csr(args: dict[str, Any]) -> dict[str, str]:
    csr_pem, key_pem = pki.make_csr(str(args["common_name"]), list(args["sans"]))
    return {"csr_pem": csr_pem.decode(), "key_pem": key_pem.decode()}


def _license_signature_verdict(args: dict[str, Any]) -> str | None:
    # Imported here: only a license check needs the license module (and pydantic with it).
    from cnm.cluster import license

    keys = [str(key) for key in args["public_keys"]]
    return license.signature_verdict(keys, _bytes(args, "signed"), _bytes(args, "signature"))


OPS: dict[str, _Op] = {
    "ping": lambda a: True,
    "make_ca": lambda a: _pair(pki.make_ca(str(a["cluster_name"]))),
    "issue_node_cert": lambda a: _pair(
        pki.issue_node_cert(_ca(a), int(a["uid"]), list(a["sans"]), lifetime=_lifetime(a))
    ),
    "issue_cert": lambda a: _pair(pki.issue_cert(_ca(a), str(a["common_name"]), list(a["sans"]))),
    "issue_store_client_cert": lambda a: _pair(pki.issue_store_client_cert(_ca(a), int(a["uid"]))),
    "check_csr": lambda a: pki.check_csr(_pem(a, "csr_pem")),
    "sign_node_csr": lambda a: pki.sign_node_csr(
        _ca(a),
        _pem(a, "csr_pem"),
        uid=int(a["uid"]),
        sans=list(a["sans"]),
        lifetime=_lifetime(a),
    ).decode(),
    "verify_chain": lambda a: pki.verify_chain(_pem(a, "cert_pem"), _pem(a, "ca_pem")),
    "verify_data": lambda a: pki.verify_data(
        _pem(a, "cert_pem"), _bytes(a, "data"), _bytes(a, "signature")
    ),
    "make_csr": _make_csr,
    "license_signature_verdict": _license_signature_verdict,
    "sign_data": lambda a: base64.b64encode(
        pki.sign_data(_pem(a, "key_pem"), _bytes(a, "data"))
    ).decode(),
}


def answer(line: bytes) -> dict[str, Any] | None:
    """The answer to one request line; None when the line is not a request at all."""
    try:
        request = json.loads(line)
        op = OPS[request["op"]]
        args = request["args"]
    except (ValueError, KeyError, TypeError):
        return None
    if not isinstance(args, dict):
        return None
    try:
        return {"ok": op(args)}
    except CnmError as exc:
        fields = exc.details.get("fields")
        return {"error": {"code": exc.error_code, "message": exc.message, "fields": fields}}
    except (ValueError, KeyError, TypeError) as exc:
        # A malformed argument from the agent: a bug there, named without the values sent.
        return {"error": {"code": "value_error", "message": f"{type(exc).__name__}: {exc}"}}


def _read_line(fd: int, buffered: bytearray, idle: float) -> bytes | None:
    """The next line of input, or None at end of input, after `idle` seconds without one, or
    when a line is longer than MAX_LINE."""
    while b"\n" not in buffered:
        ready, _, _ = select.select([fd], [], [], idle)
        if not ready:
            return None
        chunk = os.read(fd, 65536)
        if not chunk or len(buffered) + len(chunk) > MAX_LINE:
            return None
        buffered += chunk
    line, _, rest = bytes(buffered).partition(b"\n")
    buffered[:] = rest
    return line


def serve(read_fd: int, write_fd: int, idle: float) -> int:
    buffered = bytearray()
    while (line := _read_line(read_fd, buffered, idle)) is not None:
        reply = answer(line)
        if reply is None:
            return 2
        data = json.dumps(reply, separators=(",", ":")).encode() + b"\n"
        while data:
            data = data[os.write(write_fd, data) :]
    return 0


def main(argv: list[str]) -> int:
    # Ctrl-C at the agent's terminal reaches its whole process group: the agent decides when
    # this child ends (by closing its input), not the keyboard.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if len(argv) != 2 or argv[0] != "--idle":
        print(__doc__, file=sys.stderr)
        return 2
    idle = float(argv[1])
    try:
        return serve(sys.stdin.fileno(), sys.stdout.fileno(), idle)
    except BrokenPipeError:
        return 0  # the agent went away between a request and its answer


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
