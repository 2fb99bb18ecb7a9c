"""What a join writes to the store, on real agents and real etcd (issue 12 §2).

Every write under /cnm/ reaches every node of the cluster (each one watches the prefix), so at
100 nodes each extra write of a join is a hundred agents woken, parsing and applying it on the
same machine as the join itself. A join makes two: the member's admission (uid, node key, the
record marked `joining`), then the joiner's completion, one transaction holding the completed
record, its liveness key and its first heartbeat. Its first upkeep round, moments later, must
not write them again: the record already has every fact the round refreshes (its boot time
included), and the heartbeat is fresh.
"""

from __future__ import annotations

import base64
import time
from typing import Any

from harness import etcd_gateway
from harness.agents import Agent, AgentFactory
from harness.bodies import ADMIN
from harness.cluster_setup import create, join, voter_count
from harness.polling import eventually

# The joiner's upkeep starts its first round as the join completes; nothing it could write
# comes later than this (its next round is 10 s away).
FIRST_ROUND_WINDOW = 3.0


def key_state(agent: Agent, key: str) -> dict[str, Any] | None:
    """etcd's view of `key`: create/mod revisions and version (writes since creation)."""
    encoded = base64.b64encode(key.encode()).decode()
    response = etcd_gateway.post(
        agent.addr, agent.layout.cluster_tls, "/v3/kv/range", {"key": encoded}
    )
    response.raise_for_status()
    found = response.json().get("kvs") or []
    return (
        {
            name: int(found[0].get(name, 0))
            for name in ("create_revision", "mod_revision", "version")
        }
        if found
        else None
    )


def test_a_join_writes_its_completion_liveness_and_heartbeat_at_once(
    agents: AgentFactory,
) -> None:
    first, second, third, fourth = (agents.start() for _ in range(4))
    create(first, "join-writes.example.com")
    join(second, first)
    join(third, first)
    # The store's three voters first: the fourth node stays a client, so no voter change
    # rewrites its record (store_role) in the window below.
    eventually(lambda: voter_count(first) == 3, timeout=30, message="three voters")
    join(fourth, first)
    status = fourth.get("/v1/bootstrap", auth=ADMIN)
    assert status.status_code == 200, status.text
    uid = int(status.json()["local_node_info"]["uid"])
    keys = {
        "record": f"/cnm/nodes/{uid}",
        "liveness": f"/cnm/liveness/{uid}",
        "heartbeat": f"/cnm/node-clocks/{uid}",
    }

    def states() -> dict[str, dict[str, Any] | None]:
        return {name: key_state(first, key) for name, key in keys.items()}

    eventually(lambda: all(states().values()), timeout=10, message="the joiner's keys")
    deadline = time.monotonic() + FIRST_ROUND_WINDOW
    # Watched through the joiner's first upkeep round: what must not happen has no moment to
    # wait for, so the window covers the round's.
    while time.monotonic() < deadline:
        seen = states()
        record, liveness, heartbeat = seen["record"], seen["liveness"], seen["heartbeat"]
        assert record is not None and liveness is not None and heartbeat is not None
        # Admission created the record; the completion is its one and only change since.
        assert record["version"] == 2, seen
        assert liveness["mod_revision"] == record["mod_revision"], seen
        assert heartbeat["mod_revision"] == record["mod_revision"], seen
        assert heartbeat["version"] == 1, seen
        time.sleep(0.2)
