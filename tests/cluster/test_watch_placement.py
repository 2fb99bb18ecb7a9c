"""Where the agents' store watches stream from, on real agents and real etcd (issue 12 §2).

A node joins through a member (node 1 here) and starts watching the store there. Once it is a
voter itself, or the voters change, its preferred member is another one; the watch must follow,
or every node of a grown cluster watches node 1's member for ever and each write fans out from
that one member to the whole cluster (the busiest etcd member's idle CPU grew with the cluster:
bench_idle). The move must lose no event: the watch goes on from the next revision.
"""

from __future__ import annotations

import httpx

from harness import etcd_gateway
from harness.agents import Agent, AgentFactory, basic
from harness.bodies import ADMIN
from harness.cluster_setup import create, join, voter_count
from harness.metrics import parse_samples, value
from harness.polling import eventually

WATCH_STREAMS = "etcd_debugging_mvcc_watch_stream_total"


def watch_streams(agent: Agent) -> float:
    """How many watch streams the agent's etcd member serves now."""
    context = etcd_gateway.client_context(agent.layout.cluster_tls)
    response = httpx.get(f"https://{agent.addr}:2379/metrics", verify=context, timeout=5)
    response.raise_for_status()
    found = value(parse_samples(response.text), WATCH_STREAMS)
    assert found is not None, f"etcd exposes no {WATCH_STREAMS}"
    return found


def user_emails(agent: Agent) -> set[str]:
    response = agent.get("/v1/users", auth=ADMIN)
    assert response.status_code == 200, response.text
    return {str(user["email"]) for user in response.json()}


def test_each_voter_node_watches_its_own_member_and_misses_nothing(agents: AgentFactory) -> None:
    first, second, third = agents.start(), agents.start(), agents.start()
    create(first, "watch.example.com")
    join(second, first)
    join(third, first)
    eventually(lambda: voter_count(first) == 3, timeout=30, message="three voters")

    # Both joined through node 1; once each is a voter its own member comes first, and its
    # watch moves there: one stream per member, node 1's own included.
    def placed() -> bool:
        return [watch_streams(agent) for agent in (first, second, third)] == [1, 1, 1]

    eventually(placed, timeout=30, message="one watch stream per member")
    for agent in (second, third):
        assert "moving the store watch" in agent.log()

    # The moved watches see what is written after the move, through any node.
    for index, writer in enumerate((first, second, third)):
        email = f"after-move-{index}@example.com"
        created = httpx.post(
            writer.http_url + "/v1/users",
            json={"email": email, "password": "pass-word-123", "role": "db_viewer"},
            headers=basic(*ADMIN),
            timeout=10,
        )
        assert created.status_code == 200, created.text
        for reader in (first, second, third):
            eventually(
                lambda reader=reader, email=email: email in user_emails(reader),
                timeout=10,
                message=f"{email} seen by {reader.addr}",
            )
