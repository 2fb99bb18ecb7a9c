"""The API side of request bodies: read a request's body into a JSON object.

The body is read with the size limit (refused before it is all read, `context.read_body`) and
handed to `cnm.json_body.parse_object`, the one front end every route's body passes through; the
fields are then read strictly by `cnm.cluster.fields` (resource writes) or the bootstrap schema.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from cnm.api.context import read_body
from cnm.json_body import parse_object


async def read_json_object(request: Request, *, empty_allowed: bool = False) -> dict[str, Any]:
    """The request's body as a JSON object; with `empty_allowed`, no body (or `null`) is `{}`."""
    return parse_object(await read_body(request), empty_allowed=empty_allowed)


def path_uid(text: str) -> int | None:
    """A uid from a path: ASCII digits, at most 10 of them (anything else names no object)."""
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 10 else None
