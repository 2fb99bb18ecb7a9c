"""Waiting for state with a deadline instead of sleeping: `eventually(check, timeout)`, and
`eventually_async` for a check that needs the running event loop to move on."""

from __future__ import annotations

import asyncio
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


async def eventually_async(
    check: Callable[[], object], *, timeout: float = 5.0, message: str = "condition"
) -> None:
    """Await until `check()` is truthy, yielding to the event loop between looks."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise Timeout(f"{message} not reached within {timeout} s")
        await asyncio.sleep(0.01)
