"""The OpenAPI document itself: what a client generator relies on (the fuzzing of every answer
against it is tests/api/test_openapi_fuzz.py)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from starlette.routing import Route

from cnm.api.app import ApiApp
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


# Routes the app serves that the document leaves out on purpose; every other route must be in it.
# A route added without `**operation(...)` still reaches the document (as its bare operationId) and
# then fails `test_operations_are_exact` (no security, no error bodies); one hidden with
# `include_in_schema=False` fails `test_every_api_route_is_documented_and_nothing_else` until
# it is listed here.
INTERNAL = {
    ("get", "/v1/boostrap"),  # the documentation's misspelling of /v1/bootstrap
    ("get", "/v1/openapi.json"),  # the document itself
    ("get", "/metrics"),  # Prometheus text format, not the JSON API
    ("get", "/"),  # the web console's page and its files
    ("get", "/web/{name}"),
    # cnm-internal: the join handshake between agents (api/join_routes.py)
    ("post", "/v1/join/auth/start"),
    ("post", "/v1/join/auth/finish"),
    ("post", "/v1/join/renew"),
    ("get", "/v1/join/ca"),
    ("post", "/v1/join/time"),
    ("post", "/v1/join/node"),
}
# Actions that take no body (any body is ignored).
NO_BODY = {("post", "/v1/cluster/backup"), ("post", "/v1/nodes/{uid}/actions/remove")}


def _served(app: ApiApp) -> set[tuple[str, str]]:
    """Every (method, path template) the app routes."""
    return {
        (method.lower(), route.path_format)
        for route in app.routes
        if isinstance(route, Route)
        for method in route.methods or ()
    }


async def test_every_api_route_is_documented_and_nothing_else(
    node: Node, document: dict[str, Any]
) -> None:
    served = _served(node.app)
    assert served >= INTERNAL, INTERNAL - served  # no stale entry hides a route added later
    assert {(method, path) for method, path, _ in _operations(document)} == served - INTERNAL


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
            assert allowed == served, (method, path)


async def test_head_is_not_served_by_get_routes(node: Node) -> None:
    # Starlette would answer HEAD on every GET route; the API lists GET only (api/routing.py).
    for path, allow in (("/v1/bootstrap", "GET"), ("/v1/cluster", "GET, PUT"), ("/", "GET")):
        response = await node.client.head(path)
        assert response.status_code == 405, path
        assert response.headers["allow"] == allow, path
