"""`cnm node remove UID` through the real `cnm` subprocess against real agents: the
confirmation (--yes without a terminal), the answer in plain and JSON, the refusals' exit code,
and a removed node that joins again."""

from __future__ import annotations

import httpx

from cli.clikit import ADMIN, assert_plain, create_cluster_over_http, password_env, run_cnm
from harness import bodies
from harness.agents import Agent, AgentFactory
from harness.polling import eventually


def login(agent: Agent) -> tuple[str, ...]:
    return ("--node", agent.https_url, "--ca-file", str(agent.ca_file), "-u", ADMIN[0])


def join(agent: Agent, member: Agent) -> str:
    body = bodies.join_body([member.addr])
    response = httpx.post(agent.http_url + "/v1/bootstrap/join_cluster", json=body, timeout=5)
    assert response.status_code == 200, response.text
    status = agent.wait_state("completed", "error", auth=ADMIN, timeout=60)
    assert status["bootstrap_status"]["state"] == "completed", status
    return str(status["local_node_info"]["uid"])


def uids(agent: Agent) -> list[int]:
    return [n["uid"] for n in agent.get("/v1/nodes", auth=ADMIN).json()]


def idle(agent: Agent) -> bool:
    return bool(agent.status()["bootstrap_status"]["state"] == "idle")


def test_cnm_node_remove(agents: AgentFactory) -> None:
    first, second = agents.start(), agents.start()
    create_cluster_over_http(first)
    assert join(second, first) == "2"

    # Without a terminal to confirm on, --yes is required: a usage error, nothing removed.
    unconfirmed = run_cnm("node", "remove", "2", *login(first), env=password_env())
    assert unconfirmed.code == 2, unconfirmed
    assert "--yes" in unconfirmed.stderr
    assert uids(first) == [1, 2]

    confirmed = ("node", "remove", "2", "--yes", *login(first), "-o", "json")
    removed = run_cnm(*confirmed, env=password_env())
    assert removed.code == 0, removed
    answer = removed.json()
    assert answer["node_uid"] == 2 and answer["action"] == "remove"
    assert uids(first) == [1]
    eventually(lambda: idle(second), timeout=30, message="node 2 idle")

    again = run_cnm("node", "remove", "2", "--yes", *login(first), env=password_env())
    assert again.code == 1, again
    assert "error: [node_not_found]" in again.stderr
    last = run_cnm("node", "remove", "1", "-y", *login(first), env=password_env())
    assert last.code == 1, last
    assert "error: [last_node_removal_not_allowed]" in last.stderr
    assert_plain(last)

    # The removed node joins again as a new node, and is removed again (plain output).
    assert join(second, first) == "3"
    plain = run_cnm("node", "remove", "3", "--yes", *login(first), env=password_env())
    assert plain.code == 0, plain
    assert "node 3" in plain.stdout and "removed" in plain.stdout
    assert_plain(plain)
    eventually(lambda: idle(second), timeout=30, message="node 3 idle")
