"""Plain HTTP can be turned off cluster-wide and on again (issue 11 §6), and a node keeps its
files private (log files 0600, data directory 0700), on real agents with real etcd."""

from __future__ import annotations

import ssl
import stat
from pathlib import Path

import httpx
import pytest

from harness import bodies
from harness.agents import Agent, AgentFactory
from harness.bodies import ADMIN, create_body
from harness.polling import eventually

pytestmark = pytest.mark.cluster


def completed(agent: Agent, body: dict[str, object], action: str) -> None:
    assert agent.post(f"/v1/bootstrap/{action}", body).status_code == 200
    status = agent.wait_state("completed", "error", auth=ADMIN, timeout=60)
    assert status["bootstrap_status"]["state"] == "completed", status


def http_open(agent: Agent) -> bool:
    try:
        httpx.get(f"{agent.http_url}/v1/bootstrap", timeout=2.0)
    except httpx.ConnectError:
        return False
    return True


def put_cluster(agent: Agent, body: dict[str, object]) -> httpx.Response:
    # Over HTTPS: it stays open whatever http_support says.
    return httpx.put(f"{agent.https_url}/v1/cluster", json=body, auth=ADMIN, verify=trusting(agent))


def trusting(agent: Agent) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(agent.ca_file))


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_http_support_closes_and_reopens_port_8080_on_every_node(agents: AgentFactory) -> None:
    first, second = agents.start(), agents.start()
    completed(first, create_body(), "create_cluster")
    # Before bootstrap plain HTTP is open (the join itself is sent over it).
    assert http_open(second)
    completed(second, bodies.join_body([first.addr]), "join_cluster")

    off = put_cluster(first, {"http_support": False})
    assert off.status_code == 200 and off.json()["http_support"] is False, off.text
    for agent in (first, second):
        eventually(lambda a=agent: not http_open(a), timeout=15, message="port 8080 closed")
        # HTTPS still serves, with credentials.
        https = httpx.get(f"{agent.https_url}/v1/nodes", auth=ADMIN, verify=trusting(agent))
        assert https.status_code == 200

    # A restart listens before it has read the cluster (README "Restart"): port 8080 stays as
    # the cluster had it, closed, from the first HTTPS answer on.
    second.kill9()
    second.start(wait=False)

    def https_status() -> bool:
        try:
            answer = httpx.get(
                f"{second.https_url}/v1/bootstrap", auth=ADMIN, verify=trusting(second)
            )
        except httpx.HTTPError:
            return False
        return answer.status_code == 200

    eventually(https_status, timeout=30, message="HTTPS answers after the restart")
    assert not http_open(second)
    eventually(lambda: second.log().count("restart decision") == 2, timeout=30, message="restored")
    assert not http_open(second)

    on = put_cluster(second, {"http_support": True})
    assert on.status_code == 200 and on.json()["http_support"] is True
    for agent in (first, second):
        eventually(lambda a=agent: http_open(a), timeout=15, message="port 8080 open again")
        assert agent.get("/v1/cluster", auth=ADMIN).status_code == 200

    # The node's files are its own.
    for agent in (first, second):
        assert mode(agent.data_dir) == 0o700
        assert mode(agent.log_file) == 0o600
    # The first node runs a store member (the second may not be one yet): its etcd log too.
    assert mode(first.layout.etcd_log) == 0o600
    assert mode(first.layout.etcd_log.parent) == 0o700
