"""ClusterSnapshot.nodes() is kept between changes (every node change's listeners ask for it) and
follows each load and each watch event under /cnm/nodes/ (memory store)."""

from __future__ import annotations

import asyncio

from cnm.cluster import model
from cnm.cluster.records import NodeRecord
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
