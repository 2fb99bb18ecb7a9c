"""The store's membership changes, one at a time and safely: the lock, and member removal.

Every change of the store's members (a learner added and promoted, a dead voter removed, a
replaced or removed node's member removed) runs under one lock key in the store with a lease
(`store_change_lock`): a holder that dies frees it within the lease's TTL, and no two changes
overlap, which is what etcd's one-learner-at-a-time rule and quorum arithmetic need.

`remove_node_member` is the only place a member leaves the store. Its rules
(`removal_refusal`):
- a learner can always go: it does not count for quorum;
- the last voter never goes, and a store of two voters never shrinks (one more failure would
  leave it without quorum, and with one dead it has none to act with anyway);
- a voter goes only if the voters that remain, and are alive, are a majority of the voters
  that remain: the store keeps quorum through the change.
"Alive" is the node's liveness lease as this node's snapshot sees it; the store answering the
member list proves that the store has quorum now.

etcd runs with its strict reconfiguration check off (store/etcd_process.py says why), so its own
quorum guards for adds, promotions and removals are gone and these rules are cnm's alone. cnm
only ever adds learners (they do not count for quorum), and a learner is promoted only under
`promotion_refusal`: the voters after the promotion, the learner among them, must have a live
majority. etcd itself still refuses to promote a learner that is not in sync with the leader
(its `isLearnerReady` runs whatever the strict check says), so the new voter is running.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Sequence
from urllib.parse import urlsplit

from cnm.cluster import model
from cnm.cluster.records import NodeRecord, StoreChangeLock
from cnm.cluster.snapshot import ClusterSnapshot
from cnm.errors import CnmError
from cnm.logs import event
from cnm.store.base import Compare, Member, Put, Store

log = logging.getLogger(__name__)

LOCK_TTL = 15
# When this agent process started. A lock held under this node's uid but taken before then was
# left by a previous run of this agent that died holding it (a crash mid-change): its lease would
# keep it for LOCK_TTL more seconds after etcd restarts, refusing this node's own retries.
_STARTED = time.time()


class MemberRemovalRefused(CnmError):
    """Removing the member would cost the store its quorum or its last voter."""

    error_code = "store_quorum_at_risk"
    http_status = 409


def member_name(uid: int) -> str:
    """The etcd member name of node `uid` (set when its member starts)."""
    return f"node-{uid}"


def member_of(node: NodeRecord, members: Sequence[Member]) -> Member | None:
    """`node`'s member in the store: by its recorded peer URL, its member name, or (a learner
    added but never started has neither) a peer URL on the node's address."""
    for member in members:
        if node.store_peer_url and node.store_peer_url in member.peer_urls:
            return member
    for member in members:
        if member.name and member.name == member_name(node.uid):
            return member
    for member in members:
        if any(urlsplit(url).hostname == node.addr for url in member.peer_urls):
            return member
    return None


def owner_of(member: Member, nodes: Sequence[NodeRecord]) -> NodeRecord | None:
    """The node whose member `member` is (the inverse of `member_of`)."""
    for node in nodes:
        if member_of(node, [member]) is member:
            return node
    return None


def alive_members(snapshot: ClusterSnapshot, members: Sequence[Member]) -> set[int]:
    """Ids of the members whose node has its liveness lease."""
    nodes = snapshot.nodes()
    alive = set()
    for member in members:
        owner = owner_of(member, nodes)
        if owner is not None and snapshot.is_alive(owner.uid):
            alive.add(member.id)
    return alive


def removal_refusal(target: Member, members: Sequence[Member], alive: set[int]) -> str | None:
    """Why removing `target` now would be unsafe (see the module docstring), or None."""
    if target.is_learner:
        return None
    voters = [m for m in members if not m.is_learner]
    if len(voters) <= 1:
        return "it is the store's last voter"
    if len(voters) == 2:
        return (
            "the store has two voters, and a store of two never shrinks (add a node so it can "
            "grow to three first)"
        )
    remaining = [v for v in voters if v.id != target.id]
    quorum = len(remaining) // 2 + 1
    up = sum(1 for v in remaining if v.id in alive)
    if up < quorum:
        return (
            f"only {up} of the {len(remaining)} voters that would remain are alive; the store "
            f"needs {quorum} of them to keep its quorum"
        )
    return None


def promotion_refusal(learner: Member, members: Sequence[Member], alive: set[int]) -> str | None:
    """Why promoting `learner` now could cost the store its quorum, or None: the voters after the
    promotion (it among them) need a live majority. The caller has just seen the store answer,
    so the current voters have quorum; this keeps it with one more voter to count."""
    voters = [m for m in members if not m.is_learner and m.id != learner.id]
    after = len(voters) + 1
    quorum = after // 2 + 1
    up = 1 + sum(1 for v in voters if v.id in alive)  # the learner: in sync, so running
    if up < quorum:
        return (
            f"only {up} of the {after} voters it would make are alive; the store needs {quorum} "
            "of them for quorum (wait for the dead voter to be replaced or to come back)"
        )
    return None


@contextlib.asynccontextmanager
async def store_change_lock(store: Store, uid: int) -> AsyncIterator[bool]:
    """Hold the store-change lock for node `uid` while the block runs; yields False (and holds
    nothing) when another node holds it. The lock's lease is kept alive meanwhile."""
    lease = await store.lease_grant(LOCK_TTL)
    holder = StoreChangeLock(uid=uid, since=time.time()).encode()
    if not await _acquire(store, uid, holder, lease):
        await store.lease_revoke(lease)
        yield False
        return

    async def keep_alive() -> None:
        while True:
            await asyncio.sleep(LOCK_TTL / 3)
            with contextlib.suppress(CnmError):
                await store.lease_keepalive(lease)

    keepalive = asyncio.create_task(keep_alive())
    try:
        yield True
    finally:
        keepalive.cancel()
        with contextlib.suppress(CnmError):
            await store.delete(model.STORE_CHANGE_LOCK)
            await store.lease_revoke(lease)


async def _acquire(store: Store, uid: int, holder: bytes, lease: int) -> bool:
    """Create the lock; or take it over (guarded by its revision) when this node's previous run
    left it behind. Another node's lock, or one taken by this run, is never taken."""
    if await store.create(model.STORE_CHANGE_LOCK, holder, lease=lease):
        return True
    current = await store.get(model.STORE_CHANGE_LOCK)
    if current is None:  # released meanwhile
        return await store.create(model.STORE_CHANGE_LOCK, holder, lease=lease)
    try:
        held = StoreChangeLock.decode(current.value)
    except ValueError:
        return False
    if held.uid != uid or held.since >= _STARTED:
        return False
    result = await store.txn(
        [Compare.mod(model.STORE_CHANGE_LOCK, "=", current.mod_revision)],
        [Put(model.STORE_CHANGE_LOCK, holder, lease)],
    )
    if result.succeeded:
        log.warning(
            "took over the store-change lock that node %d's previous run left behind "
            "(it died during a membership change)",
            uid,
        )
    return result.succeeded


async def remove_node_member(
    store: Store, snapshot: ClusterSnapshot, node: NodeRecord, *, reason: str
) -> Member | None:
    """Remove `node`'s member from the store if it has one and the rules allow; returns the
    removed member (None: it had none). Raises `MemberRemovalRefused` naming the rule. The
    caller holds the store-change lock."""
    members = await store.member_list()
    target = member_of(node, members)
    if target is None:
        return None
    refusal = removal_refusal(target, members, alive_members(snapshot, members))
    if refusal is not None:
        raise MemberRemovalRefused(
            f"node {node.uid}'s store member cannot be removed now: {refusal}",
            uid=node.uid,
        )
    await store.member_remove(target.id)
    log.info(
        "removed node %d's store %s %s (%s)",
        node.uid,
        "learner" if target.is_learner else "voter",
        ", ".join(target.peer_urls) or target.id,
        reason,
        extra=event(
            "store_member_removed",
            uid=node.uid,
            learner=target.is_learner,
            reason=reason,
        ),
    )
    return target
