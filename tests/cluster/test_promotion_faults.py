"""A store voter's promotion, interrupted at each step by kill -9, keeps the store's quorum and
leaves no ghost member once the cluster has healed.

etcd runs without its strict reconfiguration check (cnm keeps quorum by its own rules, see
docs/architecture.md), so this is the proof that those rules hold. A 5-node cluster: nodes 1-3
are voters, node 4 joins (4 nodes still want 3 voters), node 5 joins and node 4, next in line,
starts its promotion with a fault point set at one step:

1. the learner dies there: node 4 runs with `<point>=crash` (SIGKILL at the step, its etcd
   with it);
2. the leader dies there: node 4, started again with `<point>=error`, fails at the same step
   on every attempt, so the store stays in that step's state; the agent of etcd's leader gets
   SIGKILL meanwhile.

After each kill a linearizable write through a live voter must succeed within seconds (the
store kept its quorum). Then the killed agents come back without fault points and the store
must reach 5 voters whose etcd members are exactly the running nodes, records agreeing.
"""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import urlsplit

import pytest

from cluster.test_crash_points import assert_consistent, completed, create, join, store_members
from harness import etcd_gateway
from harness.agents import Agent, AgentFactory
from harness.bodies import ADMIN
from harness.polling import eventually

pytestmark = pytest.mark.cluster

POINTS = ("voter.after_learner_add", "voter.after_member_start", "voter.after_promote")


def _etcd(agent: Agent, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """`path` on `agent`'s etcd member as that node's own etcd user."""
    response = etcd_gateway.post(agent.addr, agent.layout.cluster_tls, path, body)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def assert_quorum(through: Agent, label: str) -> None:
    """A linearizable write through `through`'s etcd commits within 15 s: the store has a
    quorum (an election after a leader's death takes about one election timeout). The write
    puts the cluster record back unchanged, only where it is still the one read (a node may
    write it meanwhile): the node's etcd user may write only cnm's keys, and every key there
    is a record the agents decode."""
    key = base64.b64encode(b"/cnm/cluster").decode()

    def written() -> bool:
        current = _etcd(through, "/v3/kv/range", {"key": key})["kvs"][0]
        answer = _etcd(
            through,
            "/v3/kv/txn",
            {
                "compare": [
                    {
                        "key": key,
                        "target": "MOD",
                        "result": "EQUAL",
                        "mod_revision": current["mod_revision"],
                    }
                ],
                "success": [{"request_put": {"key": key, "value": current["value"]}}],
            },
        )
        return "header" in answer

    eventually(written, timeout=15, interval=0.2, message=f"a store write ({label})")


def leader_agent(agents: list[Agent], through: Agent) -> Agent:
    """The agent whose etcd member leads the store."""
    leader = _etcd(through, "/v3/maintenance/status", {})["leader"]
    for member in store_members(through):
        if str(member["ID"]) == str(leader):
            hosts = {urlsplit(url).hostname for url in member["peerURLs"]}
            return next(agent for agent in agents if agent.addr in hosts)
    raise AssertionError(f"leader {leader} is not in the member list")


def voters(agent: Agent) -> list[int]:
    nodes = agent.get("/v1/nodes", auth=ADMIN).json()
    return [node["uid"] for node in nodes if node.get("store_role") == "voter"]


def wait_healed(agents: list[Agent], through: Agent) -> None:
    """5 voters, and etcd's members are the running nodes' and nothing else."""
    eventually(lambda: len(voters(through)) == 5, timeout=90, interval=0.3, message="5 voters")
    running = {agent.addr for agent in agents if agent.process and agent.process.poll() is None}

    def no_ghost() -> bool:
        members = store_members(through)
        hosts = {urlsplit(u).hostname for m in members for u in m["peerURLs"]}
        assert hosts == running, (sorted(map(str, hosts)), sorted(running))
        assert not any(m.get("isLearner") for m in members), members
        return True

    eventually(no_ghost, timeout=30, interval=0.3, message="members = running nodes")
    assert_consistent(through, timeout=30)


def start(agent: Agent, env: dict[str, str] | None = None) -> Agent:
    """Start (or restart) `agent` with `env`; generous for a loaded shared machine."""
    agent.env = env or {}
    agent.start(wait=False)
    agent.wait_serving(timeout=60)
    return agent


def held_at(agent: Agent, point: str) -> bool:
    """The agent's promotion has failed at `point` (its `error` action) at least once."""
    return f"fault point {point} fired" in agent.log()


@pytest.mark.parametrize("point", POINTS)
def test_promotion_survives_the_learner_or_leader_dying_at_each_step(
    agents: AgentFactory, point: str
) -> None:
    first = start(agents.make())
    completed(create(first))
    others = [start(agents.make()) for _ in range(2)]
    for agent in others:
        completed(join(agent, first))
    eventually(lambda: len(voters(first)) == 3, timeout=60, interval=0.2, message="3 voters")
    fourth = start(agents.make(), {"CNM_FAILPOINTS": f"{point}=crash"})
    completed(join(fourth, first))
    fifth = start(agents.make())
    everyone = [first, *others, fourth, fifth]
    # Node 5 joining makes 5 nodes: node 4 (the lowest uid without a seat) starts its promotion.
    completed(join(fifth, first))

    # 1. The learner dies at the step.
    assert fourth.process is not None
    fourth.process.wait(60)
    assert fourth.process.returncode == -9, fourth.log()[-2000:]
    assert f"failpoint {point}: crash" in fourth.log()
    eventually(lambda: not fourth.etcd_pids(), timeout=10, message="node 4's etcd died with it")
    assert_quorum(first, f"{point}-learner")

    # 2. Back with `error` at the same step: it holds there; etcd's leader dies meanwhile.
    start(fourth, {"CNM_FAILPOINTS": f"{point}=error"})
    eventually(lambda: held_at(fourth, point), timeout=60, interval=0.2, message="held")
    leader = leader_agent(everyone, first)
    leader.kill9()
    # Nodes 1-3 stay voters throughout: one that is alive answers for the store.
    through = next(agent for agent in (first, *others) if agent is not leader)
    assert_quorum(through, f"{point}-leader")

    # Everyone back without fault points: the cluster heals, no ghost member stays.
    start(leader)
    fourth.kill9()
    start(fourth)
    wait_healed(everyone, through)
