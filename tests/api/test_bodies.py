"""Every route with a body answers a bad one the same way (docs/api-contract.md §2).

Bad JSON is a 400 `invalid_schema` with `line` and `column`; a wrongly typed field, or a string
holding a NUL character or an unpaired surrogate, is a 400 `invalid_schema` whose `fields` names
it. None of them is ever a 500, and none changes anything.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from harness.addresses import claim_address, release_address
from harness.agents import basic
from harness.api_node import Node, node_config, running_node
from harness.bodies import ADMIN, create_body, join_body

BAD_JSON = b'{"a": 1,\n "b": }'  # line 2, column 7

BOOTSTRAP_ROUTES = [
    "/v1/bootstrap/create_cluster",
    "/v1/bootstrap/join_cluster",
    "/v1/bootstrap/validate/create_cluster",
    "/v1/bootstrap/validate/join_cluster",
]

# Unusable strings: each must be refused naming the field, wherever it is.
NUL = "/var/opt/x\x00y"
SURROGATE = "ab\ud800cd"


def invalid_schema(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 400, response.text
    body: dict[str, Any] = response.json()
    assert body["error_code"] == "invalid_schema", body
    assert body["description"]
    return body


def assert_bad_json(response: httpx.Response) -> None:
    body = invalid_schema(response)
    assert (body["line"], body["column"]) == (2, 7), body
    assert "line 2, column 7" in body["description"]


def assert_names(response: httpx.Response, field: str, *, secret: str | None = None) -> None:
    body = invalid_schema(response)
    assert body["fields"] == [field], body
    assert body["description"].startswith(field) or field in body["description"]
    # Nothing of an unusable string is echoed: it may be a password.
    assert "\\ud800" not in response.text and "\\u0000" not in response.text
    if secret is not None:
        assert json.dumps(secret)[1:-1] not in response.text


def raw(document: Any) -> bytes:
    # json.dumps escapes the surrogate as \ud800, which is how a client would send it.
    return json.dumps(document).encode()


def bootstrap_body(path: str, **changes: Any) -> dict[str, Any]:
    base = join_body(["127.0.0.1"]) if path.endswith("join_cluster") else create_body()
    return {**base, **changes}


@pytest.mark.parametrize("path", BOOTSTRAP_ROUTES)
async def test_bootstrap_routes_bad_json_and_wrong_types(node: Node, path: str) -> None:
    assert_bad_json(await node.client.post(path, content=BAD_JSON))
    wrong = bootstrap_body(path, cluster={"name": 5, "nodes": ["127.0.0.1"]})
    assert_names(await node.client.post(path, content=raw(wrong)), "cluster.name")
    assert node.file_status() is None or node.file_status() == {}  # nothing recorded
    assert (await node.bootstrap_status())["state"] == "idle"


@pytest.mark.parametrize("path", BOOTSTRAP_ROUTES)
@pytest.mark.parametrize(
    ("field", "changes"),
    [
        ("node.paths.persistent_path", {"node": {"paths": {"persistent_path": NUL}}}),
        ("node.paths.ccs_persistent_path", {"node": {"paths": {"ccs_persistent_path": NUL}}}),
        ("node.paths.bigstore_path", {"node": {"paths": {"bigstore_path": SURROGATE}}}),
        ("credentials.password", {"credentials": {"username": "a@b.c", "password": SURROGATE}}),
        ("credentials.username", {"credentials": {"username": NUL, "password": "x" * 10}}),
        ("cluster.nodes[1]", {"cluster": {"name": "c1.example.com", "nodes": ["a", NUL]}}),
        ("license", {"license": SURROGATE}),
        ("dns_suffixes[0].name", {"dns_suffixes": [{"name": SURROGATE}]}),
    ],
)
async def test_bootstrap_routes_refuse_nul_and_lone_surrogates(
    node: Node, path: str, field: str, changes: dict[str, Any]
) -> None:
    response = await node.client.post(path, content=raw(bootstrap_body(path, **changes)))
    assert_names(response, field, secret=SURROGATE if "password" in field else None)
    assert (await node.bootstrap_status())["state"] == "idle"


async def test_a_field_name_with_a_nul_names_its_object(node: Node) -> None:
    body = create_body()
    body["node"] = {"paths": {"bad\x00key": "x"}}
    assert_names(await node.client.post(BOOTSTRAP_ROUTES[0], content=raw(body)), "node.paths")


# --- after bootstrap: the resource writes and the join routes -----------------------------------


@pytest.fixture
async def cluster_node(tmp_path: Path) -> AsyncIterator[Node]:
    """A node that created a cluster for real (a real etcd member on an address of its own)."""
    etcd = shutil.which("etcd")
    assert etcd is not None
    addr = claim_address()
    try:
        async with running_node(node_config(tmp_path, addr=addr, etcd_binary=etcd)) as node:
            assert (
                await node.client.post(BOOTSTRAP_ROUTES[0], json=create_body())
            ).status_code == 200
            status = await node.wait_state("completed", "error", timeout=20, headers=basic(*ADMIN))
            assert status["state"] == "completed", status
            yield node
    finally:
        release_address(addr)


USER = {"email": "new.user@example.com", "password": "password1", "role": "none"}
# Each route with a body: a wrongly typed field and an unusable string, each with the field named.
ROUTES: list[tuple[str, str, list[tuple[dict[str, Any], str]]]] = [
    ("PUT", "/v1/cluster", [({"wait_command": "yes"}, "wait_command"), ({"name": NUL}, "name")]),
    (
        "PUT",
        "/v1/cluster/policy",
        [
            ({"shards_overbooking": "no"}, "shards_overbooking"),
            ({"default_sharded_proxy_policy": SURROGATE}, "default_sharded_proxy_policy"),
        ],
    ),
    (
        "POST",
        "/v1/users",
        [
            ({**USER, "email": ["a"]}, "email"),
            ({**USER, "name": SURROGATE}, "name"),
            ({**USER, "email": "a\x00@example.com"}, "email"),
            ({**USER, "password": SURROGATE * 9}, "password"),
        ],
    ),
    (
        "PUT",
        "/v1/users/1",
        [
            ({"email_alerts": "yes"}, "email_alerts"),
            ({"name": SURROGATE}, "name"),
            ({"password": NUL}, "password"),
        ],
    ),
    ("PUT", "/v1/license", [({"license": 7}, "license"), ({"license": SURROGATE}, "license")]),
    (
        "POST",
        "/v1/users/authorize",
        [({"ttl": "300"}, "ttl"), ({"username": SURROGATE, "password": "x"}, "username")],
    ),
    ("POST", "/v1/join/time", [({"t1": "now"}, "t1"), ({"t1": 1.0, "x": [NUL]}, "x[0]")]),
    ("POST", "/v1/join/node", [({"addr": SURROGATE}, "addr")]),
]


async def test_every_resource_route_answers_a_bad_body_the_same_way(cluster_node: Node) -> None:
    node = cluster_node
    auth = basic(*ADMIN)
    before = {
        path: (await node.client.get(path, headers=auth)).text
        for path in ("/v1/cluster", "/v1/users")
    }
    for method, path, cases in ROUTES:
        assert_bad_json(await node.client.request(method, path, content=BAD_JSON, headers=auth))
        for body, field in cases:
            response = await node.client.request(method, path, content=raw(body), headers=auth)
            assert_names(response, field, secret=SURROGATE if field == "password" else None)
    after = {path: (await node.client.get(path, headers=auth)).text for path in before}
    assert after == before
