"""The cluster resources on a real agent with real etcd: shapes, a user's life, another node's
view, a lost store. The API's logic after bootstrap (permissions, settings, bad bodies, tokens)
is tested on the in-memory store in tests/api/test_cluster_resources.py; the cases both stores
must pass (shapes, a user's life) are written once in harness/resources.py and run by both files.

One cluster is created for the module and shared by its tests (each test leaves it as it found
it); the tests that need to break something start agents of their own.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from cnm.api.auth import Authenticator
from cnm.cluster.runtime import open_store
from cnm.cluster.snapshot import ClusterSnapshot
from cnm.errors import Unauthorized
from cnm.security.passwords import PasswordVerifier
from harness.agents import Agent, AgentFactory, basic
from harness.bodies import ADMIN, create_body
from harness.polling import eventually
from harness.resources import (
    NAME,
    Api,
    Auth,
    compact,
    people_of_every_role,
    request_parts,
    shapes_follow_the_contract,
    user_lifecycle,
)

pytestmark = pytest.mark.cluster


# One client for the module's tests: a new httpx client per request costs an SSL context each.
_clients: list[httpx.Client] = []


@pytest.fixture(scope="module", autouse=True)
def _shared_client() -> Iterator[None]:
    _clients.append(httpx.Client(timeout=10.0))
    yield
    _clients.pop().close()


def created(agent: Agent) -> Agent:
    assert agent.post("/v1/bootstrap/create_cluster", create_body(NAME)).status_code == 200
    status = agent.wait_state("completed", "error", auth=ADMIN)
    assert status["bootstrap_status"]["state"] == "completed", status
    return agent


@pytest.fixture(scope="module")
def node(module_agents: AgentFactory) -> Agent:
    return created(module_agents.start())


@pytest.fixture(scope="module")
def people(node: Agent) -> dict[str, tuple[str, str, int]]:
    """One user per role: role -> (email, password, uid)."""
    return asyncio.run(people_of_every_role(api(node)))


def _send(
    agent: Agent, method: str, path: str, headers: dict[str, str], content: bytes | None
) -> httpx.Response:
    return _clients[0].request(method, agent.http_url + path, headers=headers, content=content)


def call(
    agent: Agent,
    method: str,
    path: str,
    auth: Auth = None,
    body: Any = None,
    *,
    content: bytes | None = None,
) -> httpx.Response:
    headers, content = request_parts(auth, body, content)
    return _send(agent, method, path, headers, content)


def api(agent: Agent) -> Api:
    """The agent as the shared cases (harness.resources) reach it: its plain-HTTP port."""

    async def send(
        method: str, path: str, headers: dict[str, str], content: bytes | None
    ) -> httpx.Response:
        # The module's blocking client, on purpose: nothing else runs on this test's loop.
        return _send(agent, method, path, headers, content)

    return Api(send, agent.addr)


def token(agent: Agent, auth: tuple[str, str], **body: Any) -> str:
    response = call(agent, "POST", "/v1/users/authorize", auth, body or None)
    assert response.status_code == 200, response.text
    assert list(response.json()) == ["access_token"]
    return str(response.json()["access_token"])


# --- shapes ---------------------------------------------------------------------------------------


async def test_shapes_follow_the_contract(
    node: Agent, people: dict[str, tuple[str, str, int]]
) -> None:
    await shapes_follow_the_contract(api(node))


# --- users ----------------------------------------------------------------------------------------


async def test_user_lifecycle(node: Agent) -> None:
    await user_lifecycle(api(node))


# --- another node, the store ----------------------------------------------------------------------


async def test_a_changed_user_is_refused_by_another_node_within_a_second(node: Agent) -> None:
    """A second node's view of the cluster (its own snapshot and authenticator on the same
    store, as every joined node has) refuses a user within a second of a change elsewhere."""
    tls = node.layout.cluster_tls
    store = open_store((f"https://{node.addr}:2379",), tls)
    snapshot = ClusterSnapshot(store)
    watching = asyncio.create_task(snapshot.run())
    verifier = PasswordVerifier()
    authenticator = Authenticator(verifier)
    try:
        await snapshot.wait_loaded(5)
        # As the daemon does on every node: flush the auth cache on any change of users.
        snapshot.add_listener(lambda key: verifier.flush() if "/users/" in key else None)
        async with httpx.AsyncClient(base_url=node.http_url, timeout=10) as client:
            body = {"email": "far@example.com", "password": "far-password", "role": "db_viewer"}
            response = await client.post("/v1/users", json=body, headers=basic(*ADMIN))
            uid = response.json()["uid"]
            jwt = (
                await client.post(
                    "/v1/users/authorize", headers=basic("far@example.com", body["password"])
                )
            ).json()["access_token"]
            header = basic("far@example.com", "far-password")["Authorization"]

            async def accepted(credentials: str) -> bool:
                try:
                    await authenticator.authenticate(credentials, snapshot)
                except Unauthorized:
                    return False
                return True

            async def within_a_second(credentials: str, expected: bool) -> float:
                start = time.monotonic()
                while await accepted(credentials) != expected:
                    assert time.monotonic() - start < 1.0, f"{credentials[:10]} not {expected}"
                    await asyncio.sleep(0.01)
                return time.monotonic() - start

            await within_a_second(header, True)
            await within_a_second(f"JWT {jwt}", True)
            changed = await client.put(
                f"/v1/users/{uid}", json={"password": "far-password-2"}, headers=basic(*ADMIN)
            )
            assert changed.status_code == 200
            await within_a_second(header, False)
            await within_a_second(f"JWT {jwt}", False)
            new_header = basic("far@example.com", "far-password-2")["Authorization"]
            await within_a_second(new_header, True)
            await client.delete(f"/v1/users/{uid}", headers=basic(*ADMIN))
            await within_a_second(new_header, False)
    finally:
        watching.cancel()
        await asyncio.gather(watching, return_exceptions=True)
        await store.close()
        verifier.close()


def test_store_lost_for_seconds_answers_503(agents: AgentFactory) -> None:
    node = created(agents.start())
    assert call(node, "GET", "/v1/cluster", ADMIN).status_code == 200
    [etcd] = node.etcd_pids()
    os.kill(etcd, signal.SIGSTOP)
    try:
        lost = eventually(
            lambda: (r := call(node, "GET", "/v1/nodes", ADMIN)).status_code == 503 and r,
            timeout=15,
            interval=0.2,
            message="503 while the store is stopped",
        )
        assert lost.json()["error_code"] == "store_unavailable"
    finally:
        os.kill(etcd, signal.SIGCONT)
    eventually(
        lambda: call(node, "GET", "/v1/nodes", ADMIN).status_code == 200,
        timeout=15,
        message="200 again once the store is back",
    )


def test_joined_node_serves_the_cluster_and_follows_user_changes(
    node: Agent, agents: AgentFactory
) -> None:
    joiner = agents.start()
    body = {
        "action": "join_cluster",
        "cluster": {"nodes": [node.addr]},
        "credentials": {"username": ADMIN[0], "password": ADMIN[1]},
    }
    probe = joiner.post("/v1/bootstrap/validate/join_cluster", body)
    if "not available" in probe.text:
        pytest.skip("join_cluster is not available in this version yet")
    assert joiner.post("/v1/bootstrap/join_cluster", body).status_code == 200
    status = joiner.wait_state("completed", "error", auth=ADMIN, timeout=30)
    assert status["bootstrap_status"]["state"] == "completed", status
    uid = int(status["local_node_info"]["uid"])
    for agent in (node, joiner):
        nodes = compact(call(agent, "GET", "/v1/nodes", ADMIN))
        assert [n["uid"] for n in nodes] == [1, uid]
        assert compact(call(agent, "GET", "/v1/cluster", ADMIN))["name"] == NAME
    eventually(
        lambda: compact(call(node, "GET", "/v1/cluster/check", ADMIN))["cluster_test_result"],
        timeout=20,
        message="both nodes pass the check",
    )

    user = {"email": "two@example.com", "password": "two-password", "role": "db_viewer"}
    user_uid = call(node, "POST", "/v1/users", ADMIN, user).json()["uid"]
    credentials = ("two@example.com", "two-password")
    eventually(lambda: call(joiner, "GET", "/v1/cluster", credentials).status_code == 200)
    jwt = token(joiner, credentials)
    assert call(node, "GET", "/v1/cluster", jwt).status_code == 200  # any node's token works
    assert call(node, "PUT", f"/v1/users/{user_uid}", ADMIN, {"role": "none"}).is_success
    eventually(
        lambda: (
            call(joiner, "GET", "/v1/cluster", credentials).status_code == 403
            and call(joiner, "GET", "/v1/cluster", jwt).status_code == 403
        ),
        timeout=1.0,
        interval=0.01,
        message="role change seen on the other node",
    )
    assert call(node, "DELETE", f"/v1/users/{user_uid}", ADMIN).status_code == 200
    eventually(
        lambda: (
            call(joiner, "GET", "/v1/bootstrap", credentials).status_code == 401
            and call(joiner, "GET", "/v1/bootstrap", jwt).status_code == 401
        ),
        timeout=1.0,
        interval=0.01,
        message="deletion seen on the other node",
    )

    assert joiner.stop() == 0
    down = eventually(
        lambda: (
            (c := compact(call(node, "GET", "/v1/cluster/check", ADMIN)))["nodes"][1]["result"]
            is False
            and c
        ),
        timeout=20,
        message="the stopped node fails the check",
    )
    assert down["cluster_test_result"] is False
    assert "down" in down["nodes"][1]["error"]
    assert compact(call(node, "GET", f"/v1/nodes/{uid}", ADMIN))["status"] == "down"
