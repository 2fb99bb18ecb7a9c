"""StateCollector: the gauges of /metrics, computed at scrape time from the agent's own state.

Nothing here is kept up to date by hooks: each scrape reads the bootstrap status, the password
verifier's queue and (once the node is in a cluster) the cluster snapshot, the same data the
API answers from, so a scrape and a GET agree. Cluster gauges are left out while the node has
no snapshot of the store (not in a cluster, or the store not read yet).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from cnm.bootstrap.manager import BootstrapManager
from cnm.bootstrap.status import BootstrapState
from cnm.clock import parse_iso
from cnm.cluster.records import LicenseRecord, NodeStatus, StoreRole
from cnm.cluster.runtime import ClusterRuntime
from cnm.cluster.voters import voter_counts
from cnm.ops.metrics import AgentMetrics
from cnm.security.passwords import PasswordVerifier

STORE_ROLES = tuple(role.value for role in StoreRole)
NODE_STATUSES = tuple(status.value for status in NodeStatus)


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _one_hot(
    name: str, documentation: str, label: str, values: tuple[str, ...], current: str | None
) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=[label])
    for value in values:
        family.add_metric([value], 1.0 if value == current else 0.0)
    return family


def node_statuses(runtime: ClusterRuntime) -> Counter[str]:
    """How many nodes are active (their liveness lease exists) and down, as /v1/nodes says."""
    snapshot = runtime.snapshot
    counts: Counter[str] = Counter({status: 0 for status in NODE_STATUSES})
    for record in snapshot.nodes():
        alive = snapshot.is_alive(record.uid)
        counts[NodeStatus.ACTIVE if alive else NodeStatus.DOWN] += 1
    return counts


def license_seconds_left(record: LicenseRecord | None, now: datetime) -> float | None:
    if record is None or not record.expiration_date:
        return None
    try:
        return (parse_iso(record.expiration_date) - now).total_seconds()
    except ValueError:
        return None


class StateCollector(Collector):
    def __init__(
        self,
        manager: BootstrapManager,
        verifier: PasswordVerifier,
        metrics: AgentMetrics,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._manager = manager
        self._verifier = verifier
        self._metrics = metrics
        self._clock = clock

    def describe(self) -> list[Metric]:
        # Nothing to check at registration: the names are fixed and unique to this module.
        return []

    def collect(self) -> Iterator[Metric]:
        status = self._manager.status
        yield _one_hot(
            "cnm_bootstrap_state",
            "The node's bootstrap state (1 for the current one).",
            "state",
            tuple(state.value for state in BootstrapState),
            status.state.value,
        )
        yield _gauge(
            "cnm_password_verifications_pending",
            "Password verifications queued or running in the verifier's threads.",
            self._verifier.pending,
        )
        reachable = self._metrics.store_reachable
        if reachable is not None:
            yield _gauge(
                "cnm_store_reachable",
                "1 when this node's last status request to the store was answered.",
                1.0 if reachable else 0.0,
            )
        runtime = self._manager.runtime
        if runtime is not None and runtime.snapshot.loaded:
            yield from self._cluster(runtime)

    def _cluster(self, runtime: ClusterRuntime) -> Iterator[Metric]:
        snapshot = runtime.snapshot
        own = snapshot.node(runtime.local.node_uid)
        yield _one_hot(
            "cnm_store_role",
            "This node's role in the cluster store (1 for the current one).",
            "role",
            STORE_ROLES,
            own.store_role.value if own else StoreRole.CLIENT.value,
        )
        nodes = GaugeMetricFamily(
            "cnm_nodes",
            "The cluster's nodes by status, as GET /v1/nodes shows them.",
            labels=["status"],
        )
        for status, count in sorted(node_statuses(runtime).items()):
            nodes.add_metric([status], float(count))
        yield nodes
        wanted, present = voter_counts(runtime.snapshot)
        yield _gauge(
            "cnm_store_voters_wanted", "Store voters the cluster wants at its size.", wanted
        )
        yield _gauge("cnm_store_voters_present", "Nodes that are store voters now.", present)
        now = datetime.fromtimestamp(self._clock(), UTC)
        left = license_seconds_left(snapshot.license(), now)
        if left is not None:
            yield _gauge(
                "cnm_license_expiry_seconds",
                "Seconds until the cluster's license expires (negative once expired).",
                left,
            )
