"""The store as an operator sees it from one node: reachable or not, round trip, leader, voters.

`watch_store` runs beside the cluster runtime (spawned by the agent once the node is in a
cluster). It asks the store for its leader (`Store.leader`: the first endpoint that answers)
every `PROBE_INTERVAL` seconds, and at once when the runtime's liveness keep-alive (every 3 s,
which the store answers anyway) saw a new raft term (an election) or the store reachable again
or no longer: idle, it costs the store one request per node per `PROBE_INTERVAL`, and changes
are still seen within a keep-alive. The answer's round trip feeds the latency histogram, its
leader id the count of leader changes, and whether any endpoint answered is
`cnm_store_reachable`. A
change of reachability, of the leader and of the set of voters (from the snapshot) is logged
once, at info, as an event with stable field names.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from cnm.cluster import model
from cnm.cluster.runtime import ClusterRuntime
from cnm.cluster.voters import voter_counts
from cnm.errors import CnmError
from cnm.logs import event
from cnm.ops.metrics import AgentMetrics

log = logging.getLogger(__name__)

PROBE_INTERVAL = 30.0
PROBE_TIMEOUT = 2.0


class VoterLog:
    """Logs the cluster's set of store voters each time it changes (seen in the snapshot)."""

    def __init__(self, runtime: ClusterRuntime) -> None:
        self._runtime = runtime
        self._voters = self._current() if runtime.snapshot.loaded else None

    def _current(self) -> list[int]:
        return [n.uid for n in self._runtime.snapshot.voters()]

    def on_change(self, key: str) -> None:
        if not key.startswith(model.NODES_PREFIX):
            return
        current = self._current()
        if current == self._voters:
            return
        previous, self._voters = self._voters, current
        wanted, _ = voter_counts(self._runtime.snapshot)
        log.info(
            f"store voters now nodes {current or '-'} (wanted {wanted}; were {previous or '-'})",
            extra=event(
                "store_voters", voters=current, previous_voters=previous or [], voters_wanted=wanted
            ),
        )


class StoreProbe:
    def __init__(self, metrics: AgentMetrics, runtime: ClusterRuntime) -> None:
        self._metrics = metrics
        self._runtime = runtime
        self._leader: str | None = None

    async def probe(self) -> None:
        """One round: the store's leader as the first endpoint that answers sees it, timed."""
        started = time.perf_counter()
        try:
            async with asyncio.timeout(PROBE_TIMEOUT):
                leader = await self._runtime.store.leader()
        except (CnmError, TimeoutError) as exc:
            detail = exc.message if isinstance(exc, CnmError) else "no answer in time"
            self._reachable(False, detail)
            return
        self._metrics.store_round_trip.observe(time.perf_counter() - started)
        self._reachable(True, f"leader {leader or 'unknown'}")
        self._saw_leader(leader)

    def _reachable(self, reachable: bool, detail: str) -> None:
        if self._metrics.store_reachable is reachable:
            return
        self._metrics.store_reachable = reachable
        log.info(
            f"cluster store reachable via {detail}"
            if reachable
            else f"cluster store unreachable ({detail})",
            extra=event("store_reachability", reachable=reachable, detail=detail),
        )

    def _saw_leader(self, leader: str) -> None:
        if not leader or leader == self._leader:
            return
        if self._leader is not None:
            self._metrics.store_leader_changes.inc()
            log.info(
                f"store leader changed from member {self._leader} to {leader}",
                extra=event("store_leader_change", leader=leader, previous_leader=self._leader),
            )
        self._leader = leader


async def watch_store(
    metrics: AgentMetrics, runtime: ClusterRuntime, *, interval: float = PROBE_INTERVAL
) -> None:
    """Forever, until cancelled (with the agent)."""
    runtime.snapshot.add_listener(VoterLog(runtime).on_change)
    probe = StoreProbe(metrics, runtime)
    while True:
        runtime.store_changed.clear()
        await probe.probe()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(interval):
                await runtime.store_changed.wait()
