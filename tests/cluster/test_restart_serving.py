"""A restarted node of a cluster listens before its store is back (issue 12 §4), never open:
its own GET /v1/bootstrap is checked against its local copy of the users' verifiers, every other
route waits for the restore a few seconds and answers 503 if it is not over by then; a client
that saw `completed` and goes on to a cluster route at once is answered, not refused. Real
agents, real etcd, a store without quorum so that the restart's wait for the store lasts long
enough to look at."""

from __future__ import annotations

from typing import Any

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


def status_200(agent: Agent) -> dict[str, Any] | None:
    try:
        answer = agent.get("/v1/bootstrap", auth=ADMIN)
    except httpx.HTTPError:
        return None
    return answer.json() if answer.status_code == 200 else None


def restores(agent: Agent) -> int:
    """How many restart decisions the agent's log has: one per completed restore."""
    return agent.log().count("restart decision")


def test_a_restarted_node_answers_its_status_with_credentials_before_its_store_is_back(
    agents: AgentFactory,
) -> None:
    first, second, third = agents.start(), agents.start(), agents.start()
    completed(first, create_body(), "create_cluster")
    for joiner in (second, third):
        completed(joiner, bodies.join_body([first.addr]), "join_cluster")

    def three_voters() -> bool:
        nodes = first.get("/v1/nodes", auth=ADMIN).json()
        return [n.get("store_role") for n in nodes] == ["voter"] * 3

    eventually(three_voters, timeout=60, message="three voters")
    # The users' local copy is written in the background: wait for it before the store goes.
    eventually(first.layout.users_file.exists, timeout=15, message="users.json")
    second.stop()
    third.stop()
    first.kill9()
    before = restores(first)
    first.start(wait=False)

    # Its store member waits for a quorum that is not there: the restore goes on for seconds.
    body = eventually(
        lambda: status_200(first),
        timeout=30,
        message="GET /v1/bootstrap with the admin's credentials answers 200",
    )
    assert restores(first) == before, "answered only after the restore (the API listened late)"
    assert body["bootstrap_status"]["state"] == "completed"
    assert body["local_node_info"]["uid"] == "1"
    # Never open, and a wrong password is refused, during the restore as after it.
    assert first.get("/v1/bootstrap").status_code == 401
    assert first.get("/v1/bootstrap", auth=(ADMIN[0], "not-the-password")).status_code == 401
    # Everything else waits for the restore (api/context.py RESUME_WAIT), then says why not.
    cluster = first.get("/v1/cluster", auth=ADMIN)
    assert cluster.status_code == 503, cluster.text
    assert cluster.json()["error_code"] == "store_unavailable"
    # The restore may end meanwhile (it waits a few seconds for the store): the cluster is
    # still not read without a quorum, and that is not "no cluster", which would send a
    # joiner away for good.
    ca = first.get("/v1/join/ca")
    assert ca.status_code == 503 and ca.json()["error_code"] == "store_unavailable", ca.text

    # The quorum back, the node serves the cluster routes again.
    second.start(wait=False)
    eventually(
        lambda: first.get("/v1/cluster", auth=ADMIN).status_code == 200,
        timeout=60,
        message="GET /v1/cluster 200 once the store has its quorum",
    )
