"""A node whose store member the store removed is not restarted into a loop (memory store)."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import pytest

from cnm.store.memory import MemoryMember
from harness.api_node import bootstrapped_node, node_config


async def test_a_removed_member_is_not_restarted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="cnm")
    async with bootstrapped_node(node_config(tmp_path), name="removed.example.com") as node:
        runtime = node.manager.runtime
        assert runtime is not None and isinstance(runtime.member, MemoryMember)
        removed = runtime.member
        removed.exit(1, removed=True)
        deadline = time.monotonic() + 10
        while not any(getattr(r, "cnm_event", "") == "store_member_gone" for r in caplog.records):
            assert time.monotonic() < deadline, "the node did not leave the store"
            await asyncio.sleep(0.02)
        assert runtime.member is not removed
        assert removed.starts == 1
        # The crashed member's supervisor restarts a failed member with `again()`; a removed
        # one is never restarted: no "store member exited ... restarting" line.
        assert not any("restarting in" in r.getMessage() for r in caplog.records)
