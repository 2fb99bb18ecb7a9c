"""The cluster resources after bootstrap on a node's ASGI app over the in-memory store: shapes,
permissions, users, settings, bad bodies, tokens. The API's logic, without etcd or agent
processes (tests/cluster/test_resources.py keeps the ones that need a real store and agents).
The cases both stores must pass (shapes, a user's life) are written once in harness/resources.py
and run by both files.

One cluster is created for the module and shared by its tests (each test leaves it as it found
it), as on the real agents.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio

from cnm.store.memory import MemoryMember
from harness.api_node import Node, bootstrapped_node, node_config
from harness.bodies import ADMIN
from harness.resources import (
    ALL_ROLES,
    NAME,
    ROLES,
    Api,
    Auth,
    compact,
    people_of_every_role,
    shapes_follow_the_contract,
    user_lifecycle,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def node(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Node]:
    async with bootstrapped_node(node_config(tmp_path_factory.mktemp("node")), name=NAME) as made:
        # These tests send wrong passwords on purpose, all from one address: no lockout here
        # (it has its own tests, tests/api/test_sign_in_lockout.py).
        policy = await call(made, "PUT", "/v1/cluster/policy", ADMIN, {"lockout_threshold": 1000})
        assert policy.status_code == 200, policy.text
        yield made


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def people(node: Node) -> dict[str, tuple[str, str, int]]:
    """One user per role: role -> (email, password, uid)."""
    return await people_of_every_role(api(node))


def api(node: Node) -> Api:
    """The node as the shared cases (harness.resources) reach it: its app, in-process."""

    async def send(
        method: str, path: str, headers: dict[str, str], content: bytes | None
    ) -> httpx.Response:
        return await node.client.request(method, path, headers=headers, content=content)

    return Api(send, node.config.addr)


async def call(
    node: Node,
    method: str,
    path: str,
    auth: Auth = None,
    body: Any = None,
    *,
    content: bytes | None = None,
) -> httpx.Response:
    return await api(node).call(method, path, auth, body, content=content)


async def token(node: Node, auth: tuple[str, str], **body: Any) -> str:
    response = await call(node, "POST", "/v1/users/authorize", auth, body or None)
    assert response.status_code == 200, response.text
    assert list(response.json()) == ["access_token"]
    return str(response.json()["access_token"])


async def expired_within(node: Node, jwt: str, *, timeout: float) -> httpx.Response:
    """The first 401 for `jwt` (polled with a deadline): the token has expired."""
    deadline = time.monotonic() + timeout
    while True:
        response = await call(node, "GET", "/v1/cluster", jwt)
        if response.status_code == 401:
            return response
        assert time.monotonic() < deadline, f"token still accepted after {timeout} s"
        await asyncio.sleep(0.05)


def claims(jwt: str) -> dict[str, Any]:
    payload = jwt.split(".")[1]
    document: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * 4))
    return document


# --- shapes ---------------------------------------------------------------------------------------


async def test_shapes_follow_the_contract(
    node: Node, people: dict[str, tuple[str, str, int]]
) -> None:
    await shapes_follow_the_contract(api(node))


# --- permissions ----------------------------------------------------------------------------------

EVERY = set(ROLES)
TABLE: list[tuple[str, str, Any, set[str], int]] = [
    # method, path, body, roles allowed, status for them
    ("GET", "/v1/cluster", None, EVERY, 200),
    ("GET", "/v1/cluster/policy", None, EVERY, 200),
    ("PUT", "/v1/cluster", {}, {"admin"}, 200),
    ("PUT", "/v1/cluster/policy", {}, {"admin"}, 200),
    ("GET", "/v1/cluster/check", None, {"admin", "cluster_member", "cluster_viewer"}, 200),
    ("GET", "/v1/nodes", None, EVERY, 200),
    ("GET", "/v1/nodes/1", None, EVERY, 200),
    ("GET", "/v1/nodes/status", None, EVERY, 200),
    ("GET", "/v1/license", None, EVERY, 200),
    ("PUT", "/v1/license", {"license": "not a license"}, {"admin", "user_manager"}, 400),
    ("GET", "/v1/users", None, {"admin", "user_manager"}, 200),
    ("POST", "/v1/users", {"email": "x"}, {"admin", "user_manager"}, 400),
    ("GET", "/v1/users/1", None, {"admin", "user_manager"}, 200),
    ("PUT", "/v1/users/999", {}, {"admin", "user_manager"}, 404),
    ("DELETE", "/v1/users/999", None, {"admin", "user_manager"}, 404),
    ("GET", "/v1/users/999", None, {"admin", "user_manager"}, 404),
    ("POST", "/v1/users/authorize", None, {*ALL_ROLES}, 200),
    ("POST", "/v1/users/refresh_jwt", None, {*ALL_ROLES}, 200),
    ("GET", "/v1/bootstrap", None, {*ALL_ROLES}, 200),
]


async def test_role_route_table(node: Node, people: dict[str, tuple[str, str, int]]) -> None:
    mismatches = []
    tokens = {role: await token(node, people[role][:2]) for role in ALL_ROLES}
    for method, path, body, allowed, status in TABLE:
        for credentials in ("nobody", "wrong-password", "bad-token"):
            auth: Any = {
                "nobody": None,
                "wrong-password": (ADMIN[0], "wrong"),
                "bad-token": tokens["admin"][:-3] + "abc",
            }[credentials]
            response = await call(node, method, path, auth, body)
            if response.status_code != 401:
                mismatches.append(f"{method} {path} {credentials}: {response.status_code}")
            elif compact(response)["error_code"] != "unauthorized":
                mismatches.append(f"{method} {path} {credentials}: {response.text}")
        for role in ALL_ROLES:
            for kind, auth in (("basic", people[role][:2]), ("jwt", tokens[role])):
                response = await call(node, method, path, auth, body)
                expected = status if role in allowed else 403
                if response.status_code != expected:
                    mismatches.append(
                        f"{method} {path} {role}/{kind}: {response.status_code} != {expected} "
                        f"{response.text[:120]}"
                    )
                elif expected == 403:
                    assert compact(response)["error_code"] == "insufficient_permissions"
    assert not mismatches, "\n".join(mismatches)


async def test_any_user_reads_and_changes_itself(
    node: Node, people: dict[str, tuple[str, str, int]]
) -> None:
    email, password, uid = people["db_viewer"]
    assert (await call(node, "GET", f"/v1/users/{uid}", (email, password))).status_code == 200
    other = people["cluster_viewer"][2]
    assert (await call(node, "GET", f"/v1/users/{other}", (email, password))).status_code == 403
    changed = await call(node, "PUT", f"/v1/users/{uid}", (email, password), {"name": "me myself"})
    assert changed.status_code == 200 and changed.json()["name"] == "me myself"
    for forbidden in ({"role": "admin"}, {"email": "new@example.com"}):
        response = await call(node, "PUT", f"/v1/users/{uid}", (email, password), forbidden)
        assert response.status_code == 403, forbidden
    restored = await call(node, "PUT", f"/v1/users/{uid}", ADMIN, {"name": "the db_viewer"})
    assert restored.status_code == 200


async def test_user_manager_cannot_make_or_touch_admins(
    node: Node, people: dict[str, tuple[str, str, int]]
) -> None:
    manager = people["user_manager"][:2]
    body = {"email": "boss@example.com", "password": "boss-password", "role": "admin"}
    assert (await call(node, "POST", "/v1/users", manager, body)).status_code == 403
    own_uid = people["user_manager"][2]
    assert (
        await call(node, "PUT", f"/v1/users/{own_uid}", manager, {"role": "admin"})
    ).status_code == 403
    assert (await call(node, "PUT", "/v1/users/1", manager, {"name": "x"})).status_code == 403
    assert (await call(node, "DELETE", "/v1/users/1", manager)).status_code == 403


# --- users ----------------------------------------------------------------------------------------


async def test_user_lifecycle(node: Node) -> None:
    await user_lifecycle(api(node))


async def test_last_admin_stays(node: Node, people: dict[str, tuple[str, str, int]]) -> None:
    other_admin = people["admin"][2]
    assert (
        await call(node, "PUT", f"/v1/users/{other_admin}", ADMIN, {"role": "db_viewer"})
    ).is_success
    try:
        for method, body in (("DELETE", None), ("PUT", {"role": "cluster_viewer"})):
            response = await call(node, method, "/v1/users/1", ADMIN, body)
            assert response.status_code == 406, response.text
            assert response.json()["error_code"] == "change_last_admin_role_not_allowed"
    finally:
        restore = await call(node, "PUT", f"/v1/users/{other_admin}", ADMIN, {"role": "admin"})
        assert restore.status_code == 200


async def test_password_min_length_is_the_clusters(node: Node) -> None:
    assert (await call(node, "PUT", "/v1/cluster", ADMIN, {"password_min_length": 12})).is_success
    try:
        body = {"email": "len@example.com", "password": "ten-chars!", "role": "none"}
        response = await call(node, "POST", "/v1/users", ADMIN, body)
        assert response.status_code == 400 and "12" in response.json()["description"]
    finally:
        assert (
            await call(node, "PUT", "/v1/cluster", ADMIN, {"password_min_length": 8})
        ).is_success


# --- cluster settings -----------------------------------------------------------------------------


async def test_put_cluster(node: Node) -> None:
    current = compact(await call(node, "GET", "/v1/cluster", ADMIN))
    assert compact(await call(node, "PUT", "/v1/cluster", ADMIN, current)) == current
    for field, value in (("name", "c2.example.com"), ("rack_aware", True), ("uuid", "x")):
        response = await call(node, "PUT", "/v1/cluster", ADMIN, {**current, field: value})
        assert response.status_code == 400, field
        assert response.json()["error_code"] == "read_only_field"
        assert response.json()["description"].startswith(f"{field}:")
    changed = compact(await call(node, "PUT", "/v1/cluster", ADMIN, {"wait_command": False}))
    assert changed["wait_command"] is False
    assert compact(await call(node, "GET", "/v1/cluster", ADMIN))["wait_command"] is False
    assert (await call(node, "PUT", "/v1/cluster", ADMIN, {"wait_command": True})).is_success
    policy = compact(
        await call(node, "PUT", "/v1/cluster/policy", ADMIN, {"shards_overbooking": True})
    )
    assert policy["shards_overbooking"] is True
    assert (
        await call(node, "PUT", "/v1/cluster/policy", ADMIN, {"rack_aware": True})
    ).status_code == 400
    assert (
        await call(node, "PUT", "/v1/cluster/policy", ADMIN, {"shards_overbooking": False})
    ).is_success


NOT_OBJECTS: list[bytes] = [
    b"",
    b"{",
    b"[]",
    b'"text"',
    b"42",
    b"\xff\xfe",
    b"[" * 100_000,
    b'{"a": NaN}',
    b'{"n": ' + b"9" * 5000 + b"}",
    b"x" * 2_000_000,
]
HUGE = "x" * 100_000
BAD_FIELDS: dict[tuple[str, str], list[dict[str, Any]]] = {
    ("PUT", "/v1/cluster"): [
        {"password_min_length": "12"},
        {"password_min_length": 12.0},
        {"password_min_length": True},
        {"password_min_length": 10**30},
        {"password_min_length": 7},
        {"password_complexity": "yes"},
        {"wait_command": 1},
        {"name": 7},
        {"cnm_https_port": 1},
    ],
    ("PUT", "/v1/cluster/policy"): [
        {"default_shards_placement": HUGE},
        {"default_shards_placement": 7},
        {"shards_overbooking": "no"},
        {"default_sharded_proxy_policy": "bogus"},
        {"rack_aware": "yes"},
    ],
    ("POST", "/v1/users"): [
        {"email": ["a"], "password": "password1", "role": "none"},
        {"email": "e@x", "password": None, "role": "none"},
        {"email": HUGE, "password": "password1", "role": "none"},
        {"email": "e@x", "password": "\ud800" * 9, "role": "none"},
        {"email": "e@x", "password": HUGE, "role": "none"},
        {"email": "e@x", "password": "password1", "role_uids": [2**70]},
        {"email": "e@x", "password": "password1", "role": 7},
        {"email": "e@x", "password": "password1", "role": "none", "name": "<b>"},
    ],
    ("PUT", "/v1/users/1"): [
        {"email": 7},
        {"name": ""},
        {"role": "root"},
        {"role_uids": [2**70]},
        {"password": "\ud800" * 9},
        {"password": "short"},
        {"email_alerts": "yes"},
    ],
    ("PUT", "/v1/license"): [
        {"license": 7},
        {"license": HUGE},
        {"license": ""},
        {"license": None},
        {"license": ["a"]},
    ],
    ("POST", "/v1/users/authorize"): [
        {"ttl": 0},
        {"ttl": 86_401},
        {"ttl": "300"},
        {"ttl": 1.5},
        {"ttl": True},
        {"ttl": 2**70},
    ],
}


async def test_malformed_bodies_are_4xx_never_500(node: Node) -> None:
    before = compact(await call(node, "GET", "/v1/cluster", ADMIN))
    admin_before = compact(await call(node, "GET", "/v1/users/1", ADMIN))
    problems = []
    for (method, path), bad_fields in BAD_FIELDS.items():
        bodies = [*NOT_OBJECTS, *(json.dumps(fields).encode() for fields in bad_fields)]
        if path == "/v1/users/authorize":
            bodies = bodies[1:]  # no body at all is fine there
        for raw in bodies:
            response = await call(node, method, path, ADMIN, content=raw)
            if not 400 <= response.status_code < 500:
                problems.append(f"{method} {path} {raw[:50]!r}: {response.status_code}")
                continue
            body = response.json()
            if not (body.get("error_code") and body.get("description")):
                problems.append(f"{method} {path} {raw[:50]!r}: {response.text[:100]}")
            if "\\ud800" in response.text or "password1" in response.text:
                problems.append(f"{method} {path} echoes a password: {response.text[:100]}")
    assert not problems, "\n".join(problems)
    assert compact(await call(node, "GET", "/v1/cluster", ADMIN)) == before
    assert compact(await call(node, "GET", "/v1/users/1", ADMIN)) == admin_before
    ttl = await call(node, "POST", "/v1/users/authorize", ADMIN, {"ttl": "300"})
    assert ttl.status_code == 400 and "ttl" in ttl.json()["description"]


# --- tokens ---------------------------------------------------------------------------------------


async def test_token_lifetime(node: Node) -> None:
    default = claims(await token(node, ADMIN))
    assert default["exp"] - default["iat"] == 300
    assert "secret" not in json.dumps(default) and "password" not in json.dumps(default)
    longest = claims(await token(node, ADMIN, ttl=86_400))
    assert longest["exp"] - longest["iat"] == 86_400
    by_body = await call(
        node, "POST", "/v1/users/authorize", None, {"username": ADMIN[0], "password": ADMIN[1]}
    )
    assert by_body.status_code == 200
    wrong = await call(
        node, "POST", "/v1/users/authorize", None, {"username": ADMIN[0], "password": "x"}
    )
    assert wrong.status_code == 401

    short = await token(node, ADMIN, ttl=1)
    assert (await call(node, "GET", "/v1/bootstrap", short)).status_code in (200, 401)
    expired = await expired_within(node, short, timeout=5)
    assert "expired" in expired.json()["description"]

    jwt = await token(node, ADMIN)
    assert (await call(node, "GET", "/v1/bootstrap", jwt)).status_code == 200
    refreshed = await call(node, "POST", "/v1/users/refresh_jwt", jwt, {"ttl": 60})
    assert refreshed.status_code == 200
    assert claims(refreshed.json()["access_token"])["exp"] - claims(jwt)["iat"] >= 60
    header, payload, signature = jwt.split(".")
    forged_payload = base64.urlsafe_b64encode(
        json.dumps({**claims(jwt), "sub": "2"}).encode()
    ).rstrip(b"=")
    for bad in (f"{header}.{forged_payload.decode()}.{signature}", f"{header}.{payload}.", "x"):
        response = await call(node, "GET", "/v1/cluster", bad)
        assert response.status_code == 401, bad


async def test_token_of_a_deleted_user_is_refused(node: Node) -> None:
    body = {"email": "tmp@example.com", "password": "tmp-password", "role": "cluster_viewer"}
    uid = (await call(node, "POST", "/v1/users", ADMIN, body)).json()["uid"]
    jwt = await token(node, ("tmp@example.com", "tmp-password"))
    assert (await call(node, "GET", "/v1/cluster", jwt)).status_code == 200
    assert (await call(node, "DELETE", f"/v1/users/{uid}", ADMIN)).status_code == 200
    assert (await call(node, "GET", "/v1/cluster", jwt)).status_code == 401


# --- the runtime behind the API -------------------------------------------------------------------


async def test_the_runtime_restarts_a_store_member_that_exits(node: Node) -> None:
    runtime = node.manager.runtime
    assert runtime is not None and isinstance(runtime.member, MemoryMember)
    crashed = runtime.member
    assert crashed.running
    crashed.exit(1)
    deadline = time.monotonic() + 5
    while runtime.member is crashed or not runtime.member.running:
        assert time.monotonic() < deadline, "the store member was not restarted"
        await asyncio.sleep(0.02)
    assert (await call(node, "GET", "/v1/cluster", ADMIN)).status_code == 200
