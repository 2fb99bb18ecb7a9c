"""Request bodies of the resource writes: a JSON object, or a 400 that says what is wrong.

The size limit is the bootstrap one (1 MiB, refused before it is all read); a body that is not
UTF-8, not JSON (the message names line and column), nested too deep or not an object is a 400
`invalid_schema`. The fields are then read strictly by `cnm.cluster.fields`.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request

from cnm.api.context import read_body
from cnm.cluster.fields import json_type
from cnm.errors import InvalidSchema


def _reject_constant(name: str) -> Any:
    raise InvalidSchema(f"invalid JSON: {name} is not a JSON number")


def parse_json_object(raw: bytes, *, empty_allowed: bool = False) -> dict[str, Any]:
    """The object in `raw`; with `empty_allowed`, an empty body or `null` is `{}`."""
    try:
        text = raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        raise InvalidSchema(f"request body is not valid UTF-8 (byte offset {exc.start})") from None
    if not text.strip():
        if empty_allowed:
            return {}
        raise InvalidSchema("request body is empty: expected a JSON object")
    try:
        document = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise InvalidSchema(
            f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}",
            line=exc.lineno,
            column=exc.colno,
        ) from None
    except RecursionError:
        raise InvalidSchema("invalid JSON: nested too deep") from None
    except ValueError:
        raise InvalidSchema("invalid JSON: a number has too many digits") from None
    if document is None and empty_allowed:
        return {}
    if not isinstance(document, dict):
        raise InvalidSchema(f"request body must be a JSON object, got {json_type(document)}")
    return document


async def read_json_object(request: Request, *, empty_allowed: bool = False) -> dict[str, Any]:
    return parse_json_object(await read_body(request), empty_allowed=empty_allowed)


def path_uid(text: str) -> int | None:
    """A uid from a path: ASCII digits, at most 10 of them (anything else names no object)."""
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 10 else None
