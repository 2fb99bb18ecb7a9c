"""Removing nodes between real agents with real etcd (POST /v1/nodes/{uid}/actions/remove).

One cluster of four agents (three store voters, one client) goes through the whole story, since
growing to three voters costs etcd's 5 s pacing twice: the client is removed, goes idle with its
cluster data wiped and joins again as a new node; a voter is removed, its etcd member leaves,
the client takes its seat and the store keeps its quorum; with one voter dead, removing another
voter is refused (409) and changes nothing. The API's rules in detail: tests/api/
test_node_removal.py.
"""

from __future__ import annotations

import ssl
from typing import Any

import httpx

from harness import bodies
from harness.agents import Agent, AgentFactory, basic
from harness.bodies import ADMIN, create_body
from harness.polling import eventually

VOTERS_TIMEOUT = 90.0


def create(agent: Agent) -> None:
    response = agent.post("/v1/bootstrap/create_cluster", create_body("rm.example.com"))
    assert response.status_code == 200, response.text
    status = agent.wait_state("completed", "error", auth=ADMIN, timeout=60)
    assert status["bootstrap_status"]["state"] == "completed", status


def join(agent: Agent, member: Agent) -> dict[str, Any]:
    response = agent.post("/v1/bootstrap/join_cluster", bodies.join_body([member.addr]))
    assert response.status_code == 200, response.text
    status = agent.wait_state("completed", "error", auth=ADMIN, timeout=60)
    assert status["bootstrap_status"]["state"] == "completed", status
    return status


def nodes(agent: Agent) -> list[dict[str, Any]]:
    response = agent.get("/v1/nodes", auth=ADMIN)
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()
    return found


def roles(agent: Agent) -> dict[int, str]:
    return {n["uid"]: n["store_role"] for n in nodes(agent)}


def store_members(agent: Agent) -> list[dict[str, Any]]:
    """etcd's member list, read from `agent`'s etcd with its own certificate."""
    tls = agent.layout.cluster_tls
    context = ssl.create_default_context(cafile=str(tls.ca_file))
    context.load_cert_chain(*tls.store_client_files())
    response = httpx.post(
        f"https://{agent.addr}:2379/v3/cluster/member/list", json={}, verify=context, timeout=5
    )
    members: list[dict[str, Any]] = response.json()["members"]
    return members


def member_peers(agent: Agent) -> list[str]:
    return sorted(url for m in store_members(agent) for url in m["peerURLs"])


def remove(agent: Agent, uid: int) -> httpx.Response:
    # A removal may wait for a voter change in progress: a generous timeout.
    url = f"{agent.http_url}/v1/nodes/{uid}/actions/remove"
    return httpx.post(url, headers=basic(*ADMIN), timeout=60)


def wait_voters(agent: Agent, wanted: dict[int, str]) -> None:
    eventually(
        lambda: roles(agent) == wanted,
        timeout=VOTERS_TIMEOUT,
        message=f"store roles {wanted}",
    )


def assert_left_and_wiped(agent: Agent) -> None:
    """The removed agent is idle, serves the pre-bootstrap surface, and its cluster data is
    gone (local state, cluster TLS, node key, etcd member data; no etcd running)."""
    # No credentials: before bootstrap the status needs none.
    eventually(
        lambda: agent.status()["bootstrap_status"]["state"] == "idle",
        timeout=30,
        message=f"{agent.addr} idle",
    )
    layout = agent.layout
    assert not layout.local_state_file.exists()
    assert not layout.cluster_tls.directory.exists()
    assert not layout.node_key_file.exists()
    assert not (agent.persistent_path / "ccs" / "etcd").exists()
    eventually(lambda: not agent.etcd_pids(), timeout=15, message="its etcd stopped")
    no_cluster = agent.get("/v1/nodes")
    assert no_cluster.status_code == 503 and no_cluster.json()["error_code"] == "no_cluster"


def test_remove_a_client_and_a_voter_then_refuse_a_removal_that_breaks_quorum(
    agents: AgentFactory,
) -> None:
    first, second, third, fourth = (agents.start() for _ in range(4))
    create(first)
    for agent in (second, third, fourth):
        join(agent, first)
    wait_voters(first, {1: "voter", 2: "voter", 3: "voter", 4: "client"})

    # 1. The client node: no store member to remove; its records go, it leaves.
    removed = remove(first, 4)
    assert removed.status_code == 200, removed.text
    answer = removed.json()
    assert answer["node_uid"] == 4 and answer["store_member_removed"] is None
    assert answer["store_role"] == "client"
    assert [n["uid"] for n in nodes(first)] == [1, 2, 3]
    eventually(lambda: [n["uid"] for n in nodes(second)] == [1, 2, 3], message="seen on node 2")
    assert_left_and_wiped(fourth)
    # ... and joins again, as a new node.
    rejoined = join(fourth, first)
    assert rejoined["local_node_info"]["uid"] == "5"
    assert [n["uid"] for n in nodes(first)] == [1, 2, 3, 5]
    wait_voters(first, {1: "voter", 2: "voter", 3: "voter", 5: "client"})

    # 2. A voter: its etcd member leaves first; the voter plan then promotes node 5.
    peers_before = member_peers(first)
    voter_peer = {n["uid"]: n.get("store_peer_url") for n in nodes(first)}[2]
    assert voter_peer in peers_before
    removed = remove(first, 2)
    assert removed.status_code == 200, removed.text
    assert removed.json()["store_member_removed"] == "voter"
    assert voter_peer not in member_peers(first)
    assert_left_and_wiped(second)
    wait_voters(first, {1: "voter", 3: "voter", 5: "voter"})
    voters = {n["store_peer_url"] for n in nodes(first)}
    assert set(member_peers(first)) == voters and len(voters) == 3
    assert not any(m.get("isLearner") for m in store_members(first))
    # The store kept its quorum all along: it takes writes.
    policy = httpx.put(
        f"{first.http_url}/v1/cluster/policy",
        json={"shards_overbooking": True},
        headers=basic(*ADMIN),
        timeout=10,
    )
    assert policy.status_code == 200, policy.text

    # 3. With voter 3 dead, removing voter 5 would leave 1 live voter of 2: refused.
    third.kill9()
    eventually(
        lambda: {n["uid"]: n["status"] for n in nodes(first)}[3] == "down",
        timeout=30,
        message="node 3 down",
    )
    refused = remove(first, 5)
    assert refused.status_code == 409, refused.text
    assert refused.json()["error_code"] == "store_quorum_at_risk"
    assert [n["uid"] for n in nodes(first)] == [1, 3, 5]
    assert len(store_members(first)) == 3
    assert fourth.status(ADMIN)["bootstrap_status"]["state"] == "completed"

    # 4. The dead voter itself can go (voters 1 and 5 remain, both alive) ...
    removed = remove(first, 3)
    assert removed.status_code == 200, removed.text
    assert removed.json()["store_member_removed"] == "voter"
    assert len(store_members(first)) == 2
    assert [n["uid"] for n in nodes(first)] == [1, 5]
    # ... and when it comes back, the store refuses its credentials (its etcd user is gone):
    # it cannot tell removal from replacement, so it reports `error` saying both, starts no
    # store member and keeps its data for the operator to wipe.
    third.start()
    status = third.wait_state("completed", "error")["bootstrap_status"]
    assert status["state"] == "error", status
    assert "removed from the cluster" in status["error_details"]["message"]
    assert third.etcd_pids() == []
    assert [n["uid"] for n in nodes(first)] == [1, 5]
    assert len(store_members(first)) == 2
