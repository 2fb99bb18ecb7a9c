"""cluster/removal.py's waits, on the memory store: a removal waits for a store membership
change in progress (the lock) and for etcd to accept a voter's removal after a recent change
(its transient "unhealthy cluster" refusal), each for a bounded time, then 409
`store_change_in_progress` with nothing changed."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from cnm.cluster import model, removal
from cnm.cluster.records import LivenessRecord, NodeRecord, StoreRole
from cnm.cluster.snapshot import ClusterSnapshot
from cnm.cluster.store_members import store_change_lock
from cnm.store.base import MembershipChangeRefused, MembershipRefusal
from cnm.store.memory import MemoryStore


class SettlingStore(MemoryStore):
    """A memory store that refuses the first `refusals` member removals as etcd does while its
    voters have not all been connected for 5 s since the last membership change."""

    def __init__(self, refusals: int) -> None:
        super().__init__()
        self.refusals = refusals
        self.attempts = 0

    async def member_remove(self, member_id: int) -> None:
        self.attempts += 1
        if self.attempts <= self.refusals:
            raise MembershipChangeRefused(
                "etcdserver: unhealthy cluster", MembershipRefusal.UNHEALTHY_CLUSTER
            )
        await super().member_remove(member_id)


def peer(uid: int) -> str:
    return f"https://10.0.0.{uid}:2380"


async def three_voters(store: MemoryStore) -> ClusterSnapshot:
    old: Sequence[int] = [m.id for m in await store.member_list()]
    for uid in (1, 2, 3):
        record = NodeRecord(uid=uid, addr=f"10.0.0.{uid}", store_role=StoreRole.VOTER)
        await store.put(model.node_key(uid), record.changed(store_peer_url=peer(uid)).encode())
        await store.put(model.liveness_key(uid), LivenessRecord(uid=uid).encode())
        await store.member_add([peer(uid)], learner=False)
    for member_id in old:
        await store.member_remove(member_id)
    snapshot = ClusterSnapshot(store)
    await snapshot.load()
    return snapshot


@pytest.fixture(autouse=True)
def short_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(removal, "SETTLE_POLL", 0.01)
    monkeypatch.setattr(removal, "LOCK_POLL", 0.01)


async def test_a_voter_removal_waits_for_the_store_to_settle() -> None:
    store = SettlingStore(refusals=0)
    snapshot = await three_voters(store)
    store.refusals = store.attempts + 3
    done = await removal.remove_node(store, snapshot, 3, acting=1)
    assert done.store_member_removed == "voter"
    assert store.attempts == store.refusals + 1
    assert peer(3) not in [url for m in await store.member_list() for url in m.peer_urls]
    assert await store.get(model.node_key(3)) is None


async def test_a_store_that_does_not_settle_is_409_and_nothing_changes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(removal, "SETTLE_WAIT", 0.2)
    store = SettlingStore(refusals=0)
    snapshot = await three_voters(store)
    store.refusals = 10**6
    with pytest.raises(removal.StoreChangeInProgress) as refused:
        await removal.remove_node(store, snapshot, 3, acting=1)
    assert refused.value.http_status == 409 and "settling" in refused.value.message
    assert len(await store.member_list()) == 3
    assert await store.get(model.node_key(3)) is not None
    assert await store.get(model.STORE_CHANGE_LOCK) is None  # the lock was let go


async def test_a_removal_waits_for_a_change_in_progress(monkeypatch: pytest.MonkeyPatch) -> None:
    store = SettlingStore(refusals=0)
    snapshot = await three_voters(store)
    async with store_change_lock(store, 2) as held:
        assert held
        waiting = asyncio.create_task(removal.remove_node(store, snapshot, 3, acting=1))
        await asyncio.sleep(0.1)  # the removal is polling the lock meanwhile
        assert not waiting.done()
        assert await store.get(model.node_key(3)) is not None
    done = await asyncio.wait_for(waiting, 5)
    assert done.uid == 3

    monkeypatch.setattr(removal, "LOCK_WAIT", 0.2)
    async with store_change_lock(store, 2):
        with pytest.raises(removal.StoreChangeInProgress):
            await removal.remove_node(store, snapshot, 2, acting=1)
    assert await store.get(model.node_key(2)) is not None
