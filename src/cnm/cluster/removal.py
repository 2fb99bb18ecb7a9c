"""Removing a node from the cluster (POST /v1/nodes/{uid}/actions/remove): the store side.

The order is the safe one: the node's store member leaves first (`remove_node_member`, with its
quorum rules, under the store-change lock so no voter change overlaps), its records second, in
one transaction: the node record, its node-key index (a rejoin is a new node with a new uid),
its liveness and clock records, and a `removed` marker (`RemovedNode`). The marker is how the
removed agent learns it was removed, now or whenever it comes back (cluster/runtime.py watches
for it, bootstrap/manager.py then takes the node back to `idle`). A voter that leaves lowers the
count of voters below the plan, so the next node in the plan promotes itself (cluster/voters.py)
with nothing else to do here.

The last node of a cluster is never removed: the cluster would be gone with it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from cnm.cluster import model
from cnm.cluster.records import NodeRecord, RemovedNode
from cnm.cluster.snapshot import ClusterSnapshot
from cnm.cluster.store_members import remove_node_member, store_change_lock
from cnm.errors import CnmError, NodeNotFound, StoreError
from cnm.failpoints import failpoint
from cnm.logs import event
from cnm.store import etcd_auth
from cnm.store.base import Compare, Delete, Member, MembershipChangeRefused, Op, Put, Store

log = logging.getLogger(__name__)

# How long a removal waits for a store membership change in progress (a voter being added
# takes ~5 s: etcd's pacing) before it answers 409 `store_change_in_progress`.
LOCK_WAIT = 30.0
LOCK_POLL = 0.2
# etcd refuses to remove a voter until every remaining voter has been connected for 5 s after
# the previous membership change (its "unhealthy cluster"): a removal that follows a voter
# change waits for the store to settle, at that pace, this long.
SETTLE_WAIT = 20.0
SETTLE_POLL = 0.5
REASON = "node removed through the API"


class LastNodeRemoval(CnmError):
    """The node is the cluster's last: removing it would remove the cluster."""

    error_code = "last_node_removal_not_allowed"
    http_status = 409


class StoreChangeInProgress(CnmError):
    """Another store membership change held the lock for longer than a removal waits."""

    error_code = "store_change_in_progress"
    http_status = 409


@dataclass(frozen=True)
class Removal:
    """What a removal did, as the API answers it."""

    uid: int
    addr: str
    store_role: str
    # "voter" or "learner": the member that left the store; None: the node had none.
    store_member_removed: str | None
    records_removed: tuple[str, ...]
    revision: int

    def to_api(self) -> dict[str, Any]:
        member = self.store_member_removed
        what = f"its store {member} left the store, then" if member else "it had no store member;"
        return {
            "action": "remove",
            "node_uid": self.uid,
            "addr": self.addr,
            "store_role": self.store_role,
            "store_member_removed": member,
            "records_removed": list(self.records_removed),
            "description": (
                f"node {self.uid} ({self.addr}) was removed: {what} its records were deleted; "
                "the node, if running, goes back to idle with its cluster data wiped"
            ),
        }


def _removal_ops(snapshot: ClusterSnapshot, node: NodeRecord) -> tuple[list[Op], list[str]]:
    uid = node.uid
    names = ["node"]
    ops: list[Op] = [Delete(model.node_key(uid))]
    indexes = snapshot.node_key_indexes(uid)
    if indexes:
        names.append("node_key")
    ops.extend(Delete(key) for key in indexes)
    for name, key in (
        ("liveness", model.liveness_key(uid)),
        ("clock", model.node_clock_key(uid)),
    ):
        if snapshot.record(key) is not None:
            names.append(name)
        # Deleted even when this snapshot has not seen it: the node may have just written it.
        ops.append(Delete(key))
    marker = RemovedNode(uid=uid, addr=node.addr, removed_at=time.time(), reason=REASON)
    ops.append(Put(model.removed_node_key(uid), marker.encode()))
    return ops, names


async def remove_node(store: Store, snapshot: ClusterSnapshot, uid: int, *, acting: int) -> Removal:
    """Remove node `uid` (see the module docstring); `acting` is the uid of the node doing it.
    Raises `NodeNotFound`, `LastNodeRemoval`, `MemberRemovalRefused` (quorum rules) or
    `StoreChangeInProgress`."""
    if snapshot.node(uid) is None:
        raise NodeNotFound(f"node {uid} does not exist")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + LOCK_WAIT
    while True:
        async with store_change_lock(store, acting) as held:
            if held:
                return await _remove_locked(store, snapshot, uid)
        if loop.time() >= deadline:
            raise StoreChangeInProgress(
                f"another change of the store's members has been running for more than "
                f"{LOCK_WAIT:.0f} s; retry the removal of node {uid} when it ends"
            )
        await asyncio.sleep(LOCK_POLL)


async def _remove_member(
    store: Store, snapshot: ClusterSnapshot, node: NodeRecord
) -> Member | None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SETTLE_WAIT
    while True:
        try:
            return await remove_node_member(store, snapshot, node, reason=REASON)
        except MembershipChangeRefused as refused:
            if not refused.transient:
                raise
            if loop.time() >= deadline:
                raise StoreChangeInProgress(
                    f"the store is still settling after its last membership change "
                    f"({refused.message}) after {SETTLE_WAIT:.0f} s; retry the removal of "
                    f"node {node.uid}",
                    uid=node.uid,
                ) from refused
        await asyncio.sleep(SETTLE_POLL)


async def _delete_store_user(store: Store, uid: int) -> None:
    """Delete the node's store user, so its password and certificate open nothing. Retried
    while the store does not answer; in the end an error the operator sees (in the log)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SETTLE_WAIT
    while True:
        try:
            await store.delete_store_user(etcd_auth.node_user(uid))
            return
        except StoreError as exc:
            if loop.time() >= deadline:
                log.error(
                    "node %d was removed but its store user could not be deleted (%s): its "
                    "password still opens the store; remove the node's etcd user by hand",
                    uid,
                    exc.message,
                )
                return
        await asyncio.sleep(SETTLE_POLL)


async def _remove_locked(store: Store, snapshot: ClusterSnapshot, uid: int) -> Removal:
    stored = await store.get(model.node_key(uid))
    if stored is None:
        raise NodeNotFound(f"node {uid} does not exist")
    node = NodeRecord.decode(stored.value)
    nodes, _ = await store.get_prefix(model.NODES_PREFIX)
    if len(nodes) <= 1:
        raise LastNodeRemoval(
            f"node {uid} is the cluster's last node: removing it would remove the cluster",
            uid=uid,
        )
    member = await _remove_member(store, snapshot, node)
    failpoint("remove.after_member_removed")
    ops, names = _removal_ops(snapshot, node)
    # Guarded by the record's revision: a concurrent removal of the same node loses (404).
    result = await store.txn([Compare.mod(model.node_key(uid), "=", stored.mod_revision)], ops)
    if not result.succeeded:
        if await store.get(model.node_key(uid)) is None:
            raise NodeNotFound(f"node {uid} does not exist (it was just removed)")
        # The record changed (its node refreshed its facts): the member is already gone, so
        # the records go regardless of that change.
        result = await store.txn([Compare.exists(model.node_key(uid))], ops)
        if not result.succeeded:
            raise NodeNotFound(f"node {uid} does not exist (it was just removed)")
    failpoint("remove.after_records")
    # After the records: the node reads its `removed` marker with its own user first, and a
    # retried removal (404 by now) could not come back to this step.
    await _delete_store_user(store, uid)
    role = "learner" if member is not None and member.is_learner else "voter"
    removal = Removal(
        uid=uid,
        addr=node.addr,
        store_role=node.store_role.value,
        store_member_removed=role if member is not None else None,
        records_removed=tuple(names),
        revision=result.revision,
    )
    log.info(
        "removed node %d (%s) from the cluster: store member %s, records %s",
        uid,
        node.addr,
        removal.store_member_removed or "none",
        ", ".join(names),
        extra=event(
            "node_removed",
            uid=uid,
            addr=node.addr,
            store_member=removal.store_member_removed,
        ),
    )
    return removal
