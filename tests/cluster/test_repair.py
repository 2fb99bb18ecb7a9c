"""Failed nodes and replacement joins on real agents (cluster/repair.py): a client node killed
with SIGKILL shows `down`; the next plain join is refused with `repair_required` and its exact
details; a replacement with too little memory (the test-only `CNM_REPORTED_MEMORY` agent
setting) is refused; a join with `node.identity.uid` takes the failed node's place; the cluster
is healthy again; and the old node, restarted with its old data dir, reports that it was
replaced and leaves the cluster as it was. A killed store voter's replacement becomes a voter
through learner -> promote, with the dead member gone from etcd."""

from __future__ import annotations

from typing import Any

from harness import bodies
from harness.agents import Agent, AgentFactory
from harness.bodies import ADMIN, create_body
from harness.polling import eventually

# The liveness TTL is 10 s; generous on a loaded machine (the bound is not the point here).
DOWN_WITHIN = 40.0


def create(agent: Agent) -> None:
    assert (
        agent.post("/v1/bootstrap/create_cluster", create_body("repair.example.com")).status_code
        == 200
    )
    status = agent.wait_state("completed", "error", auth=ADMIN)
    assert status["bootstrap_status"]["state"] == "completed", status


def join(agent: Agent, member: Agent, **extra: Any) -> dict[str, Any]:
    body = bodies.join_body([member.addr], **extra)
    assert agent.post("/v1/bootstrap/join_cluster", body).status_code == 200
    return agent.wait_state("completed", "error", auth=ADMIN, timeout=60.0)


def store_members(agent: Agent) -> list[dict[str, Any]]:
    """The etcd member list, from the agent's etcd with the node's own certificate."""
    import ssl

    import httpx

    tls = agent.layout.cluster_tls
    context = ssl.create_default_context(cafile=str(tls.ca_file))
    context.load_cert_chain(*tls.store_client_files())
    url = f"https://{agent.addr}:2379/v3/cluster/member/list"
    members: list[dict[str, Any]] = httpx.post(url, json={}, verify=context).json()["members"]
    return members


def nodes_of(agent: Agent) -> dict[int, dict[str, Any]]:
    response = agent.get("/v1/nodes", auth=ADMIN)
    assert response.status_code == 200, response.text
    return {node["uid"]: node for node in response.json()}


def check_of(agent: Agent) -> dict[str, Any]:
    response = agent.get("/v1/cluster/check", auth=ADMIN)
    assert response.status_code == 200, response.text
    document: dict[str, Any] = response.json()
    return document


def test_a_killed_node_is_replaced_and_the_old_one_stays_out(agents: AgentFactory) -> None:
    first, second = agents.start(), agents.start()
    create(first)
    assert join(second, first)["bootstrap_status"]["state"] == "completed"
    memory = nodes_of(first)[2]["total_memory"]

    second.kill9()

    def second_down() -> dict[str, Any] | None:
        node = nodes_of(first)[2]
        return node if node["status"] == "down" and node["status_since"] else None

    down = eventually(second_down, timeout=DOWN_WITHIN, message="node 2 down, since known")
    assert down["status_since"].endswith("Z")
    check = check_of(first)
    assert check["cluster_test_result"] is False and check["degraded"] is True
    assert check["failed_nodes"] == [{"uid": 2, "down_since": down["status_since"]}]

    # A plain join into the degraded cluster: repair_required, with the exact details.
    third = agents.start()
    status = join(third, first)["bootstrap_status"]
    assert status["state"] == "error", status
    assert status["error_code"] == "repair_required"
    assert status["error_details"]["failed_nodes"] == [{"uid": 2}]
    assert status["error_details"]["replace_candidate"] == 2

    # A replacement reporting less memory than node 2 had: refused, nothing changes.
    small = agents.start(env={"CNM_REPORTED_MEMORY": str(memory - 1)})
    status = join(small, first, node={"identity": {"uid": 2}})["bootstrap_status"]
    assert status["state"] == "error", status
    assert status["error_code"] == "insufficient_node_memory"
    assert status["error_details"]["required_memory"] == memory
    assert set(nodes_of(first)) == {1, 2}

    # The replacement (from error: a new request starts over) takes uid 2.
    result = join(third, first, node={"identity": {"uid": 2}})
    assert result["bootstrap_status"]["state"] == "completed", result
    assert result["local_node_info"]["uid"] == "2"

    def healthy() -> dict[str, Any] | None:
        check = check_of(first)
        return check if check["cluster_test_result"] and not check["degraded"] else None

    eventually(healthy, timeout=DOWN_WITHIN, message="the cluster healthy again")
    for agent in (first, third):
        nodes = nodes_of(agent)
        assert sorted(nodes) == [1, 2]
        assert nodes[2]["addr"] == third.addr and nodes[2]["status"] == "active"
        assert nodes[2]["replaced_at"].endswith("Z")
    before = nodes_of(first)

    # The old node comes back with its old data dir: the store refuses its credentials (the
    # replacement got a new password for uid 2), so it reports that it was replaced (or
    # removed), starts nothing and keeps its data for the operator.
    second.start()
    status = second.wait_state("completed", "error")["bootstrap_status"]
    assert status["state"] == "error", status
    assert status["error_code"] == "config_error", status
    message = status["error_details"]["message"]
    assert "replaced by another machine" in message and "wipe" in message
    assert second.layout.local_state_file.exists()
    assert second.etcd_pids() == []
    after = nodes_of(first)
    assert sorted(after) == [1, 2] and after[2]["addr"] == third.addr
    assert {uid: n["status"] for uid, n in after.items()} == {1: "active", 2: "active"}
    assert after[2]["replaced_at"] == before[2]["replaced_at"]
    assert check_of(first)["cluster_test_result"] is True


def voters_active(agent: Agent) -> dict[int, dict[str, Any]] | None:
    nodes = nodes_of(agent)
    healthy = len(nodes) == 3 and all(
        n["store_role"] == "voter" and n["status"] == "active" for n in nodes.values()
    )
    return nodes if healthy else None


def test_a_killed_voter_is_replaced_by_a_voter(agents: AgentFactory) -> None:
    first, second, third = agents.start(), agents.start(), agents.start()
    create(first)
    for agent in (second, third):
        assert join(agent, first)["bootstrap_status"]["state"] == "completed"
    eventually(lambda: voters_active(first), timeout=60.0, message="3 store voters")

    third.kill9()
    eventually(
        lambda: nodes_of(first)[3]["status"] == "down", timeout=DOWN_WITHIN, message="3 down"
    )
    fourth = agents.start()
    result = join(fourth, first, node={"identity": {"uid": 3}})
    assert result["bootstrap_status"]["state"] == "completed", result

    # The replacement becomes node 3's voter through learner -> promote; the dead member is
    # gone from etcd (3 members, all of them running nodes).
    nodes = eventually(lambda: voters_active(first), timeout=60.0, message="3 voters again")
    assert nodes[3]["addr"] == fourth.addr
    members = store_members(first)
    assert len(members) == 3 and all(not m.get("isLearner") for m in members)
    peer_hosts = sorted(url.split("//")[1].split(":")[0] for m in members for url in m["peerURLs"])
    assert peer_hosts == sorted([first.addr, second.addr, fourth.addr])

    # The old voter, restarted, does not start its etcd member or rejoin: the store refuses its
    # old password (node 3's user has the replacement's now), so it reports `error`.
    third.start()
    status = third.wait_state("completed", "error")["bootstrap_status"]
    assert status["state"] == "error", status
    assert "replaced by another machine" in status["error_details"]["message"]
    assert third.etcd_pids() == []
    assert third.layout.local_state_file.exists()
    assert voters_active(first) is not None
