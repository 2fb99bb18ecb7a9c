"""Each node's upkeep of its own facts in the store, and the per-node checks of /v1/cluster/check.

`run_node_upkeep` runs on every node for as long as it is in the cluster (started by
`ClusterRuntime.run`). Every `upkeep_interval(N)` seconds (N nodes: 10 s up to 10 nodes, then
N s, so the whole cluster writes about one heartbeat a second at most: every node watches every
heartbeat, and a fixed interval would cost each node O(N) and the cluster O(N²) while idle) it
- writes a heartbeat `/cnm/node-clocks/<uid>` carrying the node's wall clock (each one is a
  store revision, so the store must compact its history: etcd's --auto-compaction-*), and
- refreshes the machine facts of its node record (memory, storage sizes, boot time, software
  version) when they changed: uptime is not stored but computed when read, from the boot time,
  so the record is rewritten only when something real changed.

Clock check: every node watches the heartbeats (`ClockObserver`, fed by its snapshot) and
estimates a peer's clock offset as the peer's wall time in the heartbeat minus its own wall time
when the heartbeat arrived. Delivery delay only makes the estimate smaller, so the largest of the
last few estimates is the best one; a node is reported once it has two of them.

Per-node results: `down` (no liveness record: its lease expired, see
`ClusterSnapshot.is_alive` and model.LIVENESS_TTL for the bound), `no heartbeat` (a live node
whose heartbeat stopped: it has likely lost the store), `clock off`
(offset above `CLOCK_TOLERANCE`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any

from cnm import SOFTWARE_VERSION
from cnm.cluster import model
from cnm.cluster.records import NodeClockRecord, NodeRecord
from cnm.cluster.snapshot import ClusterSnapshot
from cnm.cluster.writes import update_record
from cnm.errors import StoreContention, StoreError, StoreUnavailable
from cnm.node.facts import StoragePaths, machine_memory, node_facts_for_record
from cnm.node.local_state import LocalState
from cnm.store.base import Compare, Put, Store

log = logging.getLogger(__name__)

UPKEEP_INTERVAL = 10.0
CLOCK_TOLERANCE = 1.0
# A heartbeat missing for three intervals means the node cannot write to the store.
HEARTBEAT_SILENCE = 3 * UPKEEP_INTERVAL


def upkeep_interval(nodes: int) -> float:
    """Seconds between one node's heartbeats in a cluster of `nodes` (module docstring)."""
    return max(UPKEEP_INTERVAL, float(nodes))


def heartbeat_silence(nodes: int) -> float:
    """How long a heartbeat may be missing before the node is reported."""
    return 3 * upkeep_interval(nodes)


_ESTIMATES = 3


class ClockObserver:
    """Clock offsets and heartbeat arrival times of the nodes, as seen from this node."""

    def __init__(
        self,
        snapshot: ClusterSnapshot,
        *,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._snapshot = weakref.ref(snapshot)
        self._wall = wall
        self._monotonic = monotonic
        self.started = monotonic()
        self._offsets: dict[int, deque[float]] = {}
        self._arrived: dict[int, float] = {}
        snapshot.add_listener(self._on_change)

    def _on_change(self, key: str) -> None:
        if not key.startswith(model.NODE_CLOCK_PREFIX):
            return
        snapshot = self._snapshot()
        record = snapshot.record(key) if snapshot is not None else None
        if not isinstance(record, NodeClockRecord):
            return
        uid = record.uid
        self._offsets.setdefault(uid, deque(maxlen=_ESTIMATES)).append(record.wall - self._wall())
        self._arrived[uid] = self._monotonic()

    def offset(self, uid: int) -> float | None:
        """The node's clock minus this node's, in seconds; None until two heartbeats came."""
        estimates = self._offsets.get(uid)
        if not estimates or len(estimates) < 2:
            return None
        return max(estimates)

    def silent_for(self, uid: int) -> float | None:
        """Seconds since the node's last heartbeat arrived; None while it is too early to say."""
        now = self._monotonic()
        if uid in self._arrived:
            return now - self._arrived[uid]
        return now - self.started if now - self.started > self.silence() else None

    def silence(self) -> float:
        """`heartbeat_silence` for the cluster's size as the snapshot sees it now."""
        snapshot = self._snapshot()
        return heartbeat_silence(len(snapshot.nodes()) if snapshot is not None else 0)


_observers: weakref.WeakKeyDictionary[ClusterSnapshot, ClockObserver] = weakref.WeakKeyDictionary()


def observer_for(snapshot: ClusterSnapshot) -> ClockObserver:
    """The snapshot's observer, made (and subscribed) on first use."""
    observer = _observers.get(snapshot)
    if observer is None:
        observer = _observers[snapshot] = ClockObserver(snapshot)
    return observer


def node_check(
    snapshot: ClusterSnapshot, observer: ClockObserver, node: NodeRecord
) -> dict[str, Any]:
    """One entry of /v1/cluster/check."""
    uid = node.uid
    entry: dict[str, Any] = {"node_uid": str(uid), "result": True}
    error = None
    if not snapshot.is_alive(uid):
        error = (
            "node is down: its agent stopped keeping its liveness lease alive (agent stopped "
            "or cannot reach the cluster store)"
        )
        if node.down_since:
            error += f"; down since {node.down_since}"
    else:
        silent = observer.silent_for(uid)
        offset = observer.offset(uid)
        if silent is not None and silent > observer.silence():
            error = (
                f"node has sent no heartbeat for {silent:.0f} s: it cannot write to the "
                "cluster store"
            )
        elif offset is not None and abs(offset) > CLOCK_TOLERANCE:
            error = (
                f"node's clock is off by {offset:+.1f} s from this node's (tolerance "
                f"{CLOCK_TOLERANCE:.0f} s): check NTP"
            )
    if error is not None:
        entry.update(result=False, error=error)
    return entry


def live_facts(paths: StoragePaths, addr: str) -> dict[str, Any]:
    """The facts of a node record that may change while the node runs (uptime excluded)."""
    facts = node_facts_for_record(paths=paths, addr=addr)
    facts.pop("uptime", None)
    facts["total_memory"] = machine_memory()
    facts["software_version"] = SOFTWARE_VERSION
    return facts


def node_uptime(record: NodeRecord, now: float) -> int:
    if record.boot_time is not None:
        return max(0, int(now - record.boot_time))
    return record.uptime or 0


async def _refresh_record(
    store: Store, snapshot: ClusterSnapshot, local: LocalState, addr: str
) -> None:
    key = model.node_key(local.node_uid)
    paths = StoragePaths(
        local.persistent_path, local.ephemeral_path, local.bigstore_path, local.ccs_persistent_path
    )
    facts = await asyncio.to_thread(live_facts, paths, addr)
    seen = snapshot.node(local.node_uid)
    if seen is not None and seen.down_since:
        facts["down_since"] = ""  # back up: a survivor marked it down (cluster/repair.py)
    if seen is not None and _holds(seen, facts):
        return
    # One attempt: lost to a concurrent change of the record, the next round tries again.
    with contextlib.suppress(StoreContention):
        await update_record(
            store, key, NodeRecord, lambda record: record.changed(**facts), attempts=1
        )


def heartbeat_put(uid: int) -> Put:
    """The write of node `uid`'s heartbeat, carrying its wall clock now."""
    heartbeat = NodeClockRecord(uid=uid, wall=time.time())
    return Put(model.node_clock_key(uid), heartbeat.encode())


def _beat_recently(snapshot: ClusterSnapshot, uid: int, within: float) -> bool:
    """Whether the snapshot holds a heartbeat of this node younger than `within` seconds (by
    its own clock): a join writes the first one with its node record (bootstrap/join.py), so
    the upkeep's first round does not write another a moment later to every node."""
    found = snapshot.record(model.node_clock_key(uid))
    return isinstance(found, NodeClockRecord) and 0 <= time.time() - found.wall < within


def _holds(record: NodeRecord, facts: dict[str, Any]) -> bool:
    document = record.document()
    return all(document.get(name) == value for name, value in facts.items())


async def run_node_upkeep(
    store: Store,
    snapshot: ClusterSnapshot,
    local: LocalState,
    addr: str,
    *,
    interval: float | None = None,
) -> None:
    """Heartbeat and node-record refresh forever (see the module docstring)."""
    observer_for(snapshot)
    while True:
        pause = interval or upkeep_interval(len(snapshot.nodes()))
        if not _beat_recently(snapshot, local.node_uid, pause / 2):
            with contextlib.suppress(StoreUnavailable, StoreError):
                # Only while the node record exists: a removed node leaves no clock record.
                await store.txn(
                    [Compare.exists(model.node_key(local.node_uid))],
                    [heartbeat_put(local.node_uid)],
                )
        try:
            await _refresh_record(store, snapshot, local, addr)
        except (StoreUnavailable, StoreError, ValueError) as exc:
            log.warning("could not refresh this node's record: %s", exc)
        await asyncio.sleep(pause)
