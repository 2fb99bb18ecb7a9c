"""A stop that takes long says what it waits for (daemon.py `_report_unfinished`): each task
still running, by name, with the line it waits at."""

from __future__ import annotations

import asyncio
import logging

import pytest

from cnm.daemon import _report_unfinished


async def _hangs() -> None:
    await asyncio.Event().wait()


async def test_the_report_names_each_unfinished_task_and_where_it_waits(
    caplog: pytest.LogCaptureFixture,
) -> None:
    task = asyncio.create_task(_hangs(), name="store-close")
    await asyncio.sleep(0)  # let it reach its await
    try:
        with caplog.at_level(logging.WARNING, logger="cnm.daemon"):
            _report_unfinished()
        (message,) = [r.getMessage() for r in caplog.records]
        assert "still stopping after" in message
        assert "store-close at " in message and "test_stop_report.py:" in message
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
