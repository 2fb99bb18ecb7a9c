"""An HTTP request (the store client's, a join's) searches for no module: httpcore asks sniffio
which event loop it runs on at every request, and without sniffio installed each ask was a
failed import (a search over sys.path), four per request, ~0.3 ms of CPU."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType

import httpx


class Searches:
    """A meta path finder first in line that records every module searched for."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def find_spec(
        self, name: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        self.names.append(name)
        return None


class OkServer:
    """Answers every request on loopback with 200 "ok"; closes each connection it accepted."""

    def __init__(self) -> None:
        self.writers: list[asyncio.StreamWriter] = []

    async def answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        try:
            while await reader.readuntil(b"\r\n\r\n"):
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def close(self) -> None:
        for writer in self.writers:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


async def test_http_requests_search_for_no_module() -> None:
    # A real connection pool and HTTP/1.1 connection (httpcore) against a socket on loopback.
    ok = OkServer()
    server = await asyncio.start_server(ok.answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    searches = Searches()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            assert (await client.get("/")).text == "ok"  # the first use may import
            sys.meta_path.insert(0, searches)
            try:
                for _ in range(5):
                    assert (await client.get("/")).text == "ok"
            finally:
                sys.meta_path.remove(searches)
    finally:
        server.close()
        await ok.close()
        await server.wait_closed()
    assert searches.names == []
