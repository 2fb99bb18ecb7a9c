"""Knowing, before costly work, whether the client is still there.

A password check costs tens of milliseconds of a core; a flood of requests the clients have
already abandoned must not be verified one by one. `WatchClients` (ASGI middleware) hands the
app a `ReceiveWatch` in place of `receive`: `gone()` looks, without waiting, whether the server
reported the client's disconnection; a body message read while looking is kept and handed to
the app in order (Starlette's own `Request.is_disconnected` drops it).
"""

from __future__ import annotations

from collections import deque

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

WATCH_KEY = "cnm.client_watch"


class ReceiveWatch:
    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self._kept: deque[Message] = deque()
        self._gone = False

    async def __call__(self) -> Message:
        if self._kept:
            return self._kept.popleft()
        message = await self._receive()
        if message.get("type") == "http.disconnect":
            self._gone = True
        return message

    async def gone(self) -> bool:
        """Whether the client has disconnected (never waits for the client)."""
        if self._gone or self._kept:
            return self._gone
        message: Message | None = None
        with anyio.CancelScope() as scope:
            scope.cancel()  # take a message only if one is ready now
            message = await self._receive()
        if message is not None:
            if message.get("type") == "http.disconnect":
                self._gone = True
            self._kept.append(message)
        return self._gone


def watch_of(scope: Scope) -> ReceiveWatch | None:
    watch = scope.get(WATCH_KEY)
    return watch if isinstance(watch, ReceiveWatch) else None


class WatchClients:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        watch = ReceiveWatch(receive)
        await self.app({**scope, WATCH_KEY: watch}, watch, send)
