"""The JSON log format: one object per line, and the machine-readable events tools rely on."""

from __future__ import annotations

import json
import logging

import pytest

from cnm.logs import EVENTS, _JsonFormatter, _TextFormatter, event


def _record(
    message: str, *args: object, extra: dict[str, object] | None = None
) -> logging.LogRecord:
    logger = logging.getLogger("cnm.test")
    return logger.makeRecord(
        "cnm.test", logging.INFO, __file__, 1, message, args, None, extra=extra
    )


def test_an_event_is_a_name_and_fields_beside_the_message() -> None:
    line = _JsonFormatter("127.0.0.2").format(
        _record("joined as node %d", 7, extra=event("joined", uid=7, member="127.0.0.9"))
    )
    document = json.loads(line)
    assert document["message"] == "joined as node 7"
    assert document["event"] == "joined"
    assert (document["uid"], document["member"]) == (7, "127.0.0.9")
    assert document["node"] == "127.0.0.2" and document["level"] == "info"


def test_a_plain_line_has_no_event_and_text_never_shows_one() -> None:
    document = json.loads(_JsonFormatter("127.0.0.2").format(_record("hello")))
    assert "event" not in document
    text = _TextFormatter("127.0.0.2").format(_record("hi", extra=event("https_switched")))
    assert text.endswith("INFO cnm.test: hi")


def test_only_listed_events_can_be_logged() -> None:
    assert "store_voter" in EVENTS
    with pytest.raises(AssertionError):
        event("no_such_event")
