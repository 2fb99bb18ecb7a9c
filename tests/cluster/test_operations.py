"""Operating real agents (issue 13): /metrics of a 3-node cluster checked against the API, the
operator's log events in JSON, and no secret in any log of a full create + join run in either
log format."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from cnm.clock import parse_iso
from harness.agents import Agent, AgentFactory, basic
from harness.bodies import create_body, join_body
from harness.metrics import Samples, parse_samples, value
from harness.polling import eventually

pytestmark = pytest.mark.cluster

# Distinctive, so that finding it anywhere in a log cannot be a coincidence.
ADMIN = ("ops-admin@example.com", "Vq7-unmistakable-Secret-42")
NAME = "ops.example.com"


def bootstrap(agent: Agent, action: str, body: dict[str, Any]) -> dict[str, Any]:
    assert agent.post(f"/v1/bootstrap/{action}", body).status_code == 200
    status = agent.wait_state("completed", "error", auth=ADMIN, timeout=30)
    return dict(status["bootstrap_status"])


def scrape(agent: Agent) -> Samples:
    response = agent.get("/metrics", auth=ADMIN)
    assert response.status_code == 200, response.text
    assert ADMIN[0] not in response.text  # no user names in labels
    return parse_samples(response.text)


def events(agent: Agent, name: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in agent.log().splitlines() if line.strip()]
    return [line for line in lines if line.get("event") == name]


def secrets_of(agents: list[Agent], token: str) -> dict[str, str]:
    """What must never be in a log: the password, a JWT, password hashes, private keys."""
    found = {"admin password": ADMIN[1], "jwt": token, "argon2 hash": "$argon2"}
    found["private key header"] = "PRIVATE KEY"
    for agent in agents:
        for key in (agent.data_dir / "tls").rglob("*key*"):
            body = [line for line in key.read_text().splitlines() if "-----" not in line]
            found[f"key body of {key.name} on {agent.addr}"] = body[0]
    return found


def assert_no_secrets(agents: list[Agent]) -> None:
    first = agents[0]
    token_response = first.post("/v1/users/authorize", {"ttl": 60}, headers=basic(*ADMIN))
    assert token_response.status_code == 200, token_response.text
    token = token_response.json()["access_token"]
    # Use the token and a wrong password once each, so both paths had their chance to log.
    assert first.get("/v1/nodes", headers={"Authorization": f"JWT {token}"}).status_code == 200
    assert first.get("/v1/nodes", auth=(ADMIN[0], ADMIN[1] + "x")).status_code == 401
    secrets = secrets_of(agents, token)
    for agent in agents:
        logs = [agent.log_file, *sorted((agent.data_dir / "logs").glob("*"))]
        for log_file in logs:
            text = log_file.read_text(errors="replace")
            for what, secret in secrets.items():
                assert secret not in text, f"{what} found in {log_file}"


@pytest.fixture(scope="module")
def json_cluster(module_agents: AgentFactory) -> Iterator[list[Agent]]:
    """Three agents logging JSON, one cluster with three voters."""
    trio = [module_agents.start(extra_args=["--log-format", "json"]) for _ in range(3)]
    first = trio[0]
    created = bootstrap(first, "create_cluster", create_body(NAME, admin=ADMIN))
    assert created["state"] == "completed", created
    for agent in trio[1:]:
        status = bootstrap(agent, "join_cluster", join_body([first.addr], admin=ADMIN))
        assert status["state"] == "completed", status

    def three_voters() -> bool:
        nodes = first.get("/v1/nodes", auth=ADMIN).json()
        return [n.get("store_role") for n in nodes] == ["voter"] * 3

    eventually(three_voters, timeout=40, interval=0.2, message="three voters")
    yield trio


def test_metrics_need_credentials_after_bootstrap(json_cluster: list[Agent]) -> None:
    agent = json_cluster[1]
    assert agent.get("/metrics").status_code == 401
    assert agent.get("/metrics", auth=(ADMIN[0], "wrong")).status_code == 401
    samples = scrape(agent)
    assert (value(samples, "cnm_sign_in_failures_total", scheme="basic") or 0) >= 1
    assert (value(samples, "cnm_sign_in_failures_total", scheme="none") or 0) >= 1


def test_cluster_gauges_agree_with_the_api(json_cluster: list[Agent]) -> None:
    first = json_cluster[0]
    nodes = first.get("/v1/nodes", auth=ADMIN).json()
    license_document = first.get("/v1/license", auth=ADMIN).json()
    for agent in json_cluster:
        uid = next(n["uid"] for n in nodes if n["addr"] == agent.addr)
        own = agent.get(f"/v1/nodes/{uid}", auth=ADMIN).json()
        samples = scrape(agent)
        active = sum(1 for n in nodes if n["status"] == "active")
        assert value(samples, "cnm_nodes", status="active") == active == 3
        assert value(samples, "cnm_nodes", status="down") == 0
        voters = sum(1 for n in nodes if n["store_role"] == "voter")
        assert value(samples, "cnm_store_voters_present") == voters == 3
        assert value(samples, "cnm_store_voters_wanted") == 3
        for role in ("voter", "learner", "client"):
            expected = 1.0 if own["store_role"] == role else 0.0
            assert value(samples, "cnm_store_role", role=role) == expected
        assert value(samples, "cnm_bootstrap_state", state="completed") == 1
        expires = parse_iso(license_document["expiration_date"])
        left = (expires - datetime.now(UTC)).total_seconds()
        reported = value(samples, "cnm_license_expiry_seconds")
        assert reported is not None and abs(reported - left) < 30

    def store_seen(agent: Agent) -> Samples | None:
        samples = scrape(agent)
        return samples if value(samples, "cnm_store_round_trip_seconds_count") else None

    for agent in json_cluster:
        samples = eventually(lambda a=agent: store_seen(a), timeout=15, message="store probe")
        assert value(samples, "cnm_store_reachable") == 1
        assert value(samples, "cnm_store_leader_changes_seen_total") is not None


def test_bootstrap_durations_and_admissions(json_cluster: list[Agent]) -> None:
    first, second, _ = json_cluster
    samples = scrape(first)
    labels = {"action": "create_cluster", "outcome": "completed"}
    assert value(samples, "cnm_bootstrap_duration_seconds_count", **labels) == 1
    assert value(samples, "cnm_join_admissions_total", outcome="admitted", error_code="") == 2
    joined = value(
        scrape(second),
        "cnm_bootstrap_duration_seconds_count",
        action="join_cluster",
        outcome="completed",
    )
    assert joined == 1


def test_operator_events_in_json(json_cluster: list[Agent], module_agents: AgentFactory) -> None:
    first, second, third = json_cluster
    for agent in json_cluster:
        for line in agent.log().splitlines():
            json.loads(line)  # one JSON object per line, nothing else on stderr
    transitions = [(e["from_state"], e["state"]) for e in events(second, "bootstrap_transition")]
    assert transitions[0] == ("idle", "initiated")
    assert transitions[-1] == ("joining_cluster", "completed")
    admitted = {e["joiner_addr"] for e in events(first, "join_admission")}
    assert admitted == {second.addr, third.addr}
    assert all(e["level"] == "info" for e in events(first, "join_admission"))
    # Each change logged once: no two consecutive lines say the same.
    voter_sets = [e["voters"] for e in events(first, "store_voters")]
    assert voter_sets and voter_sets[-1] == [1, 2, 3]
    assert all(a != b for a, b in itertools.pairwise(voter_sets)), voter_sets
    reachable = [e["reachable"] for e in events(first, "store_reachability")]
    assert reachable and reachable[0] is True
    assert all(a != b for a, b in itertools.pairwise(reachable)), reachable

    # A refused join: logged once on the member with the joiner's address, and counted.
    outsider = module_agents.start(extra_args=["--log-format", "json", "--socket-dir", "/x/run"])
    status = bootstrap(outsider, "join_cluster", join_body([first.addr], admin=ADMIN))
    assert status["error_code"] == "socket_directory_mismatch", status
    refusals = [e for e in events(first, "join_admission") if e["outcome"] == "refused"]
    assert [(e["joiner_addr"], e["error_code"]) for e in refusals] == [
        (outsider.addr, "socket_directory_mismatch")
    ]
    refused = value(
        scrape(first),
        "cnm_join_admissions_total",
        outcome="refused",
        error_code="socket_directory_mismatch",
    )
    assert refused == 1
    assert_no_secrets([*json_cluster, outsider])


def test_no_secret_in_text_logs_of_a_create_and_join(agents: AgentFactory) -> None:
    first, second = agents.start(), agents.start()
    created = bootstrap(first, "create_cluster", create_body(NAME, admin=ADMIN))
    assert created["state"] == "completed", created
    status = bootstrap(second, "join_cluster", join_body([first.addr], admin=ADMIN))
    assert status["state"] == "completed", status
    assert " INFO " in first.log()  # the text format
    assert_no_secrets([first, second])
    # The same events as in JSON, readable: the admission names the joiner.
    assert f"admitted the node at {second.addr}" in first.log()
