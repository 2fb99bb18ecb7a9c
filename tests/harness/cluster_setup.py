"""Bootstrapping real agents in tests: create a cluster on one, join others through it, each
waited for until `completed` (an `error` fails the test with the status it reached)."""

from __future__ import annotations

from harness.agents import Agent
from harness.bodies import ADMIN, create_body, join_body


def create(agent: Agent, name: str) -> None:
    assert agent.post("/v1/bootstrap/create_cluster", create_body(name)).is_success
    status = agent.wait_state("completed", "error", auth=ADMIN, timeout=60)
    assert status["bootstrap_status"]["state"] == "completed", status


def join(agent: Agent, member: Agent) -> None:
    assert agent.post("/v1/bootstrap/join_cluster", join_body([member.addr])).is_success
    status = agent.wait_state("completed", "error", auth=ADMIN, timeout=60)
    assert status["bootstrap_status"]["state"] == "completed", status


def voter_count(agent: Agent) -> int:
    """How many nodes GET /v1/nodes on `agent` shows as store voters."""
    response = agent.get("/v1/nodes", auth=ADMIN)
    assert response.status_code == 200, response.text
    return sum(1 for node in response.json() if node.get("store_role") == "voter")
