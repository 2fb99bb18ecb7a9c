"""The web console's routes on the ASGI app: the page and its files, served without
credentials, with the page's Content-Security-Policy; and the security headers every API
answer carries (no-store, nosniff, no framing, no referrer)."""

from __future__ import annotations

import re

import pytest

from cnm.web import ASSETS
from harness.api_node import Node

SECURITY_HEADERS = {
    "cache-control": "no-store",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}


def csp_directives(header: str) -> dict[str, str]:
    return {
        part.strip().split(" ", 1)[0]: part.strip().partition(" ")[2]
        for part in header.split(";")
        if part.strip()
    }


async def test_the_page_is_served_at_root_with_a_strict_csp(node: Node) -> None:
    response = await node.client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    csp = csp_directives(response.headers["content-security-policy"])
    assert csp["default-src"] == "'none'"
    assert csp["script-src"] == "'self'"
    assert csp["style-src"] == "'self'"
    assert csp["connect-src"] == "'self'"
    assert csp["frame-ancestors"] == "'none'"
    assert "unsafe" not in response.headers["content-security-policy"]
    for name, value in SECURITY_HEADERS.items():
        assert response.headers[name] == value, name


async def test_the_page_has_no_inline_script_style_or_handlers(node: Node) -> None:
    html = (await node.client.get("/")).text
    assert re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html) is None
    assert "<style" not in html
    assert re.search(r"\sstyle=", html) is None
    assert re.search(r"\son[a-z]+=", html) is None
    # Everything it loads is served by the agent itself.
    assert re.search(r"(src|href)=\"(https?:)?//", html) is None


@pytest.mark.parametrize("name", sorted(ASSETS))
async def test_every_asset_is_served_with_its_type(node: Node, name: str) -> None:
    response = await node.client.get(f"/web/{name}")
    assert response.status_code == 200
    assert response.headers["content-type"] == ASSETS[name]
    assert response.headers["x-content-type-options"] == "nosniff"
    assert len(response.content) > 100


@pytest.mark.parametrize("name", ["nope.js", "..%2Fapp.py", "%2E%2E%2F__init__.py", "static"])
async def test_an_unknown_asset_is_a_json_404(node: Node, name: str) -> None:
    response = await node.client.get(f"/web/{name}")
    assert response.status_code == 404
    assert response.json()["error_code"] == "not_found"


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/v1/bootstrap"), ("GET", "/v1/cluster"), ("POST", "/v1/bootstrap/validate/x")],
)
async def test_api_answers_carry_the_security_headers(node: Node, method: str, path: str) -> None:
    response = await node.client.request(method, path)
    for name, value in SECURITY_HEADERS.items():
        assert response.headers[name] == value, (path, name)
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]


async def test_a_post_answer_stays_empty_with_the_headers(node: Node) -> None:
    # The headers never change a body: POST answers stay exactly empty (api-contract §7).
    response = await node.client.post(
        "/v1/bootstrap/validate/create_cluster",
        json={
            "cluster": {"name": "c1.example.com"},
            "credentials": {"username": "a@b.c", "password": "a-long-secret"},
        },
    )
    assert response.status_code == 200, response.text
    assert response.content == b""
    assert response.headers["cache-control"] == "no-store"
