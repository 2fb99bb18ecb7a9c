"""The sign-in lockout of (user, client address) pairs (issue 11 §4) on a node's ASGI app over
the in-memory store: clients at distinct addresses are ASGI clients with distinct peers."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio

from harness.agents import basic
from harness.api_node import Node, bootstrapped_node, node_config
from harness.bodies import ADMIN

pytestmark = pytest.mark.asyncio(loop_scope="module")

ATTACKER, ELSEWHERE = "192.0.2.66", "198.51.100.7"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def node(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Node]:
    async with bootstrapped_node(node_config(tmp_path_factory.mktemp("node"))) as made:
        yield made


def client_at(node: Node, address: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=node.app, client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://test")


async def test_failures_lock_the_pair_and_only_the_pair(node: Node) -> None:
    policy = {"lockout_threshold": 3, "lockout_duration": 600, "lockout_counter_reset": 600}
    changed = await node.client.put("/v1/cluster/policy", headers=basic(*ADMIN), json=policy)
    assert changed.status_code == 200 and changed.json()["lockout_threshold"] == 3
    wrong = basic(ADMIN[0], "not-the-password")
    async with client_at(node, ATTACKER) as attacker, client_at(node, ELSEWHERE) as admin:
        for _ in range(2):
            response = await attacker.get("/v1/cluster", headers=wrong)
            assert response.json()["error_code"] == "unauthorized"
        locked = await attacker.get("/v1/cluster", headers=wrong)
        assert locked.status_code == 401
        assert locked.json()["error_code"] == "sign_in_locked"
        assert "locked" in locked.json()["description"]
        assert 590 <= int(locked.headers["retry-after"]) <= 600
        # Now even the right password is refused from there, before any check...
        right = await attacker.get("/v1/cluster", headers=basic(*ADMIN))
        assert right.status_code == 401 and right.json()["error_code"] == "sign_in_locked"
        # ...but never from an address that has not failed: the admin is not locked out.
        assert (await admin.get("/v1/cluster", headers=basic(*ADMIN))).status_code == 200
        listed = (await admin.get("/v1/users/1/sign_in_failures", headers=basic(*ADMIN))).json()
        assert [(p["client"], p["failures"], p["locked"]) for p in listed] == [(ATTACKER, 3, True)]
        # An admin unlocks the pair.
        unlocked = await admin.post(
            "/v1/users/1/unlock", headers=basic(*ADMIN), json={"client": ATTACKER}
        )
        assert unlocked.json() == {"unlocked": [ATTACKER]}
        assert (await attacker.get("/v1/cluster", headers=basic(*ADMIN))).status_code == 200
        again = await admin.get("/v1/users/1/sign_in_failures", headers=basic(*ADMIN))
        assert again.json() == []


async def test_a_success_clears_the_count(node: Node) -> None:
    wrong = basic(ADMIN[0], "not-the-password")
    async with client_at(node, "192.0.2.77") as client:
        for _ in range(2):
            assert (await client.get("/v1/nodes", headers=wrong)).status_code == 401
        assert (await client.get("/v1/nodes", headers=basic(*ADMIN))).status_code == 200
        for _ in range(2):
            response = await client.get("/v1/nodes", headers=wrong)
            assert response.json()["error_code"] == "unauthorized"


async def test_unlock_needs_a_user_manager(node: Node) -> None:
    viewer = ("viewer.lock@example.com", "viewer-password")
    body = {"email": viewer[0], "password": viewer[1], "role": "cluster_viewer"}
    assert (await node.client.post("/v1/users", headers=basic(*ADMIN), json=body)).is_success
    response = await node.client.post("/v1/users/1/unlock", headers=basic(*viewer), json={})
    assert response.status_code == 403
    missing = await node.client.post("/v1/users/999/unlock", headers=basic(*ADMIN), json={})
    assert missing.status_code == 404
    bad = await node.client.post("/v1/users/1/unlock", headers=basic(*ADMIN), json={"client": 5})
    assert bad.status_code == 400 and bad.json()["fields"] == ["client"]
