"""The rules of removing a store member, and the one-change-at-a-time lock, on the memory store."""

from __future__ import annotations

import pytest

from cnm.cluster import model
from cnm.cluster.records import NodeRecord, StoreChangeLock, StoreRole
from cnm.cluster.store_members import (
    member_of,
    promotion_refusal,
    removal_refusal,
    store_change_lock,
)
from cnm.store.base import Member
from cnm.store.memory import MemoryStore


def voter(member_id: int, addr: str) -> Member:
    return Member(member_id, f"node-{member_id}", (f"https://{addr}:2380",), (), False)


def test_a_learner_can_always_go() -> None:
    learner = Member(9, "", ("https://10.0.0.9:2380",), (), True)
    assert removal_refusal(learner, [voter(1, "10.0.0.1"), learner], alive=set()) is None


def test_the_last_voter_and_a_two_voter_store_never_shrink() -> None:
    one = voter(1, "10.0.0.1")
    assert "last voter" in str(removal_refusal(one, [one], alive={1}))
    two = voter(2, "10.0.0.2")
    assert "two voters" in str(removal_refusal(two, [one, two], alive={1}))


@pytest.mark.parametrize(
    ("alive", "refused"),
    [({2, 3}, False), ({2}, True), ({2, 3, 4}, False), ({4}, True)],
)
def test_a_voter_goes_only_if_the_rest_keep_quorum(alive: set[int], refused: bool) -> None:
    members = [voter(i, f"10.0.0.{i}") for i in (1, 2, 3, 4)]
    # Removing 1 leaves 3 voters: 2 of them must be alive.
    reason = removal_refusal(members[0], members, alive=alive)
    assert (reason is not None) is refused, reason


@pytest.mark.parametrize(
    ("voters", "alive", "refused"),
    [
        # 1 -> 2 voters: quorum 2, the only voter must be alive.
        (1, {1}, False),
        (1, set(), True),
        # 2 -> 3: quorum 2 of 3, one live voter plus the learner is enough.
        (2, {1}, False),
        (2, set(), True),
        # 3 -> 4: quorum 3, two live voters plus the learner.
        (3, {1, 2, 3}, False),
        (3, {1, 3}, False),
        (3, {3}, True),
        # 4 -> 5: quorum 3.
        (4, {2, 4}, False),
        (4, {4}, True),
    ],
)
def test_a_learner_is_promoted_only_if_the_voters_after_keep_quorum(
    voters: int, alive: set[int], refused: bool
) -> None:
    members = [voter(i, f"10.0.0.{i}") for i in range(1, voters + 1)]
    learner = Member(9, "", ("https://10.0.0.9:2380",), (), True)
    # The learner itself counts as alive whatever `alive` says: etcd promotes it only in sync.
    reason = promotion_refusal(learner, [*members, learner], alive=alive)
    assert (reason is not None) is refused, reason
    if refused:
        assert "for quorum" in str(reason)


def test_a_node_finds_its_member_by_url_name_or_address() -> None:
    started = voter(3, "10.0.0.3")
    unstarted = Member(7, "", ("https://10.0.0.7:2380",), (), True)
    members = [started, unstarted]
    by_url = NodeRecord(uid=5, store_role=StoreRole.VOTER, store_peer_url="https://10.0.0.3:2380")
    assert member_of(by_url, members) is started
    assert member_of(NodeRecord(uid=3), members) is started  # by its name node-3
    assert member_of(NodeRecord(uid=8, addr="10.0.0.7"), members) is unstarted
    assert member_of(NodeRecord(uid=9, addr="10.0.0.9"), members) is None


async def test_one_change_at_a_time() -> None:
    store = MemoryStore()
    async with store_change_lock(store, 1) as first:
        assert first
        async with store_change_lock(store, 2) as second:
            assert not second
        assert await store.get(model.STORE_CHANGE_LOCK) is not None
    assert await store.get(model.STORE_CHANGE_LOCK) is None
    async with store_change_lock(store, 2) as again:
        assert again


async def test_a_lock_left_by_this_nodes_previous_run_is_taken_over() -> None:
    # Node 1 crashed holding the lock (since: before this process started).
    store = MemoryStore()
    lease = await store.lease_grant(60)
    stale = StoreChangeLock(uid=1, since=1.0).encode()
    assert await store.create(model.STORE_CHANGE_LOCK, stale, lease=lease)
    async with store_change_lock(store, 2) as other:
        assert not other  # another node never takes it
    async with store_change_lock(store, 1) as mine:
        assert mine
        # ...but a lock taken by this run is not taken again by this run.
        async with store_change_lock(store, 1) as nested:
            assert not nested
    assert await store.get(model.STORE_CHANGE_LOCK) is None
