"""Slow and silent clients are cut off (issue 11 §5): a real uvicorn server on loopback with the
agent's protocol and short deadlines, attacked with raw sockets."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
import uvicorn

from cnm.api.slow_clients import guarded_protocol
from harness.api_node import Node

HEAD, BODY = 1.0, 1.5


@pytest.fixture
async def served(node: Node) -> AsyncIterator[int]:
    config = uvicorn.Config(
        node.app,
        host="127.0.0.1",
        port=0,
        lifespan="off",
        log_config=None,
        access_log=False,
        timeout_keep_alive=1,
        http=guarded_protocol(head_timeout=HEAD, body_timeout=BODY),
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(10):
        while not server.started:  # noqa: ASYNC110 - uvicorn offers no event for it
            await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield port
    server.should_exit = True
    await task


async def closed_after(port: int, sends: list[bytes], *, trickle: float = 0.0) -> float:
    """Seconds from connecting until the server closes the connection, while the client sends
    `sends` one after another, `trickle` seconds apart (never a complete request)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()

    async def dribble() -> None:
        for piece in sends:
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(trickle)

    feeder = asyncio.create_task(dribble())
    try:
        async with asyncio.timeout(10):
            while await reader.read(1024):
                pass
        return time.monotonic() - started
    finally:
        feeder.cancel()
        writer.close()


async def test_silent_connection_is_closed(served: int) -> None:
    elapsed = await closed_after(served, [])
    assert HEAD * 0.9 <= elapsed < HEAD + 3


async def test_headers_a_byte_at_a_time_are_cut_off(served: int) -> None:
    head = b"GET /v1/bootstrap HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200
    # A byte every 0.1 s would take 20 s; each byte must not extend the deadline.
    elapsed = await closed_after(served, [bytes([b]) for b in head], trickle=0.1)
    assert elapsed < HEAD + 3


async def test_slow_body_is_cut_off(served: int) -> None:
    head = b"POST /v1/bootstrap/validate/create_cluster HTTP/1.1\r\nHost: x\r\n"
    head += b"Content-Length: 1000\r\n\r\n"
    elapsed = await closed_after(served, [head, *([b"{"] * 100)], trickle=0.1)
    assert BODY * 0.9 <= elapsed < HEAD + BODY + 3


async def test_a_normal_request_still_works(served: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", served)
    writer.write(b"GET /v1/bootstrap HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    async with asyncio.timeout(5):
        answer = await reader.read()
    writer.close()
    assert answer.startswith(b"HTTP/1.1 200")
