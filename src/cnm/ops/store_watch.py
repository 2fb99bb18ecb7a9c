"""The store as an operator sees it from one node: reachable or not, round trip, leader, voters.

`watch_store` runs beside the cluster runtime (spawned by the agent once the node is in a
cluster). Every `PROBE_INTERVAL` seconds it asks the store's endpoints, preferred first, for
etcd's maintenance status: the answer's round trip feeds the latency histogram, its leader id
the count of leader changes, and whether any endpoint answered is `cnm_store_reachable`. A
change of reachability, of the leader and of the set of voters (from the snapshot) is logged
once, at info, as an event with stable field names.
"""

from __future__ import annotations

import asyncio
import logging
import time

import httpx

from cnm.cluster import model
from cnm.cluster.runtime import ClusterRuntime
from cnm.errors import CnmError
from cnm.logs import log_event
from cnm.ops.collector import voters
from cnm.ops.metrics import AgentMetrics

log = logging.getLogger(__name__)

PROBE_INTERVAL = 5.0
PROBE_TIMEOUT = 2.0


class VoterLog:
    """Logs the cluster's set of store voters each time it changes (seen in the snapshot)."""

    def __init__(self, runtime: ClusterRuntime) -> None:
        self._runtime = runtime
        self._voters = self._current() if runtime.snapshot.loaded else None

    def _current(self) -> list[int]:
        nodes = self._runtime.snapshot.under(model.NODES_PREFIX)
        return sorted(int(n["uid"]) for n in nodes if n.get("store_role") == "voter")

    def on_change(self, key: str) -> None:
        if not key.startswith(model.NODES_PREFIX):
            return
        current = self._current()
        if current == self._voters:
            return
        previous, self._voters = self._voters, current
        wanted, _ = voters(self._runtime)
        log_event(
            log,
            "store_voters",
            f"store voters now nodes {current or '-'} (wanted {wanted}; were {previous or '-'})",
            voters=current,
            previous_voters=previous or [],
            voters_wanted=wanted,
        )


class StoreProbe:
    def __init__(self, metrics: AgentMetrics, runtime: ClusterRuntime) -> None:
        self._metrics = metrics
        self._runtime = runtime
        self._leader: str | None = None

    async def probe(self) -> None:
        """One round: the first endpoint that answers, or unreachable."""
        failures = []
        for endpoint in self._runtime.store.endpoints:
            started = time.perf_counter()
            try:
                async with asyncio.timeout(PROBE_TIMEOUT):
                    answer = await self._runtime.store.status(endpoint)
            except (CnmError, httpx.HTTPError, TimeoutError, OSError) as exc:
                failures.append(f"{endpoint}: {type(exc).__name__}")
                continue
            self._metrics.store_round_trip.observe(time.perf_counter() - started)
            self._reachable(True, endpoint)
            self._saw_leader(str(answer.get("leader") or ""))
            return
        self._reachable(False, "; ".join(failures))

    def _reachable(self, reachable: bool, detail: str) -> None:
        if self._metrics.store_reachable is reachable:
            return
        self._metrics.store_reachable = reachable
        log_event(
            log,
            "store_reachability",
            f"cluster store reachable via {detail}"
            if reachable
            else f"cluster store unreachable ({detail})",
            reachable=reachable,
            detail=detail,
        )

    def _saw_leader(self, leader: str) -> None:
        if not leader or leader == self._leader:
            return
        if self._leader is not None:
            self._metrics.store_leader_changes.inc()
            log_event(
                log,
                "store_leader_change",
                f"store leader changed from member {self._leader} to {leader}",
                leader=leader,
                previous_leader=self._leader,
            )
        self._leader = leader


async def watch_store(
    metrics: AgentMetrics, runtime: ClusterRuntime, *, interval: float = PROBE_INTERVAL
) -> None:
    """Forever, until cancelled (with the agent)."""
    runtime.snapshot.add_listener(VoterLog(runtime).on_change)
    probe = StoreProbe(metrics, runtime)
    while True:
        await probe.probe()
        await asyncio.sleep(interval)
