"""Compact JSON responses: `{"a":1}`, keys sorted, no spaces (docs/api-contract.md §1).

One client searches the raw body for `"name":"<cluster>"`, so the separators matter.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from starlette.responses import JSONResponse, Response


def compact_bytes(content: Any) -> bytes:
    return json.dumps(
        content, separators=(",", ":"), sort_keys=True, ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


class CompactJSONResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return compact_bytes(content)


def compact(
    content: Any, status_code: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    return CompactJSONResponse(content, status_code=status_code, headers=headers)


def json_bytes(body: bytes, status_code: int = 200) -> Response:
    """An answer whose compact JSON body is already rendered (`compact_bytes`)."""
    return Response(body, status_code=status_code, media_type=JSONResponse.media_type)


def empty_ok() -> Response:
    """POST bootstrap answers exactly 200 with an empty body: scripts run `jq` on it."""
    return Response(status_code=200, content=b"")
