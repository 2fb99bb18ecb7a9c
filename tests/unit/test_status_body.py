"""The cached body of GET /v1/bootstrap (api/status_body.py): reused only while nothing it
shows can have changed."""

from __future__ import annotations

import json
from typing import Any

from cnm.api.status_body import StatusBody


class Clock:
    def __init__(self) -> None:
        self.now = 100.0
        self.uptime = 5000

    def monotonic(self) -> float:
        return self.now

    def up(self) -> int:
        return self.uptime


def _body() -> tuple[StatusBody, Clock, list[int]]:
    clock = Clock()
    return StatusBody(max_age=1.0, clock=clock.monotonic, uptime_of=clock.up), clock, []


def _build(builds: list[int], value: Any = "x") -> Any:
    def build() -> dict[str, Any]:
        builds.append(1)
        return {"b": value, "a": [1, 2]}

    return build


def test_compact_sorted_bytes() -> None:
    body, _, builds = _body()
    assert body.render((None,), _build(builds)) == b'{"a":[1,2],"b":"x"}'


def test_reused_within_the_second_rebuilt_after() -> None:
    body, clock, builds = _body()
    status = object()
    body.render((status,), _build(builds))
    clock.now += 0.5
    body.render((status,), _build(builds))
    assert len(builds) == 1
    clock.now += 0.6
    body.render((status,), _build(builds))
    assert len(builds) == 2


def test_new_uptime_second_rebuilds_at_once() -> None:
    body, clock, builds = _body()
    status = object()
    body.render((status,), _build(builds))
    clock.uptime += 1
    body.render((status,), _build(builds))
    assert len(builds) == 2


def test_new_status_record_shows_at_once() -> None:
    body, _, builds = _body()
    first = body.render((object(),), _build(builds, "idle"))
    second = body.render((object(),), _build(builds, "completed"))
    assert json.loads(second)["b"] == "completed" and first != second
