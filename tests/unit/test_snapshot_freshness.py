"""ClusterSnapshot freshness against a watch stuck on a cut-off member (memory store, fake clock).

A partition can leave the watch's HTTP stream open and silent while the node still reaches a
quorum through another endpoint: the snapshot must then stop presenting itself as current
(503 `store_unavailable`), and re-watch, rather than serve what it saw before the cut.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from cnm.cluster.snapshot import ClusterSnapshot
from cnm.cluster.writes import wait_for_revision
from cnm.errors import StoreUnavailable
from cnm.store.base import WatchEvent
from cnm.store.memory import MemoryStore


class StuckWatchStore(MemoryStore):
    """A memory store whose watches hang without a word while `stuck` (a cut-off member)."""

    def __init__(self) -> None:
        super().__init__()
        self.stuck = True

    async def watch_prefix(self, prefix: str, *, start_revision: int) -> AsyncIterator[WatchEvent]:
        if self.stuck:
            await asyncio.Event().wait()
        async for event in super().watch_prefix(prefix, start_revision=start_revision):
            yield event


class Clock:
    now = 100.0


async def test_a_stuck_watch_is_not_current_and_is_replaced() -> None:
    store, clock = StuckWatchStore(), Clock()
    snapshot = ClusterSnapshot(store, stale_after=5.0, clock=lambda: clock.now)
    task = asyncio.create_task(snapshot.run())
    try:
        await snapshot.wait_loaded(5)
        snapshot.require_fresh()
        revision = await store.put("/cnm/cluster", b'{"name": "after the cut"}')
        # A quorum read sees the new revision; the stuck watch never delivers it.
        snapshot.observed(revision, snapshot.now())
        clock.now += 3
        snapshot.require_fresh()  # within stale_after of the last proof: still current
        clock.now += 3
        with pytest.raises(StoreUnavailable):
            snapshot.require_fresh()
        assert snapshot.record("/cnm/cluster") is None
        # The link returns: the lagging watch is dropped, the snapshot reloads and is current.
        store.stuck = False
        assert await wait_for_revision(snapshot, revision, timeout=10)
        snapshot.require_fresh()
        assert snapshot.cluster() is not None
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_a_live_watch_settles_every_quorum_observation() -> None:
    store, clock = MemoryStore(), Clock()
    snapshot = ClusterSnapshot(store, stale_after=5.0, clock=lambda: clock.now)
    task = asyncio.create_task(snapshot.run())
    try:
        await snapshot.wait_loaded(5)
        for _ in range(3):
            clock.now += 4
            revision = await store.put("/cnm/cluster", b'{"name": "c"}')
            assert await wait_for_revision(snapshot, revision, timeout=10)
            _, seen = await store.get_prefix("/cnm/cluster")
            snapshot.observed(seen, snapshot.now())
            snapshot.require_fresh()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
