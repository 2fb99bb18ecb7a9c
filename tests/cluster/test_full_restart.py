"""Full restarts on real agents: every agent killed with SIGKILL and started again re-forms the
cluster by itself; a minority of voters back answers 503 naming the missing voters."""

from __future__ import annotations

import time
from typing import Any

from harness import bodies
from harness.agents import Agent, AgentFactory
from harness.bodies import ADMIN, create_body
from harness.polling import eventually

EXTRA_USER = ("viewer@example.com", "viewer-pass-1")


def three_node_cluster(agents: AgentFactory) -> tuple[Agent, Agent, Agent]:
    first, second, third = agents.start(), agents.start(), agents.start()
    assert (
        first.post("/v1/bootstrap/create_cluster", create_body("restart.example.com")).status_code
        == 200
    )
    assert (
        first.wait_state("completed", "error", auth=ADMIN)["bootstrap_status"]["state"]
        == "completed"
    )
    for joiner in (second, third):
        body = bodies.join_body([first.addr])
        assert joiner.post("/v1/bootstrap/join_cluster", body).status_code == 200
        status = joiner.wait_state("completed", "error", auth=ADMIN, timeout=60)
        assert status["bootstrap_status"]["state"] == "completed", status

    def three_voters() -> bool:
        nodes = first.get("/v1/nodes", auth=ADMIN).json()
        return [n.get("store_role") for n in nodes] == ["voter"] * 3

    eventually(three_voters, timeout=60, message="three voters")
    return first, second, third


def add_user_and_settings(agent: Agent) -> None:
    user = {
        "email": EXTRA_USER[0],
        "password": EXTRA_USER[1],
        "role": "cluster_viewer",
        "name": "viewer",
    }
    assert agent.post("/v1/users", user, headers=bodies_auth()).status_code == 200
    policy = agent.get("/v1/cluster/policy", auth=ADMIN).json()
    response = agent_put(agent, "/v1/cluster/policy", {"default_shards_placement": "sparse"})
    assert response.status_code == 200, (response.text, policy)


def bodies_auth() -> dict[str, str]:
    from harness.agents import basic

    return basic(*ADMIN)


def agent_put(agent: Agent, path: str, body: Any) -> Any:
    import httpx

    return httpx.put(agent.http_url + path, json=body, headers=bodies_auth(), timeout=5.0)


def test_all_agents_killed_and_restarted_reform_the_cluster(agents: AgentFactory) -> None:
    trio = three_node_cluster(agents)
    add_user_and_settings(trio[0])
    for agent in trio:
        agent.kill9()
    for agent in trio:
        agent.start(wait=False)
    last_started = time.monotonic()

    def all_active() -> bool:
        for agent in trio:
            nodes = agent.get("/v1/nodes", auth=ADMIN).json()
            if [n["status"] for n in nodes] != ["active"] * 3:
                return False
        return True

    eventually(all_active, timeout=60, message="all nodes active after kill -9 of every agent")
    print(f"all active {time.monotonic() - last_started:.1f} s after the last agent started")
    for agent in trio:
        assert agent.status(auth=ADMIN)["bootstrap_status"]["state"] == "completed"
        assert agent.get("/v1/cluster", auth=EXTRA_USER).status_code == 200
        assert (
            agent.get("/v1/cluster/policy", auth=ADMIN).json()["default_shards_placement"]
            == "sparse"
        )
        assert agent.get("/v1/license", auth=ADMIN).status_code == 200
