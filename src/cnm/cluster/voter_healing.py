"""Store voters that heal: a dead voter's seat given to a live node, and ghost records cleaned up.

One node acts for the cluster: the live voter with the lowest uid (`acting_node`); every other
node computes the same and does nothing. The acting node
- gives away the seat of a voter down longer than the policy's `voter_replace_after`
  (`seat_to_give`): it removes that node's etcd member (`remove_node_member`, under the
  store-change lock, so never without quorum and never shrinking a two-voter store) and records
  the node as a store client; the best live client then becomes a voter by the usual path
  (voters.py: learner, in sync, promote), taken from the racks with the fewest voters, so the
  seat stays in the dead voter's rack when that rack has a live client. A seat is given away
  only when a live client can take it (removing alone would not add fault tolerance), and in a
  rack-aware cluster the last voter of a rack is not removed while another rack has two, unless
  its own rack has a live client to take the seat (otherwise the store would lean on one rack);
- removes ghost records (`ghosts`): a node admitted (`joining: true`) whose joiner never
  completed, not alive for twice `voter_replace_after`. A ghost is never a voter candidate and
  never counts toward the voters wanted (voters.py), so it cannot hold the store on too few.

"Down since" is when this node's snapshot saw the liveness lease lapse (or, for a node already
down when this node started watching, when it started watching): a node that just became the
acting one waits the full period again, which errs on the side of not acting. Each decision is
logged once with its reason (`voter_replacement`, `ghost_node_removed` events).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from cnm.cluster import model
from cnm.cluster.records import ClusterRecord, NodeKeyIndex, NodeRecord, StoreRole
from cnm.cluster.snapshot import ClusterSnapshot
from cnm.cluster.store_members import remove_node_member, store_change_lock
from cnm.cluster.writes import update_record
from cnm.failpoints import failpoint
from cnm.logs import event
from cnm.store.base import Compare, Delete, Store

log = logging.getLogger(__name__)


def replace_after(snapshot: ClusterSnapshot) -> float:
    cluster = snapshot.cluster() or ClusterRecord()
    value = cluster.policy.voter_replace_after
    return float(value if value is not None else model.DEFAULT_VOTER_REPLACE_AFTER)


def real_nodes(snapshot: ClusterSnapshot) -> list[NodeRecord]:
    """The nodes that completed their join (a `joining` record may be a ghost)."""
    return [n for n in snapshot.nodes() if not n.joining]


def acting_node(snapshot: ClusterSnapshot) -> int | None:
    """The one node that heals the store: the live voter with the lowest uid."""
    live = [n.uid for n in snapshot.voters() if not n.joining and snapshot.is_alive(n.uid)]
    return min(live) if live else None


@dataclass(frozen=True)
class SeatDecision:
    """What to do about a dead voter: `give` its seat away or keep it, and why."""

    node: NodeRecord
    give: bool
    reason: str


def seat_to_give(
    snapshot: ClusterSnapshot, down_for: Callable[[int], float]
) -> SeatDecision | None:
    """The decision about the voter down longest beyond `voter_replace_after`; None when no
    voter is down that long. `down_for(uid)`: seconds the node has been seen down."""
    limit = replace_after(snapshot)
    nodes = real_nodes(snapshot)
    voters = [n for n in nodes if n.store_role is StoreRole.VOTER]
    dead = [n for n in voters if not snapshot.is_alive(n.uid) and down_for(n.uid) >= limit]
    if not dead:
        return None
    target = max(dead, key=lambda n: (down_for(n.uid), -n.uid))
    seconds = down_for(target.uid)
    candidates = [n for n in nodes if n.store_role is StoreRole.CLIENT and snapshot.is_alive(n.uid)]
    if not candidates:
        return SeatDecision(
            target, False, f"down {seconds:.0f} s, but no live client node can take its seat"
        )
    cluster = snapshot.cluster() or ClusterRecord()
    if cluster.rack_aware:
        per_rack = Counter(n.rack_id for n in voters)
        crowded = [r for r, count in per_rack.items() if r != target.rack_id and count >= 2]
        same_rack = [n for n in candidates if n.rack_id == target.rack_id]
        if per_rack[target.rack_id] == 1 and crowded and not same_rack:
            return SeatDecision(
                target,
                False,
                f"down {seconds:.0f} s, but it is the last voter of rack {target.rack_id!r}, "
                f"rack {crowded[0]!r} has two, and no live node of its rack can take the seat",
            )
    return SeatDecision(
        target,
        True,
        f"down {seconds:.0f} s (voter_replace_after {replace_after(snapshot):.0f} s); "
        f"{len(candidates)} live client node(s) can take its seat",
    )


def ghosts(snapshot: ClusterSnapshot, down_for: Callable[[int], float]) -> list[NodeRecord]:
    """Records admitted but never completed, down for twice `voter_replace_after`."""
    grace = 2 * replace_after(snapshot)
    return [
        n
        for n in snapshot.nodes()
        if n.joining and not snapshot.is_alive(n.uid) and down_for(n.uid) >= grace
    ]


class DownClock:
    """Since when (monotonic) each node has been seen down by this node's snapshot."""

    def __init__(
        self, snapshot: ClusterSnapshot, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._snapshot = snapshot
        self._clock = clock
        self._since: dict[int, float] = {}

    def down_for(self, uid: int) -> float:
        """Seconds node `uid` has been down; 0 while it is alive."""
        now = self._clock()
        if self._snapshot.is_alive(uid):
            self._since.pop(uid, None)
            return 0.0
        return now - self._since.setdefault(uid, now)

    def observe(self) -> None:
        """Start the clock of every node seen down (call on each change and periodically)."""
        for node in self._snapshot.nodes():
            self.down_for(node.uid)


class VoterHealer:
    """The acting node's side: one pass of `heal` gives away at most one seat and cleans
    ghosts. Callers run it only on the acting node, periodically."""

    def __init__(self, store: Store, snapshot: ClusterSnapshot, clock: DownClock, uid: int) -> None:
        self._store = store
        self._snapshot = snapshot
        self._clock = clock
        self._uid = uid
        self._logged: dict[int, str] = {}

    async def heal(self) -> None:
        if acting_node(self._snapshot) != self._uid:
            return
        # The other nodes' clocks follow liveness changes one key at a time (VoterManager);
        # the acting node also walks them all, for nodes it has never seen change.
        self._clock.observe()
        for ghost in ghosts(self._snapshot, self._clock.down_for):
            await self._remove_ghost(ghost)
        decision = seat_to_give(self._snapshot, self._clock.down_for)
        if decision is None:
            return
        if not decision.give:
            self._log_once(decision, "kept")
            return
        async with store_change_lock(self._store, self._uid) as held:
            if not held:
                return  # a membership change is under way; the next pass looks again
            node = decision.node
            await remove_node_member(
                self._store, self._snapshot, node, reason=f"voter {decision.reason}"
            )
            failpoint("heal.after_member_removed")
            await update_record(
                self._store,
                model.node_key(node.uid),
                NodeRecord,
                lambda r: r.changed(store_role=StoreRole.CLIENT, store_client_url=""),
            )
            failpoint("heal.after_client_recorded")
        self._log_once(decision, "seat_given")

    def _log_once(self, decision: SeatDecision, outcome: str) -> None:
        uid = decision.node.uid
        if self._logged.get(uid) == outcome:
            return
        self._logged[uid] = outcome
        log.info(
            "store voter node %d: %s (%s)",
            uid,
            "its seat goes to a live node" if decision.give else "seat kept",
            decision.reason,
            extra=event(
                "voter_replacement",
                uid=uid,
                outcome=outcome,
                reason=decision.reason,
                down_for=round(self._clock.down_for(uid), 1),
            ),
        )

    async def _remove_ghost(self, ghost: NodeRecord) -> None:
        """Delete the record and its node-key index, only if it is still the same ghost."""
        key = model.node_key(ghost.uid)
        current = await self._store.get(key)
        if current is None or not _decodes(NodeRecord, current.value, joining=True):
            return
        indexes, _ = await self._store.get_prefix(model.NODE_KEY_PREFIX)
        ops = [Delete(key)] + [
            Delete(kv.key) for kv in indexes if _decodes(NodeKeyIndex, kv.value, uid=ghost.uid)
        ]
        result = await self._store.txn([Compare.mod(key, "=", current.mod_revision)], ops, [])
        if not result.succeeded:
            return  # the joiner completed (or the record changed) meanwhile: not a ghost
        reason = (
            f"admitted at {ghost.addr or 'an unknown address'} but never completed its join; "
            f"down {self._clock.down_for(ghost.uid):.0f} s"
        )
        log.info(
            "removed node record %d: %s",
            ghost.uid,
            reason,
            extra=event("ghost_node_removed", uid=ghost.uid, reason=reason),
        )


def _decodes(kind: type[NodeRecord] | type[NodeKeyIndex], value: bytes, **expected: object) -> bool:
    """Whether `value` decodes as `kind` with the `expected` fields (a document that does not
    decode is not touched: the snapshot reports it)."""
    try:
        record = kind.decode(value)
    except ValueError:
        return False
    return all(getattr(record, name) == wanted for name, wanted in expected.items())
