"""AgentMetrics: one agent's Prometheus registry and the counters and histograms fed by events.

One `CollectorRegistry` per agent (never the module-level default registry of
`prometheus_client`): tests run several nodes in one process and each must count only its own.
Events come through a few small hooks: the HTTP middleware (`cnm.ops.http`), the bootstrap
manager's transitions (`on_bootstrap_transition`), the member's admission route (`admission`)
and the store watch (`cnm.ops.store_watch`). Gauges read at scrape time are in
`cnm.ops.collector`.

Every label value comes from a bounded set: route templates (never raw paths), HTTP methods,
bootstrap actions, states, phases and error codes; never a user name or an address.
"""

from __future__ import annotations

import logging
import platform
import time

from prometheus_client import CollectorRegistry, Counter, Histogram, Info

from cnm import __version__
from cnm.bootstrap.status import BootstrapState, BootstrapStatus
from cnm.logs import event

log = logging.getLogger(__name__)

_BOOTSTRAP_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
_PHASE_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
STORE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

ADMITTED = "admitted"
REFUSED = "refused"


class AgentMetrics:
    """The registry of one agent and the instruments its hooks feed."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        registry = self.registry
        Info("cnm_build", "The agent's version.", registry=registry).info(
            {"version": __version__, "python_version": platform.python_version()}
        )
        self.bootstrap_duration = Histogram(
            "cnm_bootstrap_duration_seconds",
            "Duration of bootstrap actions from the accepted request to completed or error; "
            "outcome is `completed` or the error code.",
            ["action", "outcome"],
            buckets=_BOOTSTRAP_BUCKETS,
            registry=registry,
        )
        self.bootstrap_phase_duration = Histogram(
            "cnm_bootstrap_phase_duration_seconds",
            "Duration of each phase of a bootstrap action; outcome is `ok`, or the error code "
            "when the action failed in that phase.",
            ["action", "phase", "outcome"],
            buckets=_PHASE_BUCKETS,
            registry=registry,
        )
        self.admissions = Counter(
            "cnm_join_admissions",
            "Join admissions decided by this node as a member, by outcome (admitted, refused) "
            "and error code (empty when admitted).",
            ["outcome", "error_code"],
            registry=registry,
        )
        self.http_requests = Counter(
            "cnm_http_requests",
            "HTTP requests answered, by route template, method and status.",
            ["route", "method", "status"],
            registry=registry,
        )
        self.http_duration = Histogram(
            "cnm_http_request_duration_seconds",
            "Latency of HTTP requests, by route template and method.",
            ["route", "method"],
            buckets=_HTTP_BUCKETS,
            registry=registry,
        )
        self.sign_in_failures = Counter(
            "cnm_sign_in_failures",
            "Requests refused with 401, by the authorization scheme they used (basic, jwt, "
            "bearer, other, none).",
            ["scheme"],
            registry=registry,
        )
        self.store_round_trip = Histogram(
            "cnm_store_round_trip_seconds",
            "Round trip of this node's periodic status request to its preferred store endpoint.",
            buckets=STORE_BUCKETS,
            registry=registry,
        )
        self.store_leader_changes = Counter(
            "cnm_store_leader_changes_seen",
            "Changes of the store's raft leader seen by this node's periodic status request.",
            registry=registry,
        )
        # Written by the store watch; read by the collector. None: no store (not in a cluster).
        self.store_reachable: bool | None = None
        # The open bootstrap attempt: (action, its start, the current phase and its start).
        self._attempt: tuple[str, float] | None = None
        self._phase: tuple[str, float] | None = None

    # --- the bootstrap manager's transitions ---------------------------------------------------

    def on_bootstrap_transition(self, previous: BootstrapStatus, status: BootstrapStatus) -> None:
        """Called by the manager after every change of its status record."""
        now = time.monotonic()
        action = status.action or "unknown"
        if status.state is BootstrapState.INITIATED and previous.state is not status.state:
            self._attempt = (action, now)
            self._phase = (status.phase or "checks", now)
            return
        if self._attempt is None:
            return  # a restart's decision, not a timed attempt
        if status.state.in_progress:
            if self._phase is not None and status.phase and status.phase != self._phase[0]:
                self._observe_phase(action, "ok", now)
                self._phase = (status.phase, now)
            return
        if status.state is BootstrapState.COMPLETED:
            outcome, phase_outcome = "completed", "ok"
        elif status.state is BootstrapState.ERROR:
            outcome = phase_outcome = status.error_code or "internal_error"
        else:
            return
        self._observe_phase(action, phase_outcome, now)
        self.bootstrap_duration.labels(action, outcome).observe(now - self._attempt[1])
        self._attempt = self._phase = None

    def _observe_phase(self, action: str, outcome: str, now: float) -> None:
        if self._phase is not None:
            name, started = self._phase
            self.bootstrap_phase_duration.labels(action, name, outcome).observe(now - started)

    # --- the member's admission route ----------------------------------------------------------

    def admission(self, joiner_addr: str, error_code: str | None, *, uid: object = None) -> None:
        """One admission decision: counted, and logged once with the joiner's address."""
        outcome = ADMITTED if error_code is None else REFUSED
        self.admissions.labels(outcome, error_code or "").inc()
        if error_code is None:
            message = f"admitted the node at {joiner_addr} as node {uid}"
        else:
            message = f"refused the node at {joiner_addr}: {error_code}"
        log.info(
            message,
            extra=event(
                "join_admission",
                joiner_addr=joiner_addr,
                outcome=outcome,
                error_code=error_code,
                node_uid=uid,
            ),
        )
