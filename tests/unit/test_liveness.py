"""Honest liveness: a record the node stopped renewing is stale even while its lease lives."""

from __future__ import annotations

import asyncio
import time

from cnm.cluster import model
from cnm.cluster.records import LivenessRecord
from cnm.cluster.snapshot import ClusterSnapshot
from cnm.store.memory import MemoryStore


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def renewal(uid: int, renewed: float) -> bytes:
    return LivenessRecord(uid=uid, run="r", renewed=renewed).encode()


async def test_a_record_from_before_a_store_restart_is_stale_at_once() -> None:
    # etcd re-arms leases when a leader is elected: a dead node's key is still there after a
    # full restart, but its last renewal is old.
    store = MemoryStore()
    lease = await store.lease_grant(10)
    await store.put(model.liveness_key(1), renewal(1, time.time() - 60), lease=lease)
    await store.put(model.liveness_key(2), renewal(2, time.time()), lease=lease)
    snapshot = ClusterSnapshot(store)
    await snapshot.load()
    assert not snapshot.is_alive(1)
    assert snapshot.is_alive(2)


async def test_a_node_that_stops_renewing_is_down_after_the_bound() -> None:
    store = MemoryStore()
    clock = Clock()
    snapshot = ClusterSnapshot(store, clock=clock)
    await snapshot.load()
    watching = asyncio.create_task(snapshot.run())
    try:
        lease = await store.lease_grant(3600)  # the lease alone would keep it "alive" for long
        await store.put(model.liveness_key(3), renewal(3, time.time()), lease=lease)
        deadline = time.monotonic() + 5
        while not snapshot.is_alive(3):
            assert time.monotonic() < deadline, "the renewal was not seen"
            await asyncio.sleep(0.01)
        clock.now += model.LIVENESS_STALE_AFTER
        assert snapshot.is_alive(3)
        clock.now += 0.1
        assert not snapshot.is_alive(3)
        # The node renews again: alive again.
        await store.put(model.liveness_key(3), renewal(3, time.time()), lease=lease)
        while not snapshot.is_alive(3):
            assert time.monotonic() < deadline, "the second renewal was not seen"
            await asyncio.sleep(0.01)
    finally:
        watching.cancel()
