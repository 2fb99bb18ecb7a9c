"""The down marker (cluster/repair.py) writes `down_since` for the node whose liveness key went,
on that change, and looks only at the nodes that changed: every node of the cluster sees every
join's changes, and a walk over all nodes for each would cost the cluster O(N^2) per join."""

from __future__ import annotations

import asyncio

from cnm.cluster import model
from cnm.cluster.records import LivenessRecord, NodeRecord
from cnm.cluster.repair import run_down_marker
from cnm.cluster.snapshot import ClusterSnapshot
from cnm.store.base import Put
from cnm.store.memory import MemoryStore
from harness.polling import eventually_async


class CountingSnapshot(ClusterSnapshot):
    def __init__(self, store: MemoryStore) -> None:
        super().__init__(store)
        self.walks = 0

    def nodes(self) -> list[NodeRecord]:
        self.walks += 1
        return super().nodes()


async def test_a_lapsed_node_is_marked_on_the_change_without_a_walk_over_all_nodes() -> None:
    store = MemoryStore()
    for uid in (1, 2, 3):
        await store.put(model.node_key(uid), NodeRecord(uid=uid).encode())
        live = LivenessRecord(uid=uid, run="r", since="2026-12-01T00:00:00Z")
        await store.put(model.liveness_key(uid), live.encode())
    snapshot = CountingSnapshot(store)
    await snapshot.load()
    tasks = [
        asyncio.create_task(snapshot.run()),
        # An interval far beyond the test: only the changes wake the marker.
        asyncio.create_task(run_down_marker(store, snapshot, interval=3600)),
    ]
    try:
        await asyncio.sleep(0.05)
        walks = snapshot.walks
        # A join completes (record and liveness in one transaction): nothing to mark.
        await store.txn(
            [],
            [
                Put(model.node_key(4), NodeRecord(uid=4).encode()),
                Put(model.liveness_key(4), LivenessRecord(uid=4, run="r").encode()),
            ],
        )
        # Node 3's agent dies: its liveness key goes, and the marker writes down_since.
        await store.delete(model.liveness_key(3))

        def marked() -> bool:
            node = snapshot.node(3)
            return node is not None and bool(node.down_since)

        await eventually_async(marked, message="node 3 marked down")
        assert snapshot.walks == walks  # no pass over every node for either change
        assert [n.uid for n in snapshot.nodes() if n.down_since] == [3]
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
