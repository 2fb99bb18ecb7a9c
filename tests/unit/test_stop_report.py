"""A stop that takes long says what it waits for (daemon.py `_report_unfinished`): each task
still running, by name, with the innermost line it waits at, again and again until it ends."""

from __future__ import annotations

import asyncio
import logging

import pytest

from cnm import daemon
from cnm.daemon import _report_unfinished, _stop_reports


async def _hangs() -> None:
    await asyncio.Event().wait()  # the line a report must name


async def _outer() -> None:
    await _hangs()


def _line_of_hangs() -> int:
    return _hangs.__code__.co_firstlineno + 1


async def test_the_report_names_each_unfinished_task_and_its_innermost_wait(
    caplog: pytest.LogCaptureFixture,
) -> None:
    task = asyncio.create_task(_outer(), name="store-close")
    await asyncio.sleep(0)  # let it reach its await
    try:
        with caplog.at_level(logging.WARNING, logger="cnm.daemon"):
            _report_unfinished(7.0)
        (message,) = [r.getMessage() for r in caplog.records]
        assert "still stopping after 7 s" in message
        # Not the task's own frame (_outer): the coroutine it awaits.
        assert f"store-close at {__file__}:{_line_of_hangs()}" in message, message
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def _generator_that_hangs() -> object:
    await asyncio.Event().wait()
    yield None


async def test_a_task_stepping_an_async_generator_is_named_at_its_async_for(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def consume() -> None:
        async for _ in _generator_that_hangs():  # the line a report must name
            pass

    task = asyncio.create_task(consume(), name="watch")
    await asyncio.sleep(0)
    try:
        with caplog.at_level(logging.WARNING, logger="cnm.daemon"):
            _report_unfinished(1.0)
        (message,) = [r.getMessage() for r in caplog.records]
        assert f"watch at {__file__}:{consume.__code__.co_firstlineno + 1}" in message, message
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_reports_repeat_until_cancelled(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(daemon, "STOP_REPORT_AFTER", 0.01)
    with caplog.at_level(logging.WARNING, logger="cnm.daemon"):
        reports = _stop_reports(asyncio.get_running_loop())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while len(caplog.records) < 2:
            assert loop.time() < deadline, "a second report never came"
            await asyncio.sleep(0.01)
        reports.cancel()
        seen = len(caplog.records)
        await asyncio.sleep(0.05)
    assert len(caplog.records) == seen  # none after the cancel


async def test_a_task_that_lost_its_cancellation_is_cancelled_again(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As asyncio.wait_for lost one on Python 3.11: the first cancellation is swallowed."""
    monkeypatch.setattr(daemon, "RECANCEL_AFTER", 0.01)
    swallowed = asyncio.Event()

    async def loses_one_cancellation() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            swallowed.set()  # lost: the task goes on as if nothing happened
        await asyncio.Event().wait()

    stuck = asyncio.create_task(loses_one_cancellation(), name="snapshot")
    await asyncio.sleep(0)
    stuck.cancel()
    await swallowed.wait()
    with caplog.at_level(logging.WARNING, logger="cnm.daemon"):
        # Kept: the task that waits for the others (here this test's, the agent's main task).
        recancel = daemon._recanceller(asyncio.get_running_loop(), keep=asyncio.current_task())
        try:
            async with asyncio.timeout(5):
                await asyncio.wait([stuck])
        finally:
            recancel.cancel()
    assert stuck.cancelled()
    assert any(
        "cancelled again" in r.getMessage() and "snapshot" in r.getMessage() for r in caplog.records
    )
