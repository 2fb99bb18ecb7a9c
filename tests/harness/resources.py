"""The cluster-resource cases both stores must pass, written once.

tests/api/test_cluster_resources.py runs them on a node's ASGI app over the in-memory store,
tests/cluster/test_resources.py on a real agent with real etcd: the same assertions, so the two
cannot drift apart. Each file says how a request reaches its node by building an `Api` (a
`send` coroutine and the node's address); the cases only ever call `Api.call`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import psutil

from harness.agents import basic
from harness.bodies import ADMIN

NAME = "c1.example.com"
ROLES = ("admin", "cluster_member", "cluster_viewer", "db_member", "db_viewer", "user_manager")
ALL_ROLES = (*ROLES, "none")

Auth = tuple[str, str] | str | None
# method, path, headers, body bytes -> the answer
Send = Callable[[str, str, dict[str, str], bytes | None], Awaitable[httpx.Response]]


def request_parts(
    auth: Auth, body: Any, content: bytes | None
) -> tuple[dict[str, str], bytes | None]:
    """Headers and body bytes of a call: Basic for a (user, password) pair, a JWT for a string;
    `body` as JSON unless raw `content` is given."""
    headers: dict[str, str] = {}
    if isinstance(auth, tuple):
        headers.update(basic(*auth))
    elif isinstance(auth, str):
        headers["Authorization"] = f"JWT {auth}"
    if content is None and body is not None:
        content = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    return headers, content


@dataclass(frozen=True)
class Api:
    send: Send
    addr: str

    async def call(
        self,
        method: str,
        path: str,
        auth: Auth = None,
        body: Any = None,
        *,
        content: bytes | None = None,
    ) -> httpx.Response:
        headers, content = request_parts(auth, body, content)
        return await self.send(method, path, headers, content)


def compact(response: httpx.Response) -> Any:
    """The body, checked to be compact JSON with sorted keys."""
    assert response.headers["content-type"] == "application/json"
    document = json.loads(response.content)
    canonical = json.dumps(document, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    assert response.content == canonical.encode()
    return document


def is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


async def people_of_every_role(api: Api) -> dict[str, tuple[str, str, int]]:
    """One user per role: role -> (email, password, uid)."""
    found = {}
    for role in ALL_ROLES:
        email, password = f"{role}.user@example.com", f"{role}-password"
        body = {"email": email, "password": password, "role": role, "name": f"the {role}"}
        response = await api.call("POST", "/v1/users", ADMIN, body)
        assert response.status_code == 200, response.text
        found[role] = (email, password, int(response.json()["uid"]))
    return found


async def shapes_follow_the_contract(api: Api) -> None:
    """Every resource's fields and types on a one-node cluster named NAME whose users are the
    admin and `people_of_every_role`."""
    cluster = compact(await api.call("GET", "/v1/cluster", ADMIN))
    assert cluster["name"] == NAME
    for field in ("cnm_http_port", "cnm_https_port", "password_min_length"):
        assert is_int(cluster[field]), field
    for field in ("rack_aware", "http_support", "upgrade_in_progress", "wait_command"):
        assert cluster[field] in (True, False), field
    assert (cluster["cnm_http_port"], cluster["cnm_https_port"]) == (8080, 9443)
    assert cluster["created_time"].endswith("Z") and len(cluster["uuid"]) == 36
    assert len(cluster["ca_fingerprint"].split(":")) == 32
    assert "node_settings" not in cluster and "policy" not in cluster

    policy = compact(await api.call("GET", "/v1/cluster/policy", ADMIN))
    assert policy["rack_aware"] is False and policy["default_shards_placement"] == "dense"

    check = compact(await api.call("GET", "/v1/cluster/check", ADMIN))
    assert check == {
        "cluster_test_result": True,
        "degraded": False,
        "failed_nodes": [],
        "nodes": [{"node_uid": "1", "result": True}],
    }

    nodes = compact(await api.call("GET", "/v1/nodes", ADMIN))
    assert [n["uid"] for n in nodes] == [1]
    one = compact(await api.call("GET", "/v1/nodes/1", ADMIN))
    assert one["status"] == "active" and one["addr"] == api.addr
    for field in ("uid", "cores", "total_memory", "uptime", "shard_count", "max_listeners"):
        assert is_int(one[field]), field
    for field in ("persistent_storage_size", "ephemeral_storage_size"):
        assert isinstance(one[field], float), field
    assert not {"node_settings", "ccs_persistent_path", "boot_time"} & set(one)
    host_uptime = time.time() - psutil.boot_time()
    assert abs(one["uptime"] - host_uptime) < 15
    statuses = compact(await api.call("GET", "/v1/nodes/status", ADMIN))
    assert statuses == {"1": {"status": "active"}}
    for missing in ("2", "0", "x", "9" * 40, "\u0661"):
        response = await api.call("GET", f"/v1/nodes/{missing}", ADMIN)
        assert response.status_code == 404 and compact(response)["error_code"] == "node_not_found"

    license = compact(await api.call("GET", "/v1/license", ADMIN))
    assert license["features"] == ["trial"] and license["expired"] is False
    assert is_int(license["shards_limit"]) and license["shards_limit"] == 4
    assert is_int(license["nodes_limit"])
    for field in ("owner", "cluster_name", "key", "license", "activation_date", "expiration_date"):
        assert isinstance(license[field], str), field

    users = compact(await api.call("GET", "/v1/users", ADMIN))
    assert len(users) == 1 + len(ALL_ROLES)
    for user in users:
        assert is_int(user["uid"]) and isinstance(user["email"], str)
        assert isinstance(user["role"], str) and all(is_int(uid) for uid in user["role_uids"])
        assert "password" not in json.dumps(user).replace("password_issue_date", "")
    admin = compact(await api.call("GET", "/v1/users/1", ADMIN))
    assert (admin["name"], admin["role"], admin["role_uids"]) == ("Administrator", "admin", [1])
    assert admin["status"] == "active"


async def user_lifecycle(api: Api) -> None:
    """A user created, refused twice as a duplicate, its password changed (the old one refused
    at once on this node), deleted; it leaves no user behind."""
    body = {"email": "Kim@Example.com", "password": "kim-password", "role": "db_member"}
    created_user = await api.call("POST", "/v1/users", ADMIN, body)
    assert created_user.status_code == 200, created_user.text
    user = compact(created_user)
    uid = user["uid"]
    assert (user["name"], user["role_uids"]) == ("Kim@Example.com", [4])
    assert "password_hash" not in user
    kim = ("kim@example.com", "kim-password")
    assert (await api.call("GET", "/v1/cluster", kim)).status_code == 200

    duplicate = await api.call("POST", "/v1/users", ADMIN, body)
    assert duplicate.json()["error_code"] == "email_already_exists"
    named = {**body, "email": "other@example.com", "name": "Administrator"}
    conflict = await api.call("POST", "/v1/users", ADMIN, named)
    assert (conflict.status_code, conflict.json()["error_code"]) == (409, "name_already_exists")
    short_body = {**body, "email": "s@x", "password": "short"}
    short = await api.call("POST", "/v1/users", ADMIN, short_body)
    assert (short.status_code, short.json()["error_code"]) == (400, "password_too_short")

    changed = await api.call("PUT", f"/v1/users/{uid}", ADMIN, {"password": "kim-new-password"})
    assert changed.status_code == 200
    # Read-your-writes on this node: the old password is refused at once, the new one works.
    assert (await api.call("GET", "/v1/cluster", kim)).status_code == 401
    renewed = (kim[0], "kim-new-password")
    assert (await api.call("GET", "/v1/cluster", renewed)).status_code == 200

    assert (await api.call("DELETE", f"/v1/users/{uid}", ADMIN)).content == b""
    assert (await api.call("GET", "/v1/cluster", renewed)).status_code == 401
    gone = await api.call("GET", f"/v1/users/{uid}", ADMIN)
    assert (gone.status_code, gone.json()["error_code"]) == (404, "user_not_found")
