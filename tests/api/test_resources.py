"""The resource writes on the ASGI app before bootstrap: 503 `no_cluster`, whatever the body."""

from __future__ import annotations

import pytest

from harness.agents import basic
from harness.api_node import Node

WRITES = [
    ("PUT", "/v1/cluster"),
    ("PUT", "/v1/cluster/policy"),
    ("GET", "/v1/cluster/policy"),
    ("POST", "/v1/users"),
    ("PUT", "/v1/users/1"),
    ("DELETE", "/v1/users/1"),
    ("PUT", "/v1/license"),
    ("POST", "/v1/users/authorize"),
    ("POST", "/v1/users/refresh_jwt"),
]


@pytest.mark.parametrize(("method", "path"), WRITES)
@pytest.mark.parametrize(
    "body", [b"", b"{", b'{"ttl": 5}', b"[]"], ids=["empty", "bad", "ok", "list"]
)
async def test_writes_before_bootstrap_are_503_no_cluster(
    node: Node, method: str, path: str, body: bytes
) -> None:
    for headers in ({}, basic("admin@example.com", "whatever"), {"Authorization": "JWT a.b.c"}):
        response = await node.client.request(method, path, content=body, headers=headers)
        assert response.status_code == 503, response.text
        assert response.json()["error_code"] == "no_cluster"
    assert node.manager.runtime is None
