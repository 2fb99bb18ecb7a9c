"""Reading the timeline of a run from the logs: the agents' JSON log events, and etcd's log.

An agent started with `--log-format json` writes one JSON object per line; the lines that mark a
step carry `"event"` and their fields as top-level keys (cnm.logs.EVENTS lists them). The
benchmarks read those and the `time` stamp (milliseconds), never the wording of a message, so
messages stay free to change. etcd's own log (zap JSON, `ts` stamp) is read by its `msg` field:
etcd gives no other handle on "the first request through the gateway".
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnm.logs import BASE_KEYS


@dataclass(frozen=True)
class LogEvent:
    time: float  # epoch seconds
    name: str
    fields: dict[str, Any] = field(default_factory=dict)


def _json_lines(path: Path) -> list[dict[str, Any]]:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return []
    found = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            found.append(record)
    return found


def _stamp(record: Mapping[str, Any], key: str) -> float | None:
    try:
        return datetime.datetime.fromisoformat(str(record[key])).timestamp()
    except (KeyError, ValueError):
        return None


def log_events(path: Path) -> list[LogEvent]:
    """Every event of an agent's JSON log, in the order written."""
    events = []
    for record in _json_lines(path):
        stamp = _stamp(record, "time")
        name = record.get("event")
        if stamp is None or not isinstance(name, str):
            continue
        # An event's fields are the line's keys besides the ones every line has.
        fields = {key: value for key, value in record.items() if key not in BASE_KEYS}
        events.append(LogEvent(stamp, name, fields))
    return events


Match = Callable[[LogEvent], bool]


def is_event(name: str, **fields: Any) -> Match:
    """Matches the event `name` whose fields include `fields`."""
    return lambda event: (
        event.name == name and all(event.fields.get(key) == value for key, value in fields.items())
    )


def bootstrap_state(state: str) -> Match:
    """Matches the bootstrap state change to `state`."""
    return is_event("bootstrap_transition", state=state)


def event_times(path: Path, wanted: Mapping[str, Match]) -> dict[str, float]:
    """Wall-clock time (epoch seconds) of the first event of the agent's log that each matcher
    of `wanted` accepts, by the matcher's name; names no event matched are absent."""
    found: dict[str, float] = {}
    for event in log_events(path):
        for name, match in wanted.items():
            if name not in found and match(event):
                found[name] = event.time
    return found


def etcd_log_times(path: Path, markers: Mapping[str, str]) -> dict[str, float]:
    """Wall-clock time of the first line of etcd's log whose `msg` contains each marker."""
    found: dict[str, float] = {}
    for record in _json_lines(path):
        stamp = _stamp(record, "ts")
        if stamp is None:
            continue
        message = str(record.get("msg", ""))
        for name, marker in markers.items():
            if name not in found and marker in message:
                found[name] = stamp
    return found
