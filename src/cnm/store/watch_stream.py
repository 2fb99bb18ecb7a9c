"""A watch read from etcd's JSON gateway on an asyncio connection of its own.

Why not httpx, as every other gateway call (store/etcd.py): a watch is one request whose answer
never ends, and every node of the cluster reads every change of the cluster's keys on it, so its
per-message cost is paid N times per change. Through httpx each message passes httpcore's
connection and h11 layers, anyio's stream and TLS wrappers and httpx's decoders: on a plain
connection 290 us of CPU per message against 165 us read here (median of four runs each, 2000
one-event messages; more under TLS, where anyio adds its own TLS stream). At 100 nodes a join's
two changes cost the cluster's agents that difference 200 times over, on a 2-core machine.

What is spoken (RFC 9112): one `POST` with a JSON body and `Content-Length`, then an answer
with a status line, headers, and a body in chunked transfer coding. The gateway writes each
watch message as one JSON object and a newline, usually one per chunk; lines are reassembled
across chunks all the same. A status other than 200 is an error (its body, read up to a limit,
names it). Anything else unexpected — a body that is not chunked, a malformed chunk, a line
beyond `MAX_LINE`, the connection closed — raises `WatchStreamError`.

Connecting, the TLS handshake and the answer's head are bounded by the caller's timeout; the
body is not (a quiet watch is healthy), as before. `asyncio.timeout`, never `wait_for`, which on
Python 3.11 can swallow a cancellation (bench/README.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from collections.abc import AsyncGenerator, Mapping
from typing import Any
from urllib.parse import urlsplit

# A watch message holds the events of one or more revisions; etcd's own request limit (1.5 MiB
# by default) bounds a revision. Far above anything cnm writes, far below harm.
MAX_LINE = 16 << 20
# An error body is one short JSON object.
_MAX_ERROR_BODY = 64 << 10
_CLOSE_TIMEOUT = 1.0


class WatchStreamError(Exception):
    """The watch's connection failed or its answer broke the protocol."""


async def watch_messages(
    url: str,
    body: Mapping[str, Any],
    *,
    tls: ssl.SSLContext | None,
    headers: Mapping[str, str] | None,
    timeout: float,
) -> AsyncGenerator[dict[str, Any], None]:
    """The JSON messages etcd sends on a `POST url` with `body`, until it ends the answer."""
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
    if parts.scheme not in ("http", "https") or not host:
        raise WatchStreamError(f"not an http(s) URL: {url!r}")
    context = tls if parts.scheme == "https" else None
    if parts.scheme == "https" and context is None:
        context = ssl.create_default_context()
    payload = json.dumps(body).encode()
    request = _request_head(parts.netloc, parts.path or "/", headers, len(payload)) + payload
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(
                host, port, ssl=context, server_hostname=host if context else None
            )
    except (OSError, TimeoutError, ssl.SSLError) as exc:
        raise WatchStreamError(f"cannot connect: {exc or type(exc).__name__}") from exc
    try:
        writer.write(request)
        try:
            async with asyncio.timeout(timeout):
                head = await _read_head(reader)
        except TimeoutError as exc:
            raise WatchStreamError(f"no answer within {timeout} s") from exc
        status, fields = head
        chunked = fields.get("transfer-encoding", "").lower() == "chunked"
        if status != 200:
            raise WatchStreamError(f"HTTP {status}: {await _error_text(reader, fields, chunked)}")
        if not chunked:
            raise WatchStreamError("the watch answer is not chunked")
        async with contextlib.aclosing(_chunked_lines(reader)) as lines:
            async for line in lines:
                if not line.strip():
                    continue
                try:
                    message = json.loads(line)
                except ValueError as exc:
                    raise WatchStreamError(f"a watch message is not JSON: {exc}") from exc
                if not isinstance(message, dict):
                    raise WatchStreamError("a watch message is not a JSON object")
                yield message
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ssl.SSLError) as exc:
        raise WatchStreamError(f"the watch broke: {exc or type(exc).__name__}") from exc
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(_CLOSE_TIMEOUT):
                await writer.wait_closed()


def _request_head(netloc: str, path: str, headers: Mapping[str, str] | None, length: int) -> bytes:
    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: {netloc}",
        "Content-Type: application/json",
        "Accept: application/json",
        f"Content-Length: {length}",
    ]
    for name, value in (headers or {}).items():
        if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
            raise WatchStreamError(f"header {name!r} holds a line break")
        lines.append(f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    raw = await reader.readuntil(b"\r\n\r\n")
    status_line, *field_lines = raw[:-4].decode("latin-1").split("\r\n")
    version, _, rest = status_line.partition(" ")
    code = rest.partition(" ")[0]
    if not version.startswith("HTTP/1.") or not code.isdigit():
        raise WatchStreamError(f"not an HTTP/1.x answer: {status_line[:80]!r}")
    fields: dict[str, str] = {}
    for line in field_lines:
        name, sep, value = line.partition(":")
        if not sep:
            raise WatchStreamError(f"malformed header line {line[:80]!r}")
        fields[name.strip().lower()] = value.strip()
    return int(code), fields


async def _chunked_lines(reader: asyncio.StreamReader) -> AsyncGenerator[bytes, None]:
    """The newline-ended lines of a chunked body; returns when the body ends."""
    pending = b""
    while True:
        size_line = await reader.readuntil(b"\r\n")
        try:
            size = int(size_line[:-2].split(b";", 1)[0], 16)
        except ValueError:
            raise WatchStreamError(f"malformed chunk size {size_line[:40]!r}") from None
        if size < 0:
            raise WatchStreamError(f"malformed chunk size {size_line[:40]!r}")
        if size == 0:
            return
        chunk = await reader.readexactly(size + 2)
        if chunk[-2:] != b"\r\n":
            raise WatchStreamError("a chunk does not end where its size says")
        pending += chunk[:-2]
        while (end := pending.find(b"\n")) >= 0:
            yield pending[:end]
            pending = pending[end + 1 :]
        if len(pending) > MAX_LINE:
            raise WatchStreamError(f"a watch message exceeds {MAX_LINE} bytes")


async def _error_text(
    reader: asyncio.StreamReader, fields: Mapping[str, str], chunked: bool
) -> str:
    """What an error answer says (its `message` or `error`, else its first bytes)."""
    raw = b""
    with contextlib.suppress(Exception):
        async with asyncio.timeout(_CLOSE_TIMEOUT):
            raw = await _error_body(reader, fields, chunked)
    text = raw.decode("utf-8", "replace").strip()
    with contextlib.suppress(ValueError):
        decoded = json.loads(text)
        if isinstance(decoded, dict):
            for name in ("message", "error"):
                if isinstance(decoded.get(name), str):
                    return str(decoded[name])
    return text[:200] or "no message"


async def _error_body(
    reader: asyncio.StreamReader, fields: Mapping[str, str], chunked: bool
) -> bytes:
    if chunked:
        async with contextlib.aclosing(_chunked_lines(reader)) as lines:
            async for line in lines:
                return line[:_MAX_ERROR_BODY]
        return b""
    return await reader.readexactly(min(int(fields.get("content-length", "0")), _MAX_ERROR_BODY))
