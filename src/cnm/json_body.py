"""The front end of every request body: raw bytes to a JSON object, or one kind of 400.

Every route that takes a body (the bootstrap actions and validate, users POST/PUT, cluster and
policy PUT, license PUT, users/authorize, the join routes) passes its bytes through
`parse_object` before it looks at a field, so a bad body is reported the same way everywhere:

- 413 `payload_too_large` above `MAX_BODY_BYTES`;
- 400 `invalid_schema` for a body that is not UTF-8 (`offset`), empty, not JSON (the message
  and the `line`/`column` details name where), nested deeper than `MAX_JSON_DEPTH`, or not an
  object (`got`);
- 400 `invalid_schema` naming the field (`fields: [path]`) for a string, anywhere in the
  document, that holds a NUL character or an unpaired UTF-16 surrogate: such a string cannot be
  a path, cannot be encoded as UTF-8 for the store or a hash, and would otherwise fail deep
  inside a handler.

The typed reading of fields comes after, and names fields the same way (dotted paths, `[i]` for
list items): pydantic models for the bootstrap object (`cnm.bootstrap.schema`), the strict
readers of `cnm.cluster.fields` for the resource writes.
"""

from __future__ import annotations

import json
import re
from typing import Any

from cnm.errors import InvalidSchema, PayloadTooLarge

MAX_BODY_BYTES = 1_048_576  # 1 MiB: a license and a few PEMs fit with room to spare
MAX_JSON_DEPTH = 64


def parse_object(
    raw: bytes, *, empty_allowed: bool = False, expected: str = "a JSON object"
) -> dict[str, Any]:
    """The JSON object in `raw`. With `empty_allowed`, an empty body or `null` is `{}`;
    `expected` says what the route wants, for the message of an empty body."""
    if len(raw) > MAX_BODY_BYTES:
        raise PayloadTooLarge(
            f"request body is {len(raw)} bytes; the limit is {MAX_BODY_BYTES} bytes (1 MiB)",
            limit=MAX_BODY_BYTES,
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidSchema(
            f"request body is not valid UTF-8 (byte offset {exc.start})", offset=exc.start
        ) from None
    # PowerShell and some Windows tools prefix a BOM; it carries no meaning.
    text = text.removeprefix("\ufeff")
    if not text.strip():
        if empty_allowed:
            return {}
        raise InvalidSchema(f"request body is empty: expected {expected}")
    _check_depth(text)
    document = _load_json(text)
    if document is None and empty_allowed:
        return {}
    if not isinstance(document, dict):
        kind = json_kind(document)
        raise InvalidSchema(f"request body must be a JSON object, got {kind}", got=kind)
    check_strings(document)
    return document


def json_kind(value: object) -> str:
    """The JSON type of a parsed value: null, boolean, number, string, array or object."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def json_type(value: object) -> str:
    """`json_kind` with its article, for messages: "a string", "an array", "null"."""
    kind = json_kind(value)
    if kind == "null":
        return kind
    return ("an " if kind[0] in "aeiou" else "a ") + kind


# --- strings no handler can use -----------------------------------------------------------------

# json.loads turns "\ud83d\ude00" into one character, so a surrogate left in a str is unpaired.
_UNUSABLE_RE = re.compile("[\x00\ud800-\udfff]")


def check_strings(document: Any, path: str = "") -> None:
    """InvalidSchema naming the first string (or field name) with a NUL or a lone surrogate."""
    if isinstance(document, str):
        _check_text(document, path or "body")
    elif isinstance(document, list):
        for index, item in enumerate(document):
            check_strings(item, f"{path}[{index}]")
    elif isinstance(document, dict):
        for key, value in document.items():
            child = f"{path}.{key}" if path else key
            if _UNUSABLE_RE.search(key):
                where = path or "the body"
                raise InvalidSchema(
                    f"a field name in {where} holds {_describe(key)}", fields=[path or "body"]
                )
            check_strings(value, child)


def _check_text(text: str, path: str) -> None:
    if _UNUSABLE_RE.search(text):
        # The value itself is not echoed: it may be a password.
        raise InvalidSchema(f"{path}: expected a string without {_describe(text)}", fields=[path])


def _describe(text: str) -> str:
    found = _UNUSABLE_RE.search(text)
    assert found is not None
    if found.group() == "\x00":
        return "a NUL character"
    # Which surrogate is not said: the string may be a password.
    return "an unpaired UTF-16 surrogate"


# --- syntax -------------------------------------------------------------------------------------

# A JSON string, escapes included; an unterminated one runs to the end (json.loads reports it).
_STRING_RE = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?', re.DOTALL)
_BRACKET_RE = re.compile(r"[\[\]{}]")


def _check_depth(text: str) -> None:
    # json.loads recurses per level and dies with RecursionError near 1000 levels; count the
    # brackets outside strings first, in linear time, stopping as soon as the limit is passed.
    depth = 0
    for match in _BRACKET_RE.finditer(_STRING_RE.sub("", text)):
        if match.group() in "[{":
            depth += 1
            if depth > MAX_JSON_DEPTH:
                raise InvalidSchema(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
        else:
            depth -= 1


def _reject_constant(name: str) -> Any:
    raise InvalidSchema(f"invalid JSON: {name} is not a JSON number", constant=name)


def _load_json(text: str) -> Any:
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        message = f"invalid JSON at line {exc.lineno}, column {exc.colno}: {_lower_first(exc.msg)}"
        raise InvalidSchema(
            message + _missing_comma_hint(exc), line=exc.lineno, column=exc.colno
        ) from None
    except ValueError:
        # Python refuses integers of more than 4300 digits (int_max_str_digits).
        raise InvalidSchema("invalid JSON: a number has too many digits") from None


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


def _missing_comma_hint(exc: json.JSONDecodeError) -> str:
    # Python points at the token after the gap; when that is on a later line, the comma belongs
    # at the end of the previous value's line, which is where the operator should look.
    if exc.msg != "Expecting ',' delimiter":
        return ""
    before = exc.doc[: exc.pos].rstrip()
    line = before.count("\n") + 1
    if line == exc.lineno:
        return ""
    return f" (is a ',' missing at the end of line {line}?)"
