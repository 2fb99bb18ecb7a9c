"""The watch reader of store/watch_stream.py against a scripted HTTP/1.1 server on loopback.

The real etcd path (mutual TLS, tokens, cancellation) is covered by the store contract
(tests/unit/test_store_contract.py, test_etcd_auth.py); here the answers etcd would seldom send:
split and merged chunks, errors, broken framing, a server that never answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest
import pytest_asyncio

from cnm.store import watch_stream
from cnm.store.watch_stream import WatchStreamError, watch_messages

Script = Callable[[asyncio.StreamWriter], Awaitable[None]]


@dataclass
class ScriptedServer:
    """Answers each connection with `script` after reading its request."""

    script: Script | None = None
    requests: list[tuple[bytes, bytes]] = field(default_factory=list)
    closed_by_client: asyncio.Event = field(default_factory=asyncio.Event)
    writers: list[asyncio.StreamWriter] = field(default_factory=list)
    url: str = ""

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        self.requests.append((head, await reader.readexactly(length)))
        if self.script is not None:
            await self.script(writer)
        if not await reader.read(1):
            self.closed_by_client.set()


@pytest_asyncio.fixture
async def server() -> AsyncIterator[ScriptedServer]:
    scripted = ScriptedServer()
    listener = await asyncio.start_server(scripted.handle, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    scripted.url = f"http://127.0.0.1:{port}/v3/watch"
    try:
        yield scripted
    finally:
        for writer in scripted.writers:
            writer.close()
        listener.close()
        await listener.wait_closed()


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def chunked_answer(*chunks: bytes, end: bool = True) -> Script:
    async def script(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
        writer.write(b"Transfer-Encoding: chunked\r\n\r\n")
        for piece in chunks:
            writer.write(piece)
            await writer.drain()
        if end:
            writer.write(b"0\r\n\r\n")
        await writer.drain()

    return script


async def read_all(server: ScriptedServer, **kwargs: object) -> list[dict[str, object]]:
    options: dict[str, object] = {"tls": None, "headers": None, "timeout": 2.0, **kwargs}
    messages = watch_messages(server.url, {"create_request": {"key": "L2Mv"}}, **options)  # type: ignore[arg-type]
    async with contextlib.aclosing(messages):
        return [message async for message in messages]


def line(payload: dict[str, object]) -> bytes:
    return json.dumps(payload).encode() + b"\n"


async def test_messages_split_across_chunks_and_merged_in_one_arrive_in_order(
    server: ScriptedServer,
) -> None:
    first, second, third = line({"n": 1}), line({"n": 2}), line({"n": 3})
    server.script = chunked_answer(
        chunk(first[:5]), chunk(first[5:] + second[:3]), chunk(second[3:] + third), chunk(b"\n")
    )
    assert await read_all(server, headers={"Authorization": "tok.en"}) == [
        {"n": 1},
        {"n": 2},
        {"n": 3},
    ]
    head, body = server.requests[0]
    assert head.startswith(b"POST /v3/watch HTTP/1.1\r\n")
    assert b"\r\nHost: 127.0.0.1:" in head
    assert b"\r\nAuthorization: tok.en\r\n" in head
    assert json.loads(body) == {"create_request": {"key": "L2Mv"}}


async def test_chunk_extensions_are_ignored(server: ScriptedServer) -> None:
    payload = line({"n": 1})
    server.script = chunked_answer(b"%x;name=value\r\n%s\r\n" % (len(payload), payload))
    assert await read_all(server) == [{"n": 1}]


async def test_an_error_status_raises_with_the_servers_message(server: ScriptedServer) -> None:
    body = json.dumps({"error": "x", "code": 16, "message": "etcdserver: invalid auth token"})

    async def script(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: %d\r\n\r\n" % len(body))
        writer.write(body.encode())
        await writer.drain()

    server.script = script
    with pytest.raises(WatchStreamError, match="HTTP 401: etcdserver: invalid auth token"):
        await read_all(server)


async def test_an_answer_that_is_not_chunked_is_refused(server: ScriptedServer) -> None:
    async def script(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n{}\n")
        await writer.drain()

    server.script = script
    with pytest.raises(WatchStreamError, match="not chunked"):
        await read_all(server)


@pytest.mark.parametrize(
    ("framing", "message"),
    [
        (b"zz\r\n{}\n\r\n", "malformed chunk size"),
        (b"-3\r\n{}\n\r\n", "malformed chunk size"),
        (b"3\r\n{}\nXX", "does not end where its size says"),
    ],
)
async def test_broken_chunk_framing_is_an_error(
    server: ScriptedServer, framing: bytes, message: str
) -> None:
    server.script = chunked_answer(framing)
    with pytest.raises(WatchStreamError, match=message):
        await read_all(server)


async def test_a_connection_closed_inside_a_chunk_is_an_error(server: ScriptedServer) -> None:
    async def script(writer: asyncio.StreamWriter) -> None:
        await chunked_answer(b"40\r\n" + line({"n": 1}), end=False)(writer)
        writer.close()

    server.script = script
    with pytest.raises(WatchStreamError, match="the watch broke"):
        await read_all(server)


@pytest.mark.parametrize(
    ("payload", "message"), [(b"{not json\n", "not JSON"), (b"[1, 2]\n", "not a JSON object")]
)
async def test_a_line_that_is_not_a_json_object_is_an_error(
    server: ScriptedServer, payload: bytes, message: str
) -> None:
    server.script = chunked_answer(chunk(payload))
    with pytest.raises(WatchStreamError, match=message):
        await read_all(server)


async def test_a_line_beyond_the_limit_is_an_error(
    server: ScriptedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(watch_stream, "MAX_LINE", 64)
    server.script = chunked_answer(chunk(b"x" * 40), chunk(b"y" * 40))
    with pytest.raises(WatchStreamError, match="exceeds 64 bytes"):
        await read_all(server)


async def test_a_server_that_never_answers_times_out(server: ScriptedServer) -> None:
    answered = asyncio.Event()

    async def script(writer: asyncio.StreamWriter) -> None:
        await answered.wait()

    server.script = script
    with pytest.raises(WatchStreamError, match=r"no answer within 0\.2 s"):
        await read_all(server, timeout=0.2)
    answered.set()


async def test_a_closed_port_is_an_error() -> None:
    listener = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    listener.close()
    await listener.wait_closed()
    messages = watch_messages(
        f"http://127.0.0.1:{port}/v3/watch", {}, tls=None, headers=None, timeout=2.0
    )
    with pytest.raises(WatchStreamError, match="cannot connect"):
        await anext(messages)


async def test_closing_the_reader_closes_its_connection(server: ScriptedServer) -> None:
    server.script = chunked_answer(chunk(line({"n": 1})), end=False)
    messages = watch_messages(server.url, {}, tls=None, headers=None, timeout=2.0)
    assert await anext(messages) == {"n": 1}
    await messages.aclose()
    await asyncio.wait_for(server.closed_by_client.wait(), 5.0)


async def test_a_header_value_with_a_line_break_is_refused(server: ScriptedServer) -> None:
    with pytest.raises(WatchStreamError, match="line break"):
        await read_all(server, headers={"Authorization": "a\r\nX-Injected: 1"})
    assert server.requests == []


async def test_an_error_status_with_a_chunked_body_names_its_error(server: ScriptedServer) -> None:
    async def script(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n")
        writer.write(chunk(line({"error": "etcdserver: no leader"})) + b"0\r\n\r\n")
        await writer.drain()

    server.script = script
    with pytest.raises(WatchStreamError, match="HTTP 503: etcdserver: no leader"):
        await read_all(server)


async def test_cancelling_the_reading_task_closes_its_connection(server: ScriptedServer) -> None:
    server.script = chunked_answer(chunk(line({"n": 1})), end=False)
    first = asyncio.Event()

    async def consume() -> None:
        messages = watch_messages(server.url, {}, tls=None, headers=None, timeout=2.0)
        async with contextlib.aclosing(messages):
            async for _ in messages:
                first.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first.wait(), 5.0)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await asyncio.wait_for(server.closed_by_client.wait(), 5.0)
