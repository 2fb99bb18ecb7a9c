"""The store recipes the product and the benchmarks share (cnm.store.recipes), on MemoryStore."""

from __future__ import annotations

import json

import pytest

from cnm.store.base import Member, Put
from cnm.store.memory import MemoryStore
from cnm.store.recipes import PromotionRefused, add_learner, initial_cluster, promote_learner


def _puts(uid: int) -> list[Put]:
    return [Put(f"/t/records/{uid}", json.dumps({"uid": uid}).encode())]


async def test_add_learner_is_idempotent_and_clears_a_stale_learner() -> None:
    store = MemoryStore()
    await add_learner(store, "https://10.0.0.9:2380")
    member, fresh = await add_learner(store, "https://10.0.0.2:2380")
    assert fresh and member.is_learner and member.peer_urls == ("https://10.0.0.2:2380",)
    peers = {url for m in await store.member_list() for url in m.peer_urls}
    assert "https://10.0.0.9:2380" not in peers
    again, fresh_again = await add_learner(store, "https://10.0.0.2:2380")
    assert again.id == member.id and not fresh_again


async def test_promote_learner_and_a_voter_is_left_alone() -> None:
    store = MemoryStore()
    member, _ = await add_learner(store, "https://10.0.0.2:2380")
    await promote_learner(store, member, timeout=1.0)
    promoted = {m.id: m.is_learner for m in await store.member_list()}
    assert promoted[member.id] is False
    (voter,) = [m for m in await store.member_list() if m.id != member.id]
    await promote_learner(store, voter, timeout=1.0)  # a voter: no call that etcd would refuse


async def test_a_refusal_stops_the_promotion_before_any_attempt() -> None:
    store = MemoryStore()
    member, _ = await add_learner(store, "https://10.0.0.2:2380")
    with pytest.raises(PromotionRefused, match="a voter is dead"):
        await promote_learner(store, member, timeout=1.0, refusal=lambda: "a voter is dead")
    still = {m.id: m.is_learner for m in await store.member_list()}
    assert still[member.id] is True
    await promote_learner(store, member, timeout=1.0, refusal=lambda: None)
    assert {m.id: m.is_learner for m in await store.member_list()}[member.id] is False


def test_initial_cluster_names_the_new_member() -> None:
    members = [
        Member(1, "node-1", ("https://10.0.0.1:2380",), (), False),
        Member(2, "", ("https://10.0.0.2:2380",), (), True),
        Member(3, "", (), (), True),
    ]
    text = initial_cluster(members, peer_url="https://10.0.0.2:2380", name="node-2")
    assert text == "node-1=https://10.0.0.1:2380,node-2=https://10.0.0.2:2380"
