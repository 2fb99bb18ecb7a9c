"""The OpenAPI document itself: what a client generator relies on (the fuzzing of every answer
against it is tests/api/test_openapi_fuzz.py)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from harness.api_node import Node

METHODS = ("get", "put", "post", "delete", "patch")


@pytest.fixture
async def document(node: Node) -> dict[str, Any]:
    response = await node.client.get("/v1/openapi.json")
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, op)
        for path, methods in document["paths"].items()
        for method, op in methods.items()
    ]


API = {
    ("get", "/v1/bootstrap"),
    ("post", "/v1/bootstrap/{action}"),
    ("post", "/v1/bootstrap/validate/{action}"),
    ("get", "/v1/cluster"),
    ("put", "/v1/cluster"),
    ("get", "/v1/cluster/policy"),
    ("put", "/v1/cluster/policy"),
    ("get", "/v1/cluster/check"),
    ("get", "/v1/nodes"),
    ("get", "/v1/nodes/status"),
    ("get", "/v1/nodes/{uid}"),
    ("get", "/v1/license"),
    ("put", "/v1/license"),
    ("get", "/v1/users"),
    ("post", "/v1/users"),
    ("get", "/v1/users/{uid}"),
    ("put", "/v1/users/{uid}"),
    ("delete", "/v1/users/{uid}"),
    ("post", "/v1/users/authorize"),
    ("post", "/v1/users/refresh_jwt"),
    # cnm extensions
    ("post", "/v1/cluster/backup"),
    ("post", "/v1/nodes/{uid}/actions/remove"),
    ("get", "/v1/users/{uid}/sign_in_failures"),
    ("post", "/v1/users/{uid}/unlock"),
}
# Actions that take no body (any body is ignored).
NO_BODY = {("post", "/v1/cluster/backup"), ("post", "/v1/nodes/{uid}/actions/remove")}


async def test_every_api_route_is_documented_and_nothing_else(document: dict[str, Any]) -> None:
    # Not documented: the cnm-internal join routes, the web console, /metrics (Prometheus text)
    # and the documentation's misspelling /v1/boostrap.
    assert {(method, path) for method, path, _ in _operations(document)} == API


async def test_operations_are_exact(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    assert "HTTPValidationError" not in schemas
    ids = [op["operationId"] for _, _, op in _operations(document)]
    assert len(ids) == len(set(ids)) and "get_user" in ids
    for method, path, op in _operations(document):
        where = f"{method} {path}"
        responses = op["responses"]
        assert "422" not in responses, where
        assert op["security"], where
        for status, response in responses.items():
            if status != "200":
                assert response["content"]["application/json"]["schema"]["$ref"], where
        if method in ("put", "post") and (method, path) not in NO_BODY:
            assert op["requestBody"]["content"]["application/json"]["schema"], where
            assert "413" in responses and "400" in responses, where
        if "{" in path:
            assert "404" in responses, where
    action = document["paths"]["/v1/bootstrap/{action}"]["post"]["parameters"][0]
    assert action["schema"]["enum"] == ["create_cluster", "join_cluster", "recover_cluster"]
    schemes = document["components"]["securitySchemes"]
    assert schemes["basic"] == {**schemes["basic"], "type": "http", "scheme": "basic"}
    assert schemes["jwt"]["type"] == "apiKey" and schemes["jwt"]["name"] == "Authorization"


async def test_the_bootstrap_object_has_its_fields_types_and_limits(
    document: dict[str, Any],
) -> None:
    schemas = document["components"]["schemas"]
    body = schemas["BootstrapRequest"]["properties"]
    assert set(body) >= {"action", "cluster", "credentials", "node", "policy", "license"}
    identity = schemas["Identity"]["properties"]
    uid = identity["uid"]["anyOf"][0]
    assert uid == {"type": "integer", "minimum": 0, "maximum": 2**31 - 1}
    port = body["cnm_https_port"]["anyOf"][0]
    assert (port["minimum"], port["maximum"]) == (1, 65535)
    nodes = schemas["ClusterSpec"]["properties"]["nodes"]["anyOf"]
    assert [option["type"] for option in nodes] == ["array", "string", "null"]
    driver = schemas["NodeSpec"]["properties"]["bigstore_driver"]["anyOf"][0]
    assert driver["enum"] == ["rocksdb", "speedb"]


async def test_a_method_a_path_does_not_list_is_405_with_allow(
    node: Node, document: dict[str, Any]
) -> None:
    templates = [
        (re.compile(re.sub(r"\{\w+\}", "[^/]+", path) + "$"), methods)
        for path, methods in document["paths"].items()
    ]
    for path in document["paths"]:
        url = path.replace("{action}", "create_cluster").replace("{uid}", "1")
        for method in METHODS:
            # GET /v1/users/authorize is GET /v1/users/{uid} with a uid that is no uid.
            if any(method in other and pattern.match(url) for pattern, other in templates):
                continue
            response = await node.client.request(method.upper(), url)
            assert response.status_code == 405, (method, path, response.text)
            assert response.json()["error_code"] == "method_not_allowed"
            allowed = {m.strip().lower() for m in response.headers["allow"].split(",")}
            served = {m for pattern, other in templates if pattern.match(url) for m in other}
            assert allowed - {"head"} == served, (method, path)
