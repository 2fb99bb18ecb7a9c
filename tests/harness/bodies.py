"""Request bodies shared by the API and cluster tests."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

ADMIN = ("admin@example.com", "s3cret-pass")


def create_body(
    name: str = "c1.example.com", admin: tuple[str, str] = ADMIN, **extra: Any
) -> dict[str, Any]:
    """A create_cluster body: cluster `name`, credentials `admin`, and any other top-level keys."""
    body: dict[str, Any] = {
        "action": "create_cluster",
        "cluster": {"name": name},
        "credentials": {"username": admin[0], "password": admin[1]},
    }
    body.update(extra)
    return body


def join_body(nodes: Sequence[str], admin: tuple[str, str] = ADMIN, **extra: Any) -> dict[str, Any]:
    """A join_cluster body through `nodes`, credentials `admin`, and any other top-level keys."""
    body: dict[str, Any] = {
        "action": "join_cluster",
        "cluster": {"nodes": list(nodes)},
        "credentials": {"username": admin[0], "password": admin[1]},
    }
    body.update(extra)
    return body
