"""Failed nodes and replacement joins: which nodes are down and since when, what a join into a
degraded cluster is answered, and how a new machine takes a failed node's place.

- A node is *failed* (API status `down`) while its liveness lease is missing; records of joins
  that never completed (`joining`) are not nodes yet and never count. The cluster is *degraded*
  while any node is failed.
- "Since when": a node's liveness record carries when it took its lease (`since`), so an
  active node is up since then. When a lease lapses, the surviving nodes write `down_since` into
  the node's record (`run_down_marker`: the first one wins, a compare-and-set); the node clears
  it when it is back (cluster/health.py). `down_since` is the time a survivor saw the lapse, so
  it is up to the lease TTL (9 s, see model.LIVENESS_TTL) after the death.
- `plan_join` is the member's decision for a join (docs/api-contract.md §5): a plain join into a
  degraded cluster is refused with `repair_required` unless `override_repair`; a join naming a
  failed node's uid (`node.identity.uid`) is a replacement, checked for memory and flash.
- `replace_node` takes the failed node's place: under the store-change lock, the failed node's
  etcd member (if any) is removed first (`remove_node_member`, with its quorum rules), then one
  transaction writes the new machine's record under the same uid, maps its node key to the uid
  and drops the old machine's node key (the uid counter is not advanced). The new record is a
  store client; a voter's seat is filled through the normal learner → promote path
  (cluster/voters.py prefers the replacement).
- `replacement_of` is what the old machine, restarted with its old data dir, reads to learn it
  was replaced: its node key no longer maps to its uid and the record says `replaced_at`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Collection
from datetime import UTC, datetime

from cnm.clock import iso
from cnm.cluster import model
from cnm.cluster.handshake import JoinRequest
from cnm.cluster.records import ClusterRecord, NodeKeyIndex, NodeRecord, StoreRole
from cnm.cluster.snapshot import ClusterSnapshot
from cnm.cluster.store_members import MemberRemovalRefused, remove_node_member, store_change_lock
from cnm.cluster.writes import cas_retry, update_record
from cnm.errors import (
    BootstrapInternalError,
    ConfigError,
    InsufficientNodeFlash,
    InsufficientNodeMemory,
    RepairRequired,
    StoreContention,
    StoreError,
    StoreUnavailable,
)
from cnm.failpoints import failpoint
from cnm.logs import event
from cnm.store.base import Compare, Delete, Put, Store

log = logging.getLogger(__name__)

# How long a replacement waits for another store membership change to end before it gives up
# with a retryable error.
LOCK_WAIT = 30.0
DOWN_MARK_INTERVAL = 2.0
# A voter's seat is kept this long for the replacement that is still completing its join.
SEAT_HOLD = 60.0


class ReplacementDeferred(BootstrapInternalError):
    """The replacement cannot be done now (the store's quorum is at risk, or another membership
    change runs); the same request may succeed later (`retryable`)."""


# --- degraded ---------------------------------------------------------------------------------


def failed_nodes(snapshot: ClusterSnapshot, *, alive: int | None = None) -> list[NodeRecord]:
    """The nodes that are down, the one down longest first (unknown `down_since`: last).
    `alive`: a uid known to be up whatever the snapshot says (the member answering)."""
    down = [
        n
        for n in snapshot.nodes()
        if not n.joining and n.uid != alive and not snapshot.is_alive(n.uid)
    ]
    return sorted(down, key=lambda n: (n.down_since or "~", n.uid))


def status_since(snapshot: ClusterSnapshot, node: NodeRecord) -> str | None:
    """Since when the node has its current status (ISO 8601 Z), when known."""
    if snapshot.is_alive(node.uid):
        liveness = snapshot.liveness(node.uid)
        return (liveness.since or None) if liveness is not None else None
    return node.down_since or None


def failed_entry(node: NodeRecord) -> dict[str, object]:
    entry: dict[str, object] = {"uid": node.uid}
    if node.rack_id:
        entry["rack_id"] = node.rack_id
    return entry


def replace_candidate(
    failed: list[NodeRecord], *, rack_aware: bool, rack_id: str | None
) -> NodeRecord:
    """The failed node a joiner should replace: the one in its rack when the cluster is
    rack-aware (down longest among them), else the one down longest. `failed` is not empty."""
    if rack_aware and rack_id:
        same_rack = [n for n in failed if n.rack_id == rack_id]
        if same_rack:
            return same_rack[0]
    return failed[0]


# --- the member's decision ------------------------------------------------------------------


def plan_join(
    snapshot: ClusterSnapshot, request: JoinRequest, *, member_uid: int | None = None
) -> NodeRecord | None:
    """For a join of a new node key: the failed node it replaces, or None (a new node). Raises
    `repair_required`, `config_error` (`node.identity.uid`), `insufficient_node_memory` or
    `insufficient_node_flash`."""
    if request.replace_uid is not None:
        return _replacement_target(snapshot, request, request.replace_uid)
    failed = failed_nodes(snapshot, alive=member_uid)
    if failed and not request.override_repair:
        cluster = snapshot.cluster() or ClusterRecord()
        candidate = replace_candidate(
            failed, rack_aware=cluster.rack_aware, rack_id=request.rack_id
        )
        listed = ", ".join(str(n.uid) for n in failed)
        raise RepairRequired(
            f"the cluster has failed nodes ({listed}); replace one by joining with "
            f"node.identity.uid (node {candidate.uid} is the candidate), or join with "
            "override_repair: true to add a new node anyway",
            failed_nodes=[failed_entry(n) for n in failed],
            replace_candidate=candidate.uid,
        )
    return None


def _replacement_target(snapshot: ClusterSnapshot, request: JoinRequest, uid: int) -> NodeRecord:
    target = snapshot.node(uid)
    if target is None or target.joining:
        known = ", ".join(str(n.uid) for n in snapshot.nodes() if not n.joining) or "none"
        raise ConfigError(
            f"node.identity.uid: the cluster has no node {uid} to replace (its nodes: {known})",
            fields=["node.identity.uid"],
        )
    if snapshot.is_alive(uid):
        raise ConfigError(
            f"node.identity.uid: node {uid} ({target.addr}) is alive; only a failed (down) node "
            "can be replaced",
            fields=["node.identity.uid"],
        )
    memory = request.total_memory
    if memory is None:
        recorded = request.record.get("total_memory")
        memory = recorded if isinstance(recorded, int) else None
    if memory is not None and memory < target.total_memory:
        raise InsufficientNodeMemory(
            f"this node has {memory} bytes of memory; replacing node {uid} needs at least its "
            f"{target.total_memory}",
            required_memory=target.total_memory,
            node_memory=memory,
        )
    if target.bigstore_enabled:
        required = int(target.bigredis_storage_size or 0)
        flash = request.flash_size
        if flash is None or flash < required:
            have = "no flash" if flash is None else f"{flash} bytes of flash"
            raise InsufficientNodeFlash(
                f"this node has {have}; replacing node {uid} needs flash (bigstore_enabled) of "
                f"at least {required} bytes",
                required_flash=required,
            )
    return target


# --- taking the failed node's place -------------------------------------------------------------


def replacement_record(request: JoinRequest, failed: NodeRecord, now: datetime) -> NodeRecord:
    """The new machine's record under the failed node's uid: its facts, the failed node's rack
    unless the request gives one, a store client until the voters make it more."""
    return NodeRecord.model_validate(
        {
            **request.record,
            "uid": failed.uid,
            "addr": request.addr,
            "external_addr": request.external_addr,
            "rack_id": request.rack_id or failed.rack_id,
            "second_rack_id": request.second_rack_id or failed.second_rack_id,
            "node_settings": request.node_settings,
            "software_version": request.software_version,
            "store_role": StoreRole.CLIENT,
            "joining": True,
            "down_since": "",
            "replaced_at": iso(now),
        }
    )


async def replace_node(
    store: Store,
    snapshot: ClusterSnapshot,
    request: JoinRequest,
    failed: NodeRecord,
    *,
    holder: int,
) -> None:
    """Remove the failed node's store member, then give its uid to the joiner (module docstring).
    `holder`: the uid of the node doing it (shown in the store-change lock)."""
    deadline = time.monotonic() + LOCK_WAIT
    while True:
        async with store_change_lock(store, holder) as held:
            if held:
                try:
                    await remove_node_member(
                        store,
                        snapshot,
                        failed,
                        reason=f"node {failed.uid} replaced by {request.addr}",
                    )
                except MemberRemovalRefused as refused:
                    raise ReplacementDeferred(
                        f"{refused.message}; the replacement was not started (nothing changed): "
                        "bring a store voter back, then retry the join",
                        reason="store_quorum_at_risk",
                    ) from None
                failpoint("replace.after_member_removed")
                await _take_over(store, snapshot, request, failed)
                failpoint("replace.after_records")
                return
        if time.monotonic() > deadline:
            raise ReplacementDeferred(
                f"another change of the store's members kept running for {LOCK_WAIT:.0f} s; "
                "retry the join",
                reason="store_change_in_progress",
            )
        await asyncio.sleep(0.2)


async def _take_over(
    store: Store, snapshot: ClusterSnapshot, request: JoinRequest, failed: NodeRecord
) -> None:
    uid = failed.uid
    node_key = model.node_key(uid)
    index_key = model.node_key_index(request.node_key)

    async def attempt() -> bool | None:
        current = await store.get(node_key)
        if current is None:
            raise ConfigError(
                f"node.identity.uid: node {uid} was removed meanwhile", fields=["node.identity.uid"]
            )
        indexes, _ = await store.get_prefix(model.NODE_KEY_PREFIX)
        old_keys = [kv.key for kv in indexes if _index_uid(kv.value) == uid]
        record = replacement_record(request, failed, datetime.now(UTC))
        # A liveness key means the node is alive (its lease lives): the failed node came
        # back. The take-over is guarded by the key's absence, so one appearing meanwhile
        # wins over it.
        if await store.get(model.liveness_key(uid)) is not None:
            raise ConfigError(
                f"node.identity.uid: node {uid} came back to life during the replacement",
                fields=["node.identity.uid"],
            )
        result = await store.txn(
            [
                Compare.mod(node_key, "=", current.mod_revision),
                Compare.absent(index_key),
                Compare.absent(model.liveness_key(uid)),
            ],
            [
                *(Delete(key) for key in old_keys),
                Put(index_key, NodeKeyIndex(uid=uid).encode()),
                Put(node_key, record.encode()),
            ],
        )
        if result.succeeded:
            return True
        if await store.get(model.liveness_key(uid)) is not None:
            raise ConfigError(
                f"node.identity.uid: node {uid} came back to life during the replacement",
                fields=["node.identity.uid"],
            )
        mine = await store.get(index_key)
        if mine is not None and _index_uid(mine.value) == uid:
            return True  # an earlier attempt of this join won
        return None

    await cas_retry(attempt, what=f"the replacement of node {uid}")
    log.info(
        "node %d (%s) replaced by %s",
        uid,
        failed.addr,
        request.addr,
        extra=event("node_replaced", uid=uid, old_addr=failed.addr, addr=request.addr),
    )


def _index_uid(raw: bytes) -> int | None:
    try:
        return NodeKeyIndex.decode(raw).uid
    except ValueError:
        return None


# --- the old machine coming back ----------------------------------------------------------------


async def replacement_of(
    store: Store, node_key: str | None, uid: int, addr: str
) -> NodeRecord | None:
    """The record of the machine that took over `uid` when this node (its node key, None for
    the node that created the cluster, which has none, and its address) was replaced; None when
    it was not."""
    current = await store.get(model.node_key(uid))
    if current is None:
        return None
    record = NodeRecord.decode(current.value)
    if not record.replaced_at:
        return None
    if node_key is None:
        return record if record.addr != addr else None
    index = await store.get(model.node_key_index(node_key))
    return None if index is not None and _index_uid(index.value) == uid else record


def replaced_message(uid: int, cluster_name: str, by: NodeRecord) -> str:
    return (
        f"this node was node {uid} of cluster {cluster_name}, and while it was down it was "
        f"replaced by {by.addr} at {by.replaced_at}; it no longer belongs to the cluster and did "
        "not rejoin or start its store member. To use this machine again: stop the agent, wipe "
        "its data dir, start it and join the cluster as a new node"
    )


def revoked_message(uid: int, cluster_name: str) -> str:
    """For a node the store no longer lets in: its store user was deleted (removed) or given a
    new password (replaced by another machine). It cannot read by whom: that is the point."""
    return (
        f"this node was node {uid} of cluster {cluster_name}, and while it was down it was "
        "replaced by another machine or removed from the cluster: the cluster store refuses its "
        "credentials. It did not rejoin or start its store member. To use this machine again: "
        "stop the agent, wipe its data dir, start it and join the cluster as a new node"
    )


# --- marking down_since -------------------------------------------------------------------------


async def mark_down_nodes(
    store: Store, snapshot: ClusterSnapshot, uids: Collection[int] | None = None
) -> None:
    """Write `down_since` into the record of each node that is down and has none yet (of
    `uids` only, when given)."""
    if not snapshot.loaded:
        return
    nodes = snapshot.nodes() if uids is None else filter(None, map(snapshot.node, sorted(uids)))
    for node in nodes:
        if not _to_mark(snapshot, node.uid, node):
            continue
        now = iso(datetime.now(UTC))

        def change(record: NodeRecord, now: str = now) -> NodeRecord:
            # Re-checked on the fresh read: another node may have marked it already.
            return record if record.down_since else record.changed(down_since=now)

        with contextlib.suppress(StoreError):  # the record vanished: nothing to mark
            await update_record(store, model.node_key(node.uid), NodeRecord, change, attempts=2)


def _to_mark(snapshot: ClusterSnapshot, uid: int, node: NodeRecord | None = None) -> bool:
    """Node `uid` is down (no liveness key), completed its join and has no `down_since` yet."""
    node = node or snapshot.node(uid)
    return (
        node is not None and not node.joining and not node.down_since and not snapshot.is_alive(uid)
    )


async def run_down_marker(
    store: Store, snapshot: ClusterSnapshot, *, interval: float = DOWN_MARK_INTERVAL
) -> None:
    """`mark_down_nodes` for the nodes of each liveness or node record change, and for all
    nodes every `interval` seconds, forever."""
    wake = asyncio.Event()
    changed: set[int] = set()

    def on_change(key: str) -> None:
        # Only the node that changed: every node sees every join's changes, and a pass over
        # all nodes for each would cost the cluster O(N^2) per join.
        uid = model.uid_from_key(key, model.LIVENESS_PREFIX)
        if uid is None:
            uid = model.uid_from_key(key, model.NODES_PREFIX)
        if uid is not None and _to_mark(snapshot, uid):
            changed.add(uid)
            wake.set()

    snapshot.add_listener(on_change)
    while True:
        woken = False
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(interval):
                woken = await wake.wait()
        wake.clear()
        uids = set(changed) if woken else None
        changed.clear()
        try:
            await mark_down_nodes(store, snapshot, uids)
        except (StoreUnavailable, StoreContention, StoreError) as exc:
            log.debug("could not mark down nodes: %s", exc)


def seat_held(snapshot: ClusterSnapshot, now: float) -> bool:
    """Whether a replacement that is still completing its join holds a voter's seat (so no
    other node takes it meanwhile); bounded by `SEAT_HOLD` so a joiner that died frees it."""
    for node in snapshot.nodes():
        if node.joining and node.replaced_at:
            with contextlib.suppress(ValueError):
                taken = datetime.strptime(node.replaced_at, "%Y-%m-%dT%H:%M:%SZ")
                if now - taken.replace(tzinfo=UTC).timestamp() < SEAT_HOLD:
                    return True
    return False
