"""Deadlines for clients that hold a connection without finishing a request (slowloris).

uvicorn closes a keep-alive connection that stays idle after a response (`timeout_keep_alive`),
but not a connection that never sends a request, nor one that sends its headers or its body a
byte at a time: each such connection holds a socket and a file descriptor for ever. This h11
protocol adds two deadlines, each for a whole phase (a byte now and then does not extend it):

- the request head (request line and headers) must be complete within `head_timeout` seconds of
  the connection opening or of the previous response;
- the body must be complete within `body_timeout` seconds of the head.

Past a deadline the connection is closed without an answer (the client is not reading one).
While the app works on a request there is no deadline: that is the app's business.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger(__name__)

HEAD_TIMEOUT = 10.0
BODY_TIMEOUT = 30.0
KEEP_ALIVE_TIMEOUT = 5


def guarded_protocol(
    *, head_timeout: float = HEAD_TIMEOUT, body_timeout: float = BODY_TIMEOUT
) -> type[H11Protocol]:
    """The h11 protocol class for uvicorn's `http=` with these deadlines."""

    class GuardedH11Protocol(H11Protocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._deadline: asyncio.TimerHandle | None = None
            # The phase the running deadline belongs to: (phase name, cycle object).
            self._phase: tuple[str, object] | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._watch()

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel()
            super().connection_lost(exc)

        def handle_events(self) -> None:
            super().handle_events()
            self._watch()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._watch()

        def _cancel(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _watch(self) -> None:
            """Start the deadline of the phase the connection is in, if it just entered it."""
            cycle = self.cycle
            if cycle is None or cycle.response_complete:
                phase = ("head", cycle)
            elif cycle.more_body:
                phase = ("body", cycle)
            else:
                phase = ("app", cycle)
            if phase == self._phase:
                return
            self._phase = phase
            self._cancel()
            if self.transport.is_closing() or phase[0] == "app":
                return
            seconds = head_timeout if phase[0] == "head" else body_timeout
            self._deadline = self.loop.call_later(seconds, self._expire, phase[0], seconds)

        def _expire(self, phase: str, seconds: float) -> None:
            self._deadline = None
            if not self.transport.is_closing():
                where = "{}:{}".format(*self.client) if self.client else "a client"
                log.info(
                    "closed the connection of %s: its request %s took longer than %g s",
                    where,
                    "head" if phase == "head" else "body",
                    seconds,
                )
                self.transport.close()

    return GuardedH11Protocol
