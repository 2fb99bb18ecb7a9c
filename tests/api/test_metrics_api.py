"""GET /metrics on the ASGI app (issue 13): the text format, per-app registries, bounded route
labels, bootstrap timings by outcome and phase, and the bootstrap transition log events."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from cnm.logs import _JsonFormatter
from harness.api_node import Node, node_config, running_node
from harness.bodies import create_body
from harness.metrics import label_values, parse_samples, value

CREATE = "/v1/bootstrap/create_cluster"


async def scrape(node: Node) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    response = await node.client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=")
    return parse_samples(response.text)


async def test_fresh_node_exposes_build_info_and_idle_state(node: Node) -> None:
    samples = await scrape(node)
    builds = [key for key in samples if key[0] == "cnm_build_info"]
    assert len(builds) == 1 and dict(builds[0][1])["version"]
    assert value(samples, "cnm_bootstrap_state", state="idle") == 1.0
    assert value(samples, "cnm_bootstrap_state", state="completed") == 0.0
    assert value(samples, "cnm_password_verifications_pending") == 0.0
    # No store, no cluster: those gauges are absent rather than zero.
    assert not any(key[0] in ("cnm_nodes", "cnm_store_reachable") for key in samples)


async def test_requests_are_labelled_by_route_template_never_raw_path(node: Node) -> None:
    for path in ("/v1/nodes/7", "/v1/nodes/8", "/v1/users/12", "/no/such/path/1", "/x/2"):
        await node.client.get(path)
    samples = await scrape(node)
    routes = label_values(samples, "cnm_http_requests_total", "route")
    assert {"/v1/nodes/{uid}", "/v1/users/{uid}", "unmatched"} <= routes
    assert not any(route[-1].isdigit() for route in routes), routes
    nodes = value(
        samples, "cnm_http_requests_total", route="/v1/nodes/{uid}", method="GET", status="503"
    )
    assert nodes == 2.0
    assert value(samples, "cnm_http_requests_total", route="unmatched", method="GET", status="404")
    count = value(
        samples, "cnm_http_request_duration_seconds_count", route="/v1/nodes/{uid}", method="GET"
    )
    assert count == 2.0


async def test_each_app_has_its_own_registry(tmp_path: Path) -> None:
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    async with (
        running_node(node_config(tmp_path / "a")) as first,
        running_node(node_config(tmp_path / "b")) as second,
    ):
        for _ in range(3):
            await first.client.get("/v1/bootstrap")
        a, b = await scrape(first), await scrape(second)
    labels = {"route": "/v1/bootstrap", "method": "GET", "status": "200"}
    assert value(a, "cnm_http_requests_total", **labels) == 3.0
    assert value(b, "cnm_http_requests_total", **labels) is None


async def test_failed_create_is_timed_by_outcome_and_phase(
    node: Node, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="cnm.bootstrap.manager")
    response = await node.client.post(CREATE, json=create_body(name="x_y"))
    assert response.status_code == 200
    status = await node.wait_state("error")
    assert status["error_code"] == "config_error"
    samples = await scrape(node)
    assert value(samples, "cnm_bootstrap_state", state="error") == 1.0
    total = value(
        samples,
        "cnm_bootstrap_duration_seconds_count",
        action="create_cluster",
        outcome="config_error",
    )
    assert total == 1.0
    phases = label_values(samples, "cnm_bootstrap_phase_duration_seconds_count", "outcome")
    assert "config_error" in phases
    # The transitions, one JSON line each with stable field names.
    formatter = _JsonFormatter("127.0.0.1")
    events = [
        json.loads(formatter.format(record))
        for record in caplog.records
        if getattr(record, "cnm_event", None) == "bootstrap_transition"
    ]
    states = [(event["from_state"], event["state"]) for event in events]
    assert ("idle", "initiated") in states
    assert states[-1][1] == "error"
    assert events[-1]["error_code"] == "config_error"
    assert all(event["action"] == "create_cluster" for event in events)
    assert all(event["level"] == "info" and event["node"] == "127.0.0.1" for event in events)
