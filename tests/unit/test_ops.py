"""The logic of cnm.ops without an agent: bootstrap timing by phase and outcome, the store
probe's reachability and leader changes (each logged once), JSON log events."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import pytest

from cnm.bootstrap.status import BootstrapState, BootstrapStatus
from cnm.cluster import model
from cnm.cluster.records import NodeRecord, StoreRole
from cnm.cluster.snapshot import ClusterSnapshot
from cnm.cluster.voters import voter_counts
from cnm.errors import ConfigError, StoreUnavailable
from cnm.logs import _JsonFormatter, _TextFormatter, event
from cnm.ops.metrics import AgentMetrics
from cnm.ops.store_watch import StoreProbe
from cnm.store.memory import MemoryStore


def sample(metrics: AgentMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_a_completed_action_times_each_phase_and_the_whole() -> None:
    metrics = AgentMetrics()
    status = BootstrapStatus()
    steps = [status.initiated("join_cluster")]
    for phase in ("contacting", "handshake", "store"):
        steps.append(steps[-1].running(phase))
    steps.append(steps[-1].completed())
    previous = status
    for step in steps:
        metrics.on_bootstrap_transition(previous, step)
        previous = step
    count = "cnm_bootstrap_phase_duration_seconds_count"
    for phase in ("checks", "contacting", "handshake", "store"):
        assert sample(metrics, count, action="join_cluster", phase=phase, outcome="ok") == 1
    whole = "cnm_bootstrap_duration_seconds_count"
    assert sample(metrics, whole, action="join_cluster", outcome="completed") == 1


def test_a_failure_is_timed_in_its_phase_by_error_code() -> None:
    metrics = AgentMetrics()
    started = BootstrapStatus().initiated("create_cluster")
    running = started.running("store")
    failed = running.failed(ConfigError("bad", fields=["cluster.name"]))
    metrics.on_bootstrap_transition(BootstrapStatus(), started)
    metrics.on_bootstrap_transition(started, running)
    metrics.on_bootstrap_transition(running, failed)
    count = "cnm_bootstrap_phase_duration_seconds_count"
    assert sample(metrics, count, action="create_cluster", phase="store", outcome="config_error")
    whole = "cnm_bootstrap_duration_seconds_count"
    assert sample(metrics, whole, action="create_cluster", outcome="config_error") == 1
    # A restart's decision (no attempt seen starting) is not timed.
    metrics.on_bootstrap_transition(failed, replace(failed, state=BootstrapState.COMPLETED))
    assert sample(metrics, whole, action="create_cluster", outcome="completed") is None


class FakeStore:
    """Answers with a scripted leader, or fails like an unreachable store."""

    def __init__(self) -> None:
        self.answers: dict[str, Any] = {}

    async def leader(self) -> str:
        for answer in self.answers.values():
            return str(answer["leader"])
        raise StoreUnavailable(
            "cluster store unreachable: https://a:2379 down; https://b:2379 down"
        )


async def test_reachability_and_leader_changes_are_counted_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="cnm.ops.store_watch")
    metrics = AgentMetrics()
    store = FakeStore()
    probe = StoreProbe(metrics, SimpleNamespace(store=store))  # type: ignore[arg-type]
    store.answers["https://b:2379"] = {"leader": "11"}  # a is down, b answers
    await probe.probe()
    await probe.probe()
    assert metrics.store_reachable is True
    store.answers.clear()
    await probe.probe()
    await probe.probe()
    assert metrics.store_reachable is False
    store.answers["https://a:2379"] = {"leader": "22"}
    await probe.probe()
    assert metrics.store_reachable is True
    assert sample(metrics, "cnm_store_leader_changes_seen_total") == 1
    assert sample(metrics, "cnm_store_round_trip_seconds_count") == 3
    events = [(r.cnm_event, r.cnm_fields) for r in caplog.records if hasattr(r, "cnm_event")]
    reachability = [f["reachable"] for e, f in events if e == "store_reachability"]
    assert reachability == [True, False, True]
    leaders = [(f["previous_leader"], f["leader"]) for e, f in events if e == "store_leader_change"]
    assert leaders == [("11", "22")]


def test_event_fields_are_json_keys_and_never_replace_the_base_ones() -> None:
    logger = logging.getLogger("cnm.test.ops")
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        logger.info(
            "admitted 10.0.0.2", extra=event("join_admission", joiner_addr="10.0.0.2", level="x")
        )
    finally:
        logger.removeHandler(handler)
    (record,) = records
    line = json.loads(_JsonFormatter("10.0.0.1").format(record))
    assert line["event"] == "join_admission"
    assert line["joiner_addr"] == "10.0.0.2"
    assert line["level"] == "info" and line["node"] == "10.0.0.1"
    text = _TextFormatter("10.0.0.1").format(record)
    assert text.endswith("INFO cnm.test.ops: admitted 10.0.0.2") and "\n" not in text


async def test_voter_gauges_count_as_the_voter_manager_does_not_a_joining_record() -> None:
    """cnm_store_voters_wanted / _present: four completed nodes want 3 voters, whatever record
    is still `joining` (a joiner that may have died after admission: voter_healing.py)."""
    store = MemoryStore()
    for uid, role in ((1, StoreRole.VOTER), (2, StoreRole.VOTER), (3, StoreRole.CLIENT)):
        await store.put(model.node_key(uid), NodeRecord(uid=uid, store_role=role).encode())
    await store.put(model.node_key(4), NodeRecord(uid=4).encode())
    # A replacement still completing its join holds a voter's record: not a voter yet.
    joining = NodeRecord(uid=5, store_role=StoreRole.VOTER, joining=True)
    await store.put(model.node_key(5), joining.encode())
    snapshot = ClusterSnapshot(store)
    await snapshot.load()
    assert voter_counts(snapshot) == (3, 2)
    await store.put(model.node_key(5), joining.model_copy(update={"joining": False}).encode())
    await snapshot.load()
    assert voter_counts(snapshot) == (5, 3)  # five completed nodes want five
