"""Store voters: which nodes run etcd voters, and how a node becomes one.

The cluster wants 1 voter below 3 nodes, 3 from 3 nodes and 5 from 5 (capped by the cluster
setting `store_voters`). Every node computes the same plan from its snapshot; the one node that
is next in the plan promotes itself, so only one node acts and it is the one that must start
the etcd member anyway. Candidates are live store clients, taken from the racks with the fewest
voters first, then by uid.

A dead voter's seat is given to a live node, and ghost records are removed, by
voter_healing.py, run from this module's loop on every node (it acts on one).

Becoming a voter is etcd's safe sequence, one change at a time cluster-wide under a lock key with
a lease (a dead holder frees it): add this node as a learner (it does not count for quorum, so
a learner that never starts costs nothing), start its member with `initial-cluster-state
existing`, promote it once etcd says it is in sync and the voters after the promotion have a
live majority (`promotion_refusal`, store_members.py: etcd's strict reconfiguration check is off,
so this rule is cnm's), then record `store_role: voter`. A learner left behind by a node that
died half way is removed by the next holder of the lock, since etcd allows one learner at a
time. Nothing here ever adds a voting member that is not running.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable

from cnm.cluster import model
from cnm.cluster.records import ClusterRecord, NodeRecord, StoreChangeLock, StoreRole
from cnm.cluster.repair import seat_held
from cnm.cluster.snapshot import ClusterSnapshot
from cnm.cluster.store_members import (
    MemberRemovalRefused,
    alive_members,
    promotion_refusal,
    store_change_lock,
)
from cnm.cluster.voter_healing import DownClock, VoterHealer, real_nodes
from cnm.cluster.writes import update_record
from cnm.errors import CnmError
from cnm.failpoints import failpoint
from cnm.logs import event
from cnm.store.base import Member, MembershipChangeRefused, Store
from cnm.store.recipes import PromotionRefused, add_learner, initial_cluster, promote_learner

log = logging.getLogger(__name__)

PROMOTE_TIMEOUT = 60.0
# etcd answers "not in sync" until the learner has caught up, which takes a few heartbeats.
PROMOTE_INTERVAL = 0.02


def target_voters(node_count: int, store_voters: int) -> int:
    wanted = 5 if node_count >= 5 else 3 if node_count >= 3 else 1
    return max(1, min(wanted, store_voters))


def voter_counts(snapshot: ClusterSnapshot) -> tuple[int, int]:
    """(voters the cluster wants at its size, voters it has). A record still `joining` may be
    a ghost (its joiner died after admission): it is neither a voter nor counted in the voters
    wanted (voter_healing.py). From the voters' records and a count kept by the snapshot, not
    a walk over every node: every node asks at every change of the cluster."""
    cluster = snapshot.cluster() or ClusterRecord()
    wanted = target_voters(snapshot.completed_node_count(), cluster.store_voters)
    return wanted, sum(1 for n in snapshot.voters() if not n.joining)


def next_voter(snapshot: ClusterSnapshot) -> int | None:
    """The uid of the node that should become a voter next, or None when none should."""
    wanted, present = voter_counts(snapshot)
    if present >= wanted:
        return None  # most nodes at most changes: the voters are all there
    nodes = real_nodes(snapshot)
    # A learner counts only while its node lives: one that died half way is replaced (and its
    # etcd learner removed by the next node to take the lock).
    voters = [
        n
        for n in nodes
        if n.store_role is StoreRole.VOTER
        or (n.store_role is StoreRole.LEARNER and snapshot.is_alive(n.uid))
    ]
    if len(voters) >= wanted:
        return None
    # A replacement still completing its join keeps the seat of the voter it replaces
    # (cluster/repair.py), so no other node takes it meanwhile.
    if seat_held(snapshot, time.time()):
        return None
    per_rack = Counter(n.rack_id for n in voters)
    candidates = [n for n in nodes if n.store_role is StoreRole.CLIENT and snapshot.is_alive(n.uid)]
    if not candidates:
        return None
    # Among equals, a replacement first: it takes the failed node's store role.
    best = min(candidates, key=lambda n: (per_rack[n.rack_id], not n.replaced_at, n.uid))
    return best.uid


def voter_endpoints(snapshot: ClusterSnapshot, own_uid: int) -> list[str]:
    """Client URLs of the voters, this node's own first (it is the closest); a node without
    a member starts at the voter its uid picks, so the store clients' requests and watches
    spread over the voters instead of all landing on the lowest uid's member."""
    voters = [n for n in snapshot.voters() if n.store_client_url]
    own = [n for n in voters if n.uid == own_uid]
    others = sorted((n for n in voters if n.uid != own_uid), key=lambda n: n.uid)
    if others:
        shift = own_uid % len(others)
        others = others[shift:] + others[:shift]
    return [n.store_client_url for n in own + others]


# (initial_cluster, fresh): fresh when the member was just added, so old data must go.
StartMember = Callable[[str, bool], Awaitable[None]]


class VoterManager:
    """Runs on every node; acts only when this node is the next voter."""

    def __init__(
        self,
        store: Store,
        snapshot: ClusterSnapshot,
        *,
        uid: int,
        peer_url: str,
        client_url: str,
        member_name: str,
        start_member: StartMember,
    ) -> None:
        self._store = store
        self._snapshot = snapshot
        self._uid = uid
        self._peer_url = peer_url
        self._client_url = client_url
        self._member_name = member_name
        self._start_member = start_member
        self._wake = asyncio.Event()
        self.down_clock = DownClock(snapshot)
        self._healer = VoterHealer(store, snapshot, self.down_clock, uid)
        snapshot.add_listener(self._on_change)

    def _on_change(self, key: str) -> None:
        if key.startswith(model.LIVENESS_PREFIX):
            # Only the node whose key changed: a walk over every node at every change would
            # cost each node O(N) per join, O(N^2) over the cluster.
            uid = model.uid_from_key(key, model.LIVENESS_PREFIX)
            if uid is not None:
                self.down_clock.down_for(uid)
        if key.startswith((model.NODES_PREFIX, model.LIVENESS_PREFIX, model.STORE_CHANGE_LOCK)):
            self._wake.set()

    async def _heal(self) -> None:
        """The acting node's pass over dead voters and ghosts (voter_healing.py)."""
        try:
            await self._healer.heal()
        except MemberRemovalRefused as exc:
            log.info("store voter not replaced: %s", exc.message)
        except CnmError as exc:
            log.warning("healing the store's voters failed: %s; retrying", exc.message)

    async def run(self) -> None:
        backoff = 0.5
        while True:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation
            # that lands with the event (CPython gh-86296), and the agent then never exits.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2.0):
                    await self._wake.wait()
            self._wake.clear()
            if self._snapshot.loaded:
                await self._heal()
            own = self._snapshot.node(self._uid)
            learner = own is not None and own.store_role is StoreRole.LEARNER
            # A node that died while becoming a voter finishes the job when it comes back.
            if not learner and next_voter(self._snapshot) != self._uid:
                continue
            if self._lock_held_elsewhere():
                continue  # its release is a snapshot change that wakes this loop
            try:
                if await self.become_voter():
                    backoff = 0.5
                # Or another node holds the lock: its release (the lock key deleted, or its
                # lease lapsed) is a snapshot change that wakes this loop, so the next turn
                # starts at once instead of after a fixed pause (the 2 s tick as a fallback).
                continue
            except CnmError as exc:
                if isinstance(exc, PromotionRefused):
                    # A dead voter is not replaced yet: the lock is free for its healing; the
                    # snapshot's changes (or the 2 s tick) bring this node back.
                    log.info("%s; waiting", exc.message, extra=event("store_change_deferred"))
                    pause = 0.5
                elif isinstance(exc, MembershipChangeRefused) and exc.transient:
                    # etcd with its strict reconfiguration check (off in cnm, but a member
                    # started by an older cnm may still run with it) admits a change only once
                    # every voter has been connected for 5 s: wait at its pace, no backoff.
                    log.info(
                        "store not ready for another member yet (%s); waiting",
                        exc.message,
                        extra=event("store_change_deferred"),
                    )
                    pause = 0.5
                else:
                    log.warning("becoming a store voter failed: %s; retrying", exc.message)
                    pause = backoff
                    backoff = min(backoff * 2, 10.0)
            await asyncio.sleep(pause)
            self._wake.set()

    def _lock_held_elsewhere(self) -> bool:
        """The snapshot shows another node holding the store-change lock: trying it now would
        cost a lease and a refused write (the previous voter records its role before it lets
        go). A stale view only delays the attempt to the lock's release or the 2 s tick."""
        holder = self._snapshot.record(model.STORE_CHANGE_LOCK)
        return isinstance(holder, StoreChangeLock) and holder.uid != self._uid

    async def _set_role(self, role: StoreRole) -> None:
        def change(record: NodeRecord) -> NodeRecord:
            if role is StoreRole.VOTER:
                return record.changed(
                    store_role=role,
                    store_client_url=self._client_url,
                    store_peer_url=self._peer_url,
                )
            return record.changed(store_role=role)

        await update_record(self._store, model.node_key(self._uid), NodeRecord, change)

    async def become_voter(self) -> bool:
        """One attempt under the store-change lock; False when another node holds it."""
        async with store_change_lock(self._store, self._uid) as held:
            if not held:
                return False
            started = time.monotonic()
            try:
                member, fresh = await self._add_learner()
                failpoint("voter.after_learner_add")
                await self._set_role(StoreRole.LEARNER)
                # The list stays true while this node holds the lock: every change takes it.
                members = await self._store.member_list()
                await self._start_member(self._initial_cluster(members), fresh)
                failpoint("voter.after_member_start")
                await self._promote(member, members)
                failpoint("voter.after_promote")
                await self._set_role(StoreRole.VOTER)
                failpoint("voter.after_role_recorded")
            except BaseException:
                with contextlib.suppress(CnmError):
                    members = await self._store.member_list()
                    if not any(self._peer_url in m.peer_urls and not m.is_learner for m in members):
                        await self._set_role(StoreRole.CLIENT)
                raise
            seconds = time.monotonic() - started
            log.info(
                "became a store voter (learner add, start, promote) in %.2f s",
                seconds,
                extra=event("store_voter", seconds=round(seconds, 3)),
            )
            return True

    async def _add_learner(self) -> tuple[Member, bool]:
        return await add_learner(self._store, self._peer_url)

    def _initial_cluster(self, members: list[Member]) -> str:
        return initial_cluster(members, peer_url=self._peer_url, name=self._member_name)

    async def _promote(self, member: Member, members: list[Member]) -> None:
        def refusal() -> str | None:
            # Asked before every attempt: liveness may change while the learner catches up.
            return promotion_refusal(member, members, alive_members(self._snapshot, members))

        await promote_learner(
            self._store,
            member,
            timeout=PROMOTE_TIMEOUT,
            interval=PROMOTE_INTERVAL,
            refusal=refusal,
        )
