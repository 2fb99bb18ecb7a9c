"""A client that goes away mid-request is no server error (seen when a joiner is killed)."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from harness.api_node import Node


async def test_disconnect_before_the_body_is_not_a_500(
    node: Node, caplog: pytest.LogCaptureFixture
) -> None:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/bootstrap/create_cluster",
        "raw_path": b"/v1/bootstrap/create_cluster",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json"), (b"content-length", b"100")],
        "client": ("127.0.0.9", 5000),
        "server": ("127.0.0.1", 8080),
    }
    with caplog.at_level(logging.INFO):
        await node.app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    assert start["status"] == 400
    assert "please report" not in caplog.text
    assert "disconnected" in caplog.text
    # Nothing was accepted: the node is still idle.
    status = (await node.client.get("/v1/bootstrap")).json()["bootstrap_status"]
    assert status["state"] == "idle"
