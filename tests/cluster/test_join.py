"""join_cluster on real agents: membership, errors on their real conditions, concurrency."""

from __future__ import annotations

import signal
from typing import Any

from harness import bodies
from harness.agents import Agent, AgentFactory
from harness.bodies import ADMIN, create_body


def create(agent: Agent, **extra: Any) -> dict[str, Any]:
    body = create_body("join.example.com", **extra)
    assert agent.post("/v1/bootstrap/create_cluster", body).status_code == 200
    status = agent.wait_state("completed", "error", auth=ADMIN)
    assert status["bootstrap_status"]["state"] == "completed", status
    return status


def join_body(member: Agent, **extra: Any) -> dict[str, Any]:
    return bodies.join_body([member.addr], **extra)


def join(agent: Agent, member: Agent, **extra: Any) -> dict[str, Any]:
    assert agent.post("/v1/bootstrap/join_cluster", join_body(member, **extra)).status_code == 200
    return agent.wait_state("completed", "error", auth=ADMIN)


def test_join_adds_a_node_that_every_node_lists(agents: AgentFactory) -> None:
    first, second = agents.start(), agents.start()
    create(first)
    status = join(second, first)
    assert status["bootstrap_status"]["state"] == "completed", status
    assert status["local_node_info"]["uid"] == "2"
    for agent in (first, second):
        nodes = agent.get("/v1/nodes", auth=ADMIN).json()
        assert [n["uid"] for n in nodes] == [1, 2]
        assert nodes[1]["addr"] == second.addr


def store_members(agent: Agent) -> list[dict[str, Any]]:
    """The etcd member list, read from a voter's etcd with the node's own certificate."""
    import ssl

    import httpx

    tls = agent.layout.cluster_tls
    context = ssl.create_default_context(cafile=str(tls.ca_file))
    context.load_cert_chain(*tls.store_client_files())
    response = httpx.post(
        f"https://{agent.addr}:2379/v3/cluster/member/list", json={}, verify=context
    )
    members: list[dict[str, Any]] = response.json()["members"]
    return members


def test_three_nodes_get_three_voters_matching_the_etcd_members(agents: AgentFactory) -> None:
    from harness.polling import eventually

    first, second, third = agents.start(), agents.start(), agents.start()
    create(first)
    assert join(second, first)["bootstrap_status"]["state"] == "completed"
    assert join(third, first)["bootstrap_status"]["state"] == "completed"

    def three_voters() -> list[dict[str, Any]] | None:
        nodes = first.get("/v1/nodes", auth=ADMIN).json()
        roles = [n.get("store_role") for n in nodes]
        return nodes if roles == ["voter", "voter", "voter"] else None

    nodes = eventually(three_voters, timeout=30, message="three voters")
    members = store_members(first)
    assert not any(m.get("isLearner") for m in members)
    member_peers = sorted(u for m in members for u in m["peerURLs"])
    voter_peers = sorted(str(n["store_peer_url"]) for n in nodes)
    assert member_peers == voter_peers

    # Every node stops (quorum lost), every node restarts: the store reforms from its data.
    trio = (first, second, third)
    for agent in trio:
        assert agent.process is not None
        agent.process.send_signal(signal.SIGTERM)
    for agent in trio:
        assert agent.stop() == 0
    for agent in trio:
        agent.start(wait=False)
    for agent in trio:
        agent.wait_state("completed", auth=ADMIN, timeout=30)

    def all_active() -> bool:
        statuses = [n["status"] for n in third.get("/v1/nodes", auth=ADMIN).json()]
        return statuses == ["active"] * 3

    eventually(all_active, timeout=30, message="all nodes active after the restart")

    # A node that dies shows `down` on the others within the liveness lease's TTL (10 s).
    third.kill9()

    def third_down() -> bool:
        nodes = first.get("/v1/nodes", auth=ADMIN).json()
        return [n["status"] for n in nodes] == ["active", "active", "down"]

    eventually(third_down, timeout=12, message="node 3 down")


def test_ten_joins_at_once_all_succeed_and_five_voters_form(agents: AgentFactory) -> None:
    import concurrent.futures

    from harness.polling import eventually

    first = agents.start()
    joiners = [agents.make() for _ in range(10)]
    for joiner in joiners:
        joiner.start(wait=False)
    for joiner in joiners:
        joiner.wait_serving()
    create(first)
    with concurrent.futures.ThreadPoolExecutor(len(joiners)) as pool:
        posted = list(
            pool.map(lambda j: j.post("/v1/bootstrap/join_cluster", join_body(first)), joiners)
        )
    assert [r.status_code for r in posted] == [200] * 10
    statuses = [j.wait_state("completed", "error", auth=ADMIN, timeout=60) for j in joiners]
    assert [s["bootstrap_status"]["state"] for s in statuses] == ["completed"] * 10, statuses
    uids = sorted(int(s["local_node_info"]["uid"]) for s in statuses)
    assert uids == list(range(2, 12))

    def five_voters() -> list[dict[str, Any]] | None:
        nodes = first.get("/v1/nodes", auth=ADMIN).json()
        voters = [n for n in nodes if n.get("store_role") == "voter"]
        return nodes if len(voters) == 5 and len(nodes) == 11 else None

    nodes = eventually(five_voters, timeout=90, interval=0.5, message="five voters")
    members = store_members(first)
    assert not any(m.get("isLearner") for m in members)
    assert sorted(u for m in members for u in m["peerURLs"]) == sorted(
        str(n["store_peer_url"]) for n in nodes if n.get("store_role") == "voter"
    )


def test_join_retried_by_the_same_node_gets_the_same_uid(agents: AgentFactory) -> None:
    first, second = agents.start(), agents.start()
    create(first)
    assert join(second, first)["local_node_info"]["uid"] == "2"
    # Lose the node's local state (as after a crash right before it was written): the retry
    # presents the same node key and gets the same uid, never a second record.
    second.stop()
    second.layout.local_state_file.unlink()
    second.layout.status_file.unlink()
    second.start()
    assert join(second, first)["local_node_info"]["uid"] == "2"
    nodes = first.get("/v1/nodes", auth=ADMIN).json()
    assert [n["uid"] for n in nodes] == [1, 2]


def test_joiner_killed_mid_join_then_retry_succeeds(agents: AgentFactory) -> None:
    first, second = agents.start(), agents.start()
    create(first)
    assert second.post("/v1/bootstrap/join_cluster", join_body(first)).status_code == 200
    from harness.polling import eventually

    # With credentials: a join that completes between two polls makes the route authenticated.
    eventually(
        lambda: (
            second.status(auth=ADMIN)["bootstrap_status"]["state"]
            in ("joining_cluster", "completed")
        ),
        interval=0.005,
        message="join under way",
    )
    second.kill9()
    second.start()
    # Credentials are ignored before bootstrap and required after: send them either way.
    state = second.status(auth=ADMIN)["bootstrap_status"]
    if state["state"] == "error":
        assert "interrupted" in state["error_details"]["message"]
        status = join(second, first)
        assert status["bootstrap_status"]["state"] == "completed", status
    nodes = first.get("/v1/nodes", auth=ADMIN).json()
    assert [n["addr"] for n in nodes].count(second.addr) == 1
    assert [n["uid"] for n in nodes] == [1, 2]


def test_member_killed_mid_join_then_retry_succeeds(agents: AgentFactory) -> None:
    first, second = agents.start(), agents.start()
    create(first)
    assert second.post("/v1/bootstrap/join_cluster", join_body(first)).status_code == 200
    first.kill9()
    outcome = second.wait_state("completed", "error", timeout=30)["bootstrap_status"]
    first.start(wait=False)
    first.wait_state("completed", auth=ADMIN, timeout=10)
    if outcome["state"] == "error":
        assert outcome["error_code"] in ("connect_error", "internal_error"), outcome
        status = join(second, first)
        assert status["bootstrap_status"]["state"] == "completed", status
    nodes = first.get("/v1/nodes", auth=ADMIN).json()
    assert [n["addr"] for n in nodes].count(second.addr) == 1
