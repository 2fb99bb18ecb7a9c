"""An attacker's cnm "member" over real TLS, for the join attack tests.

`FakeMember` is a tiny HTTPS server on loopback (asyncio + ssl, one request per connection) that
answers `GET /v1/join/ca` with whatever PEM the test gives it and serves TLS with a certificate
of the attacker's own CA. Every request it receives is kept (method, path, headers, body), so a
test can assert that nothing secret ever reached it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from cnm.security import pki


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def carries(self, secret: str) -> bool:
        """Whether the secret shows anywhere in the request (plain or in a Basic token)."""
        raw = json.dumps(self.headers).encode() + self.body
        if secret.encode() in raw:
            return True
        auth = self.headers.get("authorization", "")
        if auth.lower().startswith("basic "):
            with contextlib.suppress(ValueError):
                return secret.encode() in base64.b64decode(auth[6:])
        return False


# (method, path, body) -> (status, JSON document) of the fake member's answer.
Handler = Callable[[str, str, bytes], Awaitable[tuple[int, object]]]


@dataclass
class FakeMember:
    port: int
    attacker_ca: pki.CertKey
    received: list[Received] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


def attacker_tls(directory: Path) -> tuple[pki.CertKey, ssl.SSLContext]:
    """The attacker's own CA and a server context with a certificate from it."""
    ca = pki.make_ca("attacker")
    leaf = pki.issue_cert(ca, "attacker", ["127.0.0.1"])
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "cert.pem").write_bytes(leaf.cert_pem)
    (directory / "key.pem").write_bytes(leaf.key_pem)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(directory / "cert.pem", directory / "key.pem")
    return ca, context


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, str, dict[str, str], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    body = await reader.readexactly(length) if length else b""
    return method, path, headers, body


@contextlib.asynccontextmanager
async def fake_member(directory: Path, handler: Handler) -> AsyncIterator[FakeMember]:
    """Serve `handler` over TLS with an attacker certificate on 127.0.0.1 (a free port)."""
    ca, context = attacker_tls(directory)
    member = FakeMember(port=0, attacker_ca=ca)

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            method, path, headers, body = await _read_request(reader)
            member.received.append(Received(method, path.split("?")[0], headers, body))
            status, document = await handler(method, path.split("?")[0], body)
            payload = json.dumps(document).encode()
            writer.write(
                f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode()
                + payload
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError, ValueError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=context)
    member.port = server.sockets[0].getsockname()[1]
    try:
        yield member
    finally:
        server.close()
        await server.wait_closed()
