"""The credential caches on a real agent with real etcd: a poller's Basic credentials and token,
answered from the agent's caches, stop working on the very next request after its password,
role or existence changes (no TTL to wait out), and a wrong password is never let through."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from harness.agents import Agent, AgentFactory, basic
from harness.bodies import ADMIN, create_body

pytestmark = pytest.mark.cluster

POLLER = ("poller@example.com", "poller-password-1")
CONNECTIONS = 16


async def _statuses(client: httpx.AsyncClient, path: str, auth: tuple[str, str]) -> list[int]:
    """One GET of `path` on each of CONNECTIONS concurrent requests, as a poller does."""
    responses = await asyncio.gather(
        *(client.get(path, headers=basic(*auth)) for _ in range(CONNECTIONS))
    )
    return [response.status_code for response in responses]


async def test_cached_credentials_follow_every_change_of_their_user(agents: AgentFactory) -> None:
    node: Agent = agents.start()
    assert node.post("/v1/bootstrap/create_cluster", create_body()).status_code == 200
    status = node.wait_state("completed", "error", auth=ADMIN)
    assert status["bootstrap_status"]["state"] == "completed", status
    limits = httpx.Limits(max_connections=CONNECTIONS)
    async with httpx.AsyncClient(base_url=node.http_url, timeout=30, limits=limits) as client:
        body = {"email": POLLER[0], "password": POLLER[1], "role": "cluster_viewer"}
        made = await client.post("/v1/users", json=body, headers=basic(*ADMIN))
        assert made.status_code == 200, made.text
        uid = made.json()["uid"]

        # A cold cache hit by 16 requests at once (they share one check), then warm.
        assert await _statuses(client, "/v1/bootstrap", POLLER) == [200] * CONNECTIONS
        assert await _statuses(client, "/v1/cluster", POLLER) == [200] * CONNECTIONS
        token = (await client.post("/v1/users/authorize", headers=basic(*POLLER))).json()
        jwt = {"Authorization": f"JWT {token['access_token']}"}
        assert (await client.get("/v1/bootstrap", headers=jwt)).status_code == 200

        # A wrong password next to the cached right one: refused, every time (a success
        # afterwards clears the address's count of failures).
        wrong = (POLLER[0], POLLER[1] + "x")
        for _ in range(2):
            refused = await client.get("/v1/bootstrap", headers=basic(*wrong))
            assert refused.status_code == 401
            assert refused.json()["error_code"] == "unauthorized"
        assert (await client.get("/v1/bootstrap", headers=basic(*POLLER))).status_code == 200

        # A role change applies to the very next request, cached credentials or not.
        changed = await client.put(f"/v1/users/{uid}", json={"role": "none"}, headers=basic(*ADMIN))
        assert changed.status_code == 200, changed.text
        assert (await client.get("/v1/cluster", headers=basic(*POLLER))).status_code == 403
        assert (await client.get("/v1/cluster", headers=jwt)).status_code == 403

        # A new password: the old one (cached a moment ago) and the token are refused at once.
        new = (POLLER[0], "poller-password-2")
        changed = await client.put(
            f"/v1/users/{uid}", json={"password": new[1]}, headers=basic(*ADMIN)
        )
        assert changed.status_code == 200, changed.text
        # One request, not 16: each refusal counts towards the lockout of this address (5).
        stale = await client.get("/v1/bootstrap", headers=basic(*POLLER))
        assert stale.status_code == 401 and stale.json()["error_code"] == "unauthorized"
        assert (await client.get("/v1/bootstrap", headers=jwt)).status_code == 401
        assert await _statuses(client, "/v1/bootstrap", new) == [200] * CONNECTIONS

        # Deleted: refused on the next request.
        deleted = await client.delete(f"/v1/users/{uid}", headers=basic(*ADMIN))
        assert deleted.status_code == 200, deleted.text
        gone = await client.get("/v1/bootstrap", headers=basic(*new))
        assert gone.status_code == 401 and gone.json()["error_code"] == "unauthorized"
