"""Waiting for state with a deadline instead of sleeping: `eventually(check, timeout)`."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class Timeout(AssertionError):
    pass


def eventually(
    check: Callable[[], T | None],
    *,
    timeout: float = 10.0,
    interval: float = 0.02,
    message: str = "condition",
) -> T:
    """Call `check` until it returns something truthy (returned) or the deadline passes. An
    exception from `check` counts as "not yet"; the last one is reported on timeout."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    last_value: object = None
    while True:
        try:
            value = check()
            if value:
                return value
            last_value = value
        except Exception as exc:
            last_error = exc
        if time.monotonic() > deadline:
            detail = f"last error: {last_error!r}" if last_error else f"last value: {last_value!r}"
            raise Timeout(f"{message} not reached within {timeout} s; {detail}")
        time.sleep(interval)
