"""The body of GET /v1/bootstrap, rendered at most about once a second.

Every client polls this route (setup scripts, health checks, the console), so its answer is
kept as ready-made bytes and sent again while nothing it shows can have changed:

- the bootstrap status record is immutable and replaced on every transition, so the cached
  body remembers the very record it was made from: a transition shows at once;
- the node's identity and storage paths come from the cluster runtime's local state (or the
  configuration before bootstrap): also compared by identity;
- uptime is in whole seconds: the body is rendered again when the second changes, so it is
  always exact (total memory is a fixed fact of the machine);
- the addresses and the file system sizes are read again at that moment too, so they are at
  most `max_age` seconds old.

The bytes are those `compact()` would send (keys sorted, no spaces).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from cnm.api.responses import compact_bytes
from cnm.node.facts import uptime

MAX_AGE = 1.0


class StatusBody:
    def __init__(
        self,
        *,
        max_age: float = MAX_AGE,
        clock: Callable[[], float] = time.monotonic,
        uptime_of: Callable[[], int] = uptime,
    ) -> None:
        self._max_age = max_age
        self._clock = clock
        self._uptime = uptime_of
        self._key: tuple[object, ...] | None = None
        self._expires = 0.0
        self._body = b""

    def render(self, sources: tuple[object, ...], build: Callable[[], dict[str, Any]]) -> bytes:
        """The body for `sources` (the objects the document is made from, compared by
        identity), from `build()` when the cached one no longer fits."""
        now = self._clock()
        key = (*sources, self._uptime())
        cached = self._key
        if (
            cached is not None
            and now < self._expires
            and len(cached) == len(key)
            and all(a is b or a == b for a, b in zip(cached, key, strict=True))
        ):
            return self._body
        body = compact_bytes(build())
        self._key, self._expires, self._body = key, now + self._max_age, body
        return body
