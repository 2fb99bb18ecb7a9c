"""The body front end: the one parse every route's body goes through."""

from __future__ import annotations

import pytest

from cnm.errors import InvalidSchema, PayloadTooLarge
from cnm.json_body import MAX_BODY_BYTES, parse_object


@pytest.mark.parametrize(
    ("raw", "field", "what"),
    [
        (b'{"a": "x\\u0000"}', "a", "NUL"),
        (b'{"a": {"b": ["ok", "\\ud800"]}}', "a.b[1]", "surrogate"),
        (b'{"a": [{"b": "\\udfff tail"}]}', "a[0].b", "surrogate"),
        (b'{"a": {"k\\u0000": 1}}', "a", "field name"),
        (b'{"\\ud800": 1}', "body", "field name"),
    ],
)
def test_unusable_strings_name_their_field(raw: bytes, field: str, what: str) -> None:
    with pytest.raises(InvalidSchema) as caught:
        parse_object(raw)
    assert caught.value.details["fields"] == [field]
    assert what in caught.value.message


def test_paired_surrogates_and_other_controls_are_text() -> None:
    assert parse_object(b'{"a": "\\ud83d\\ude00 \\u0001 \\t"}') == {"a": "\U0001f600 \x01 \t"}


@pytest.mark.parametrize(
    ("raw", "details"),
    [
        (b'{"a": 1,}', {"line": 1, "column": 9}),
        (b"[1]", {"got": "array"}),
        (b"\xff{}", {"offset": 0}),
        (b'{"a": NaN}', {"constant": "NaN"}),
    ],
)
def test_syntax_errors_carry_where(raw: bytes, details: dict[str, object]) -> None:
    with pytest.raises(InvalidSchema) as caught:
        parse_object(raw)
    assert caught.value.details == details


def test_empty_bodies() -> None:
    assert parse_object(b"", empty_allowed=True) == {}
    assert parse_object(b"null", empty_allowed=True) == {}
    with pytest.raises(InvalidSchema, match="expected the thing"):
        parse_object(b" ", expected="the thing")
    with pytest.raises(PayloadTooLarge):
        parse_object(b" " * (MAX_BODY_BYTES + 1))
