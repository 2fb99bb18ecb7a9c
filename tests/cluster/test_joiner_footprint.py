"""A joining node needs no X.509 library (issue 12 §4): the member makes its key with its
certificate, and what the joiner checks (one CA, the chain, the key) it checks with Python's
`ssl`. So a node that joined (and then became a store voter) never loads `cryptography`, ten MiB
it would keep for good; the node that made the cluster's CA does. Real agents, read from
/proc/<pid>/maps."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import bodies
from harness.agents import Agent, AgentFactory
from harness.bodies import ADMIN, create_body
from harness.polling import eventually

pytestmark = pytest.mark.cluster


def loads_cryptography(agent: Agent) -> bool:
    assert agent.process is not None
    maps = Path(f"/proc/{agent.process.pid}/maps").read_text()
    return "/cryptography/" in maps


def completed(agent: Agent, body: dict[str, object], action: str) -> None:
    assert agent.post(f"/v1/bootstrap/{action}", body).status_code == 200
    status = agent.wait_state("completed", "error", auth=ADMIN, timeout=60)
    assert status["bootstrap_status"]["state"] == "completed", status


def test_nodes_that_joined_never_load_cryptography(agents: AgentFactory) -> None:
    first, second, third = agents.start(), agents.start(), agents.start()
    completed(first, create_body("lean.example.com"), "create_cluster")
    for joiner in (second, third):
        completed(joiner, bodies.join_body([first.addr]), "join_cluster")

    def three_voters() -> bool:
        roles = [n.get("store_role") for n in first.get("/v1/nodes", auth=ADMIN).json()]
        return roles == ["voter"] * 3

    eventually(three_voters, timeout=60, interval=0.2, message="three store voters")
    assert loads_cryptography(first)  # it made the CA and signed the others' certificates
    assert not loads_cryptography(second)
    assert not loads_cryptography(third)
