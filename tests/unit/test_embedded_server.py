"""The agent's uvicorn server (api/server.py `_EmbeddedServer`): no timer in its main loop, a
Date header made when a response is written, and a prompt exit when told."""

from __future__ import annotations

import asyncio
import time
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import uvicorn

from cnm.api.server import _EmbeddedServer


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


async def test_the_date_header_is_current_and_the_server_exits_at_once() -> None:
    config = uvicorn.Config(_app, host="127.0.0.1", port=0, lifespan="off", log_config=None)
    server = _EmbeddedServer(config)
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(10):
        while not server.started:  # noqa: ASYNC110 - uvicorn offers no event for it
            await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            first = await client.get("/")
            assert first.status_code == 204
            date = parsedate_to_datetime(first.headers["date"]).timestamp()
            assert abs(date - time.time()) <= 2
            # A later second gives a later Date, with no tick in between to refresh it.
            async with asyncio.timeout(5):
                while (await client.get("/")).headers["date"] == first.headers["date"]:  # noqa: ASYNC110 - polls the server
                    await asyncio.sleep(0.05)
    finally:
        server.should_exit = True
        async with asyncio.timeout(3):  # no 1 s tick to wait for
            await task
