"""Store voters that heal: which seat is given away, by whom, ghosts; on the in-memory store."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cnm.cluster import model
from cnm.cluster.records import NodeRecord, StoreRole
from cnm.cluster.snapshot import ClusterSnapshot
from cnm.cluster.store_members import MemberRemovalRefused
from cnm.cluster.voter_healing import DownClock, VoterHealer, acting_node, ghosts, seat_to_give
from cnm.cluster.voters import next_voter
from cnm.store.base import Member
from cnm.store.memory import MemoryStore

SETTINGS = {"socket_dir": "/s", "conf_dir": "/c", "install_dir": "/i", "os_user": "u"}


def node(uid: int, role: str = "client", rack: str = "", **extra: Any) -> dict[str, Any]:
    peer = f"https://10.0.0.{uid}:2380" if role == "voter" else ""
    return {
        "uid": uid,
        "addr": f"10.0.0.{uid}",
        "store_role": role,
        "rack_id": rack,
        "store_peer_url": peer,
        **extra,
    }


async def cluster_of(
    nodes: list[dict[str, Any]], *, alive: set[int], rack_aware: bool = False
) -> tuple[MemoryStore, ClusterSnapshot]:
    store = MemoryStore()
    record = {
        "name": "c",
        "rack_aware": rack_aware,
        "node_settings": SETTINGS,
        "policy": {"voter_replace_after": 5},
    }
    await store.put(model.CLUSTER_KEY, json.dumps(record).encode())
    for document in nodes:
        uid = document["uid"]
        await store.put(model.node_key(uid), json.dumps(document).encode())
        await store.put(model.node_key_index(f"key-{uid}"), json.dumps({"uid": uid}).encode())
        if uid in alive:
            await store.put(model.liveness_key(uid), json.dumps({"uid": uid}).encode())
        if document["store_role"] == "voter":
            await store.member_add([document["store_peer_url"]], learner=False)
    # The memory store starts with a member of its own; the voters here replace it.
    await store.member_remove(1)
    snapshot = ClusterSnapshot(store)
    await snapshot.load()
    return store, snapshot


def down_for(seconds: dict[int, float]) -> Any:
    return lambda uid: seconds.get(uid, 0.0)


async def test_a_voter_down_past_the_setting_gives_its_seat_to_a_live_client() -> None:
    nodes = [node(1, "voter"), node(2, "voter"), node(3, "voter"), node(4)]
    _, snapshot = await cluster_of(nodes, alive={1, 3, 4})
    assert seat_to_give(snapshot, down_for({2: 4.9})) is None  # not long enough yet
    decision = seat_to_give(snapshot, down_for({2: 5.0}))
    assert decision is not None and decision.give and decision.node.uid == 2
    assert "down 5 s" in decision.reason


async def test_no_seat_given_without_a_live_client_to_take_it() -> None:
    nodes = [node(1, "voter"), node(2, "voter"), node(3, "voter"), node(4)]
    _, snapshot = await cluster_of(nodes, alive={1, 3})
    decision = seat_to_give(snapshot, down_for({2: 60, 4: 60}))
    assert decision is not None and not decision.give
    assert "no live client" in decision.reason


async def test_the_last_voter_of_a_rack_stays_while_another_rack_has_two() -> None:
    nodes = [
        node(1, "voter", "a"),
        node(2, "voter", "a"),
        node(3, "voter", "b"),
        node(4, rack="a"),
    ]
    _, snapshot = await cluster_of(nodes, alive={1, 2, 4}, rack_aware=True)
    decision = seat_to_give(snapshot, down_for({3: 60}))
    assert decision is not None and not decision.give
    assert "last voter of rack 'b'" in decision.reason
    # With a live node in its own rack, the seat moves within the rack.
    nodes.append(node(5, rack="b"))
    _, snapshot = await cluster_of(nodes, alive={1, 2, 4, 5}, rack_aware=True)
    decision = seat_to_give(snapshot, down_for({3: 60}))
    assert decision is not None and decision.give


async def test_the_lowest_live_voter_acts() -> None:
    nodes = [node(1, "voter"), node(2, "voter"), node(3, "voter"), node(4)]
    _, snapshot = await cluster_of(nodes, alive={2, 3, 4})
    assert acting_node(snapshot) == 2


async def test_ghosts_are_neither_voters_nor_counted() -> None:
    # Two real nodes and a ghost: one voter is wanted, not three.
    nodes = [node(1, "voter"), node(2), node(3, joining=True)]
    _, snapshot = await cluster_of(nodes, alive={1, 2})
    assert next_voter(snapshot) is None
    assert [g.uid for g in ghosts(snapshot, down_for({3: 9.9}))] == []
    assert [g.uid for g in ghosts(snapshot, down_for({3: 10}))] == [3]


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_the_acting_node_removes_the_dead_member_and_a_client_is_next() -> None:
    nodes = [node(1, "voter"), node(2, "voter"), node(3, "voter"), node(4)]
    store, snapshot = await cluster_of(nodes, alive={1, 3, 4})
    clock = FakeClock()
    down = DownClock(snapshot, clock=clock)
    healer = VoterHealer(store, snapshot, down, uid=1)
    await healer.heal()  # starts the clock: nothing yet
    assert len(await store.member_list()) == 3
    # Another node is not the acting one: it never acts.
    clock.now += 5
    await VoterHealer(store, snapshot, down, uid=3).heal()
    assert len(await store.member_list()) == 3
    await healer.heal()
    members = await store.member_list()
    assert sorted(m.peer_urls[0] for m in members) == [
        "https://10.0.0.1:2380",
        "https://10.0.0.3:2380",
    ]
    await snapshot.load()
    gone = snapshot.node(2)
    assert gone is not None and gone.store_role is StoreRole.CLIENT
    assert next_voter(snapshot) == 4


async def test_never_without_quorum() -> None:
    nodes = [node(1, "voter"), node(2, "voter"), node(3, "voter"), node(4), node(5)]
    store, snapshot = await cluster_of(nodes, alive={1, 4, 5})
    clock = FakeClock()
    healer = VoterHealer(store, snapshot, DownClock(snapshot, clock=clock), uid=1)
    await healer.heal()
    clock.now += 60
    with pytest.raises(MemberRemovalRefused, match="voters that would remain are alive"):
        await healer.heal()
    assert len(await store.member_list()) == 3
    assert len([m for m in await store.member_list() if isinstance(m, Member)]) == 3


async def test_a_ghost_record_and_its_index_are_removed_after_the_grace() -> None:
    nodes = [node(1, "voter"), node(2), node(3, joining=True)]
    store, snapshot = await cluster_of(nodes, alive={1, 2})
    clock = FakeClock()
    healer = VoterHealer(store, snapshot, DownClock(snapshot, clock=clock), uid=1)
    await healer.heal()
    clock.now += 9
    await healer.heal()
    assert await store.get(model.node_key(3)) is not None
    clock.now += 1
    await healer.heal()
    assert await store.get(model.node_key(3)) is None
    assert await store.get(model.node_key_index("key-3")) is None
    assert await store.get(model.node_key_index("key-2")) is not None
    record = await store.get(model.node_key(2))
    assert record is not None and NodeRecord.decode(record.value).uid == 2
