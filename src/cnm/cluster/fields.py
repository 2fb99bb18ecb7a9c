"""Typed reading of the fields of a request body (a JSON object from `cnm.json_body`), strictly.

The resource writes (users, cluster settings, license) read their bodies with these instead of
trusting types: an integer is a JSON integer (never `true`, `1.0` or `"1"`), a boolean is
`true`/`false`, strings and lists are bounded. A wrong field is a 400 `invalid_schema` whose
message and `fields` detail name it; a JSON `null` means the same as an absent field. Values that
may be secrets (passwords, license text) are never echoed back.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from cnm.errors import InvalidSchema
from cnm.json_body import json_type

MAX_INT32 = 2**31 - 1


def _wrong(field: str, expected: str, value: object, *, secret: bool = False) -> InvalidSchema:
    got = json_type(value)
    if not secret and isinstance(value, int | float) and not isinstance(value, bool):
        text = repr(value)
        got = text if len(text) <= 20 else f"a {len(text)}-digit number"
    return InvalidSchema(f"{field}: expected {expected}, got {got}", fields=[field])


def string(
    body: Mapping[str, Any],
    field: str,
    *,
    max_chars: int,
    min_chars: int = 0,
    required: bool = False,
    secret: bool = False,
) -> str | None:
    value = body.get(field)
    if value is None:
        if required:
            raise InvalidSchema(f"{field}: required", fields=[field])
        return None
    if not isinstance(value, str):
        raise _wrong(field, "a string", value, secret=secret)
    if len(value) > max_chars:
        raise InvalidSchema(
            f"{field}: expected a string of at most {max_chars} characters, got {len(value)}",
            fields=[field],
        )
    if len(value) < min_chars:
        raise InvalidSchema(
            f"{field}: expected a string of at least {min_chars} characters", fields=[field]
        )
    return value


def boolean(body: Mapping[str, Any], field: str) -> bool | None:
    value = body.get(field)
    if value is None:
        return None
    if not isinstance(value, bool):
        raise _wrong(field, "a boolean (true or false)", value)
    return value


def integer(
    body: Mapping[str, Any], field: str, *, minimum: int = 0, maximum: int = MAX_INT32
) -> int | None:
    value = body.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise _wrong(field, f"an integer between {minimum} and {maximum}", value)
    return value


def choice(body: Mapping[str, Any], field: str, choices: Collection[str]) -> str | None:
    value = body.get(field)
    if value is None:
        return None
    if not isinstance(value, str) or value not in choices:
        shown = f'"{value}"' if isinstance(value, str) and len(value) <= 40 else None
        got = shown or json_type(value)
        raise InvalidSchema(
            f"{field}: expected one of {', '.join(sorted(choices))}, got {got}", fields=[field]
        )
    return value


def integer_list(body: Mapping[str, Any], field: str, *, max_items: int = 100) -> list[int] | None:
    value = body.get(field)
    if value is None:
        return None
    if (
        not isinstance(value, list)
        or len(value) > max_items
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        raise InvalidSchema(
            f"{field}: expected a list of at most {max_items} integers", fields=[field]
        )
    return list(value)
