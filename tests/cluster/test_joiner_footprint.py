"""No agent loads an X.509 library (issue 12 §4). A joining node needs none: the member makes its
key with its certificate, and what the joiner checks (one CA, the chain, the key) it checks
with Python's `ssl`. The node that makes the cluster's CA and signs the others' certificates
has a signer child process do it (security/signing.py), which exits once idle: `cryptography`,
about fourteen MiB it would keep for good, is never mapped into an agent. Real agents, read
from /proc.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from cnm.security import signing
from harness import agents as agents_harness
from harness import bodies
from harness.agents import Agent, AgentFactory
from harness.bodies import ADMIN, create_body
from harness.polling import eventually

pytestmark = pytest.mark.cluster


def loads_cryptography(agent: Agent) -> bool:
    assert agent.process is not None
    maps = Path(f"/proc/{agent.process.pid}/maps").read_text()
    return "/cryptography/" in maps


def signer_children(agent: Agent) -> list[tuple[int, str]]:
    assert agent.process is not None
    return agents_harness.signer_children(agent.process.pid)


def completed(agent: Agent, body: dict[str, object], action: str) -> None:
    assert agent.post(f"/v1/bootstrap/{action}", body).status_code == 200
    status = agent.wait_state("completed", "error", auth=ADMIN, timeout=60)
    assert status["bootstrap_status"]["state"] == "completed", status


def test_no_node_loads_cryptography_and_the_signer_exits_when_idle(
    agents: AgentFactory,
) -> None:
    first, second, third = agents.start(), agents.start(), agents.start()
    completed(first, create_body("lean.example.com"), "create_cluster")
    for joiner in (second, third):
        completed(joiner, bodies.join_body([first.addr]), "join_cluster")

    def three_voters() -> bool:
        roles = [n.get("store_role") for n in first.get("/v1/nodes", auth=ADMIN).json()]
        return roles == ["voter"] * 3

    eventually(three_voters, timeout=60, interval=0.2, message="three store voters")
    # The first node made the CA and signed the others' certificates, in its signer child.
    assert [state for _, state in signer_children(first)] in (["S"], ["R"])
    for agent in (first, second, third):
        assert not loads_cryptography(agent), agent.addr
    assert signer_children(second) == signer_children(third) == []
    # Idle, the child exits (signing.IDLE_EXIT) and is reaped: no zombie is left behind.
    eventually(
        lambda: signer_children(first) == [],
        timeout=signing.IDLE_EXIT + 20,
        interval=0.2,
        message="the first node's signer exits when idle",
    )
    # The next join starts a new one; the agent still never maps the library.
    fourth = agents.start()
    completed(fourth, bodies.join_body([first.addr]), "join_cluster")
    assert len(signer_children(first)) == 1
    assert not loads_cryptography(first)


def test_a_signer_killed_before_the_admission_is_replaced(agents: AgentFactory) -> None:
    first, second = agents.start(), agents.start()
    completed(first, create_body("killed-signer.example.com"), "create_cluster")
    # A join's first request starts the member's signer; kill it before the admission needs it.
    assert first.get("/v1/join/ca").status_code == 200
    (pid, _), *_ = eventually(
        lambda: signer_children(first), timeout=30, message="the member's signer starts"
    )
    os.kill(pid, signal.SIGKILL)
    completed(second, bodies.join_body([first.addr]), "join_cluster")
    replacement = signer_children(first)
    assert len(replacement) == 1 and replacement[0][0] != pid
    assert not Path(f"/proc/{pid}").exists()  # the killed one was reaped: no zombie
    nodes = first.get("/v1/nodes", auth=ADMIN).json()
    assert [node["uid"] for node in nodes] == [1, 2]
    # The signer never outlives its agent, even one killed with SIGKILL: its input closes.
    first.kill9()
    eventually(
        lambda: not running(replacement[0][0]),
        timeout=30,
        message="the signer of a killed agent exits",
    )


def running(pid: int) -> bool:
    """The process exists and is not a zombie (whoever adopted it reaps it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
