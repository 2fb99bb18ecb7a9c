"""Liveness is the lease: a node is alive while its liveness key exists, down once its lease
expires; keeping the lease alive rewrites nothing, and each keep-alive answers with the store's
revision (what the snapshot's freshness is fed with)."""

from __future__ import annotations

import asyncio

from cnm.cluster import model
from cnm.cluster.liveness import Liveness
from cnm.cluster.records import LivenessRecord
from cnm.cluster.snapshot import ClusterSnapshot
from cnm.store.memory import MemoryStore
from harness.polling import eventually_async


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def liveness(uid: int) -> bytes:
    return LivenessRecord(uid=uid, run="r", since="2026-01-01T00:00:00Z").encode()


async def test_alive_while_the_key_exists_and_down_once_the_lease_expires() -> None:
    clock = Clock()
    store = MemoryStore(clock=clock)
    snapshot = ClusterSnapshot(store)
    await snapshot.load()
    watching = asyncio.create_task(snapshot.run())
    try:
        lease = await store.lease_grant(model.LIVENESS_TTL)
        await store.put(model.liveness_key(3), liveness(3), lease=lease)
        await eventually_async(lambda: snapshot.is_alive(3), message="the liveness key was seen")
        assert not snapshot.is_alive(4)  # never had a key
        # Kept alive just before each expiry: still alive long after the first TTL, and the
        # key was never rewritten.
        written = (await store.get(model.liveness_key(3))).mod_revision  # type: ignore[union-attr]
        for _ in range(5):
            clock.now += model.LIVENESS_TTL - 1
            renewal = await store.lease_renew(lease)
            assert renewal.ttl == model.LIVENESS_TTL
            assert renewal.revision == snapshot.revision  # nothing was written meanwhile
        await store.expire_now()
        assert snapshot.is_alive(3)
        kept = await store.get(model.liveness_key(3))
        assert kept is not None and kept.mod_revision == written
        # The agent dies: no keep-alive; one TTL later the key is gone and the node down.
        clock.now += model.LIVENESS_TTL + 0.1
        await store.expire_now()
        await eventually_async(lambda: not snapshot.is_alive(3), message="the node seen down")
        assert (await store.lease_renew(lease)).ttl == 0  # the agent takes a new lease then
    finally:
        watching.cancel()


def test_the_keepalive_interval_leaves_room_for_two_missed_keepalives() -> None:
    # The lease must survive a keep-alive that failed (with a whole interval to spare for a
    # slow answer on a loaded machine), and the snapshot's freshness (stale after 5 s) is fed
    # by each keep-alive. Down within 10 s (README) even after a dead leader's election (≤ 1 s).
    assert 3 * model.LIVENESS_KEEPALIVE <= model.LIVENESS_TTL
    assert model.LIVENESS_KEEPALIVE < 5.0
    assert model.LIVENESS_TTL + 1.0 <= 10.0


async def test_a_lease_granted_at_admission_is_used_and_an_expired_one_replaced() -> None:
    clock = Clock()
    store = MemoryStore(clock=clock)
    await store.put(model.node_key(3), b"{}")
    snapshot = ClusterSnapshot(store)
    taken = Liveness(
        store,
        snapshot,
        uid=3,
        addr="127.0.0.3",
        store_changed=asyncio.Event(),
        removed=asyncio.Event(),
    )
    granted = await store.lease_grant(model.LIVENESS_TTL)
    await taken.take(granted=granted)
    key = await store.get(model.liveness_key(3))
    assert taken.lease == granted and key is not None and key.lease == granted
    # The joiner was slower than the TTL: the member's lease is gone, the node takes its own.
    stale = await store.lease_grant(model.LIVENESS_TTL)
    clock.now += model.LIVENESS_TTL + 1
    await store.expire_now()
    await taken.take(granted=stale)
    key = await store.get(model.liveness_key(3))
    assert taken.lease not in (0, stale) and key is not None and key.lease == taken.lease
