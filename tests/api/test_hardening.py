"""Inputs that must never be a 500, and the smaller security rules of issue 11 (§5, §6), on a
bootstrapped node's ASGI app over the in-memory store."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio

from cnm.json_body import MAX_BODY_BYTES
from harness.agents import basic
from harness.api_node import Node, bootstrapped_node, node_config
from harness.bodies import ADMIN

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def node(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Node]:
    async with bootstrapped_node(node_config(tmp_path_factory.mktemp("node"))) as made:
        yield made


async def call(
    node: Node, method: str, path: str, auth: tuple[str, str] | str | None, body: Any = None
) -> httpx.Response:
    headers: dict[str, str] = {}
    if isinstance(auth, tuple):
        headers.update(basic(*auth))
    elif isinstance(auth, str):
        headers["Authorization"] = f"JWT {auth}"
    content = None if body is None else json.dumps(body).encode()
    return await node.client.request(method, path, headers=headers, content=content)


def routes(node: Node) -> list[tuple[str, str]]:
    """(method, path) of every API route, path parameters filled with 1 (from the OpenAPI
    document, plus the routes it leaves out)."""
    document = node.app.openapi()
    found = [
        (method.upper(), path.replace("{uid}", "1").replace("{action}", "create_cluster"))
        for path, operations in document["paths"].items()
        for method in operations
    ]
    hidden = [("POST", "/v1/join/time"), ("POST", "/v1/join/node"), ("GET", "/v1/openapi.json")]
    return found + hidden


async def test_non_ascii_basic_token_is_a_401_on_every_route(
    node: Node, caplog: pytest.LogCaptureFixture
) -> None:
    checked = 0
    with caplog.at_level(logging.INFO):
        for method, path in routes(node):
            if path in ("/v1/join/ca",) or path.startswith("/v1/bootstrap"):
                continue  # public (the CA) or answered before credentials (bootstrap status)
            for raw in (b"Basic \xc3\xa9", b"Basic \xff\xfe", b"Basic w6k=\x80"):
                response = await node.client.request(
                    method, path, headers={"Authorization": raw}, content=b"{}"
                )
                assert response.status_code == 401, (method, path, raw, response.text)
                assert "malformed Basic credentials" in response.json()["description"]
                checked += 1
    assert checked > 30
    assert "please report" not in caplog.text and "Traceback" not in caplog.text


@pytest.mark.parametrize(
    "login",
    ["\x00\x01", "\x7f", "a\u0085b", "\u200b", "a\u202eb", "\ud800", "\x1b[31m"],
)
@pytest.mark.parametrize("field", ["name", "email"])
async def test_logins_of_control_characters_are_refused(node: Node, login: str, field: str) -> None:
    body = {"email": "ctl@example.com", "password": "ctl-password", "role": "db_viewer"}
    body[field] = login
    response = await call(node, "POST", "/v1/users", ADMIN, body)
    assert response.status_code == 400, response.text
    assert response.json()["fields"] == [field]
    assert all(user["email"] != "ctl@example.com" for user in (await list_users(node)))


async def list_users(node: Node) -> list[dict[str, Any]]:
    response = await call(node, "GET", "/v1/users", ADMIN)
    users: list[dict[str, Any]] = response.json()
    return users


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("DELETE", "/v1/users", {"GET", "POST"}),
        ("POST", "/v1/users/1", {"GET", "PUT", "DELETE"}),
        ("DELETE", "/v1/cluster", {"GET", "PUT"}),
        ("POST", "/v1/cluster/policy", {"GET", "PUT"}),
        ("PATCH", "/v1/license", {"GET", "PUT"}),
    ],
)
async def test_405_allow_lists_every_method(
    node: Node, method: str, path: str, allowed: set[str]
) -> None:
    response = await call(node, method, path, ADMIN)
    assert response.status_code == 405
    listed = {m.strip() for m in response.headers["allow"].split(",")}
    assert allowed <= listed and method not in listed


async def test_openapi_needs_credentials(node: Node) -> None:
    assert (await call(node, "GET", "/v1/openapi.json", None)).status_code == 401
    assert (await call(node, "GET", "/v1/openapi.json", ("admin@x", "nope"))).status_code == 401
    document = (await call(node, "GET", "/v1/openapi.json", ADMIN)).json()
    assert "/v1/users" in document["paths"] and "/v1/openapi.json" not in document["paths"]


async def test_changing_ones_own_password_needs_the_current_one(node: Node) -> None:
    me = ("self.changer@example.com", "first-password")
    made = await call(node, "POST", "/v1/users", ADMIN, {**_user(me), "role": "db_viewer"})
    uid = made.json()["uid"]
    jwt = (await call(node, "POST", "/v1/users/authorize", me)).json()["access_token"]
    # A stolen token is not enough to take the account over.
    for auth in (jwt, me):
        missing = await call(node, "PUT", f"/v1/users/{uid}", auth, {"password": "stolen-pass"})
        assert missing.status_code == 400 and missing.json()["fields"] == ["current_password"]
        wrong = await call(
            node,
            "PUT",
            f"/v1/users/{uid}",
            auth,
            {"password": "stolen-pass", "current_password": "guess-guess"},
        )
        assert wrong.status_code == 403, wrong.text
        assert wrong.json()["error_code"] == "wrong_current_password"
    assert (await call(node, "GET", f"/v1/users/{uid}", me)).status_code == 200
    body = {"password": "second-password", "current_password": me[1]}
    assert (await call(node, "PUT", f"/v1/users/{uid}", me, body)).status_code == 200
    me = (me[0], "second-password")
    # An admin resets another user's password without knowing it.
    reset = await call(node, "PUT", f"/v1/users/{uid}", ADMIN, {"password": "third-password"})
    assert reset.status_code == 200
    assert (
        await call(node, "GET", f"/v1/users/{uid}", (me[0], "third-password"))
    ).status_code == 200
    assert (await call(node, "DELETE", f"/v1/users/{uid}", ADMIN)).status_code == 200


def _user(login: tuple[str, str]) -> dict[str, str]:
    return {"email": login[0], "password": login[1]}


def _claims(jwt: str) -> dict[str, Any]:
    payload = jwt.split(".")[1]
    document: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * 4))
    return document


async def test_refreshing_cannot_extend_a_session_past_its_maximum_age(node: Node) -> None:
    policy = await call(node, "PUT", "/v1/cluster/policy", ADMIN, {"session_max_age": 60})
    assert policy.status_code == 200 and policy.json()["session_max_age"] == 60
    try:
        jwt = (await call(node, "POST", "/v1/users/authorize", ADMIN, {"ttl": 3600})).json()
        first = _claims(jwt["access_token"])
        assert first["exp"] <= first["auth_time"] + 60
        refreshed = await call(
            node, "POST", "/v1/users/refresh_jwt", jwt["access_token"], {"ttl": 3600}
        )
        assert refreshed.status_code == 200
        second = _claims(refreshed.json()["access_token"])
        assert second["auth_time"] == first["auth_time"]
        assert second["exp"] <= first["auth_time"] + 60
    finally:
        restored = await call(node, "PUT", "/v1/cluster/policy", ADMIN, {"session_max_age": 86400})
        assert restored.status_code == 200
    too_short = await call(node, "PUT", "/v1/cluster/policy", ADMIN, {"session_max_age": 5})
    assert too_short.status_code == 400 and too_short.json()["fields"] == ["session_max_age"]


async def test_join_time_reads_its_body_within_the_limit(node: Node) -> None:
    big = b'{"t1": 1, "pad": "' + b"x" * (MAX_BODY_BYTES + 10) + b'"}'
    response = await node.client.post("/v1/join/time", headers=basic(*ADMIN), content=big)
    assert response.status_code == 413, response.text
