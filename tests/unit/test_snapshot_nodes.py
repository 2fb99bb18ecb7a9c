"""ClusterSnapshot.nodes() is kept between changes (every node change's listeners ask for it) and
follows each load and each watch event under /cnm/nodes/ (memory store)."""

from __future__ import annotations

import asyncio
import random

from cnm.cluster import model
from cnm.cluster.records import NodeRecord, StoreRole
from cnm.cluster.snapshot import ClusterSnapshot
from cnm.cluster.writes import wait_for_revision
from cnm.store.memory import MemoryStore


def _uids(snapshot: ClusterSnapshot) -> list[int]:
    return [node.uid for node in snapshot.nodes()]


async def test_nodes_follow_puts_and_deletes_and_callers_cannot_change_them() -> None:
    store = MemoryStore()
    await store.put(model.node_key(2), NodeRecord(uid=2).encode())
    snapshot = ClusterSnapshot(store)
    task = asyncio.create_task(snapshot.run())
    try:
        await snapshot.wait_loaded(5)
        assert _uids(snapshot) == [2]
        snapshot.nodes().clear()  # a caller's list is its own
        assert _uids(snapshot) == [2]
        revision = await store.put(model.node_key(1), NodeRecord(uid=1, addr="a").encode())
        assert await wait_for_revision(snapshot, revision, timeout=5)
        assert _uids(snapshot) == [1, 2]
        revision = await store.put(model.node_key(1), NodeRecord(uid=1, addr="b").encode())
        assert await wait_for_revision(snapshot, revision, timeout=5)
        assert [node.addr for node in snapshot.nodes()] == ["b", ""]
        # A change elsewhere keeps the list; a delete under /cnm/nodes/ drops the node.
        revision = await store.put(model.CLUSTER_KEY, b'{"name": "c"}')
        assert await wait_for_revision(snapshot, revision, timeout=5)
        assert await store.delete(model.node_key(2)) == 1
        _, revision = await store.get_prefix(model.PREFIX)
        assert await wait_for_revision(snapshot, revision, timeout=5)
        assert _uids(snapshot) == [1]
        # A reload (after a broken watch) builds it again from what it read.
        await store.put(model.node_key(3), NodeRecord(uid=3).encode())
        await snapshot.load()
        assert _uids(snapshot) == [1, 3]
        # A record that does not decode leaves the node as it was, in nodes() as in node().
        await store.put(model.node_key(3), b"not json")
        revision = await store.put(model.CLUSTER_KEY, b'{"name": "d"}')
        assert await wait_for_revision(snapshot, revision, timeout=5)
        assert _uids(snapshot) == [1, 3] and snapshot.node(3) == snapshot.nodes()[1]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def _expected(snapshot: ClusterSnapshot) -> tuple[list[NodeRecord], int]:
    """voters() and completed_node_count() as a walk over every node says them."""
    nodes = snapshot.nodes()
    voters = [n for n in nodes if n.store_role is StoreRole.VOTER]
    return voters, sum(1 for n in nodes if not n.joining)


async def test_the_voters_and_the_completed_count_follow_every_change_and_reload() -> None:
    """Kept as records change (not walked at each question): checked against the walk after
    each of many random puts, role changes, joins completing, deletes and undecodable writes."""
    rng = random.Random(12)
    store = MemoryStore()
    for uid in (1, 2):
        await store.put(
            model.node_key(uid), NodeRecord(uid=uid, store_role=StoreRole.VOTER).encode()
        )
    await store.put(model.node_key(3), NodeRecord(uid=3, joining=True).encode())
    snapshot = ClusterSnapshot(store)
    task = asyncio.create_task(snapshot.run())
    try:
        await snapshot.wait_loaded(5)
        assert [n.uid for n in snapshot.voters()] == [1, 2]
        assert snapshot.completed_node_count() == 2
        for step in range(300):
            uid = rng.randint(1, 12)
            kind = rng.random()
            if kind < 0.15:
                await store.delete(model.node_key(uid))
            elif kind < 0.2:
                await store.put(model.node_key(uid), b"not json")
            else:
                role = rng.choice(list(StoreRole))
                record = NodeRecord(uid=uid, store_role=role, joining=rng.random() < 0.3)
                await store.put(model.node_key(uid), record.encode())
            _, revision = await store.get_prefix(model.PREFIX)
            assert await wait_for_revision(snapshot, revision, timeout=5)
            voters, completed = _expected(snapshot)
            assert snapshot.voters() == voters, step
            assert snapshot.completed_node_count() == completed, step
            if step % 50 == 49:
                await snapshot.load()
                voters, completed = _expected(snapshot)
                assert snapshot.voters() == voters and snapshot.completed_node_count() == completed
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_an_undecodable_record_still_moves_the_snapshot_to_its_revision() -> None:
    """Kept as it was, but the revision is reached: otherwise the snapshot would count as
    behind the store (503 `store_unavailable`, then a reload) and read-your-writes would wait
    out its timeout."""
    store = MemoryStore()
    await store.put(model.node_key(1), NodeRecord(uid=1, addr="a").encode())
    snapshot = ClusterSnapshot(store)
    task = asyncio.create_task(snapshot.run())
    try:
        await snapshot.wait_loaded(5)
        revision = await store.put(model.node_key(1), b'{"uid": "not a number"}')
        assert await wait_for_revision(snapshot, revision, timeout=1.0)
        assert snapshot.revision == revision
        node = snapshot.node(1)
        assert node is not None and node.addr == "a"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
