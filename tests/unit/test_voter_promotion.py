"""A learner's promotion under cnm's own quorum rule (etcd's strict reconfiguration check is
off), through `VoterManager.become_voter` on the in-memory store (logic only)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cnm.cluster import model
from cnm.cluster.records import NodeRecord, StoreRole
from cnm.cluster.snapshot import ClusterSnapshot
from cnm.cluster.voters import VoterManager
from cnm.store.memory import MemoryStore
from cnm.store.recipes import PromotionRefused

SETTINGS = {"socket_dir": "/s", "conf_dir": "/c", "install_dir": "/i", "os_user": "u"}
PEER_2 = "https://10.0.0.2:2380"
PEER_3 = "https://10.0.0.3:2380"


def raw(document: dict[str, Any]) -> bytes:
    return json.dumps(document).encode()


async def cluster(*, voter_2_alive: bool) -> tuple[MemoryStore, VoterManager, list[str]]:
    """Two voters: the memory store's own member, which belongs to no node record (so it counts
    as dead), and node 2's; node 3 is the next voter. Returns the store, node 3's manager and the
    `initial_cluster` of each start of its member."""
    store = MemoryStore()
    added = (await store.member_add([PEER_2], learner=True))[0]
    await store.member_promote(added.id)
    await store.put(model.CLUSTER_KEY, raw({"name": "c", "node_settings": SETTINGS}))
    for uid, role in ((2, "voter"), (3, "client"), (4, "client")):
        record = {"uid": uid, "store_role": role, "addr": f"10.0.0.{uid}"}
        if uid == 2:
            record["store_peer_url"] = PEER_2
        await store.put(model.node_key(uid), raw(record))
        if uid != 2 or voter_2_alive:
            await store.put(model.liveness_key(uid), raw({"uid": uid}))
    snapshot = ClusterSnapshot(store)
    await snapshot.load()
    starts: list[str] = []

    async def start_member(initial_cluster: str, fresh: bool) -> None:
        starts.append(initial_cluster)

    manager = VoterManager(
        store,
        snapshot,
        uid=3,
        peer_url=PEER_3,
        client_url="https://10.0.0.3:2379",
        member_name="node-3",
        start_member=start_member,
    )
    return store, manager, starts


async def test_a_learner_is_promoted_when_the_voters_after_keep_a_live_majority() -> None:
    # One of the two voters (node 2) alive: 3 voters after the promotion, 2 of them alive.
    # One of the two voters (node 2) alive: 3 voters after the promotion, 2 of them alive.
    store, manager, starts = await cluster(voter_2_alive=True)
    assert await manager.become_voter()
    assert starts, "the learner's member was started before the promotion"
    members = {tuple(m.peer_urls): m for m in await store.member_list()}
    assert members[(PEER_3,)].is_learner is False
    record = NodeRecord.decode((await store.get(model.node_key(3))).value)  # type: ignore[union-attr]
    assert record.store_role is StoreRole.VOTER


async def test_no_promotion_that_could_cost_quorum_and_the_lock_is_freed() -> None:
    # Both voters dead: 3 voters after the promotion need 2 alive, the learner is 1.
    store, manager, _ = await cluster(voter_2_alive=False)
    with pytest.raises(PromotionRefused, match="for quorum"):
        await manager.become_voter()
    members = {tuple(m.peer_urls): m for m in await store.member_list()}
    assert members[(PEER_3,)].is_learner is True, "still a learner: not promoted"
    assert await store.get(model.STORE_CHANGE_LOCK) is None, "the lock is free for healing"
    record = NodeRecord.decode((await store.get(model.node_key(3))).value)  # type: ignore[union-attr]
    assert record.store_role is StoreRole.CLIENT
