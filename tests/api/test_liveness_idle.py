"""An idle node's liveness: its runtime keeps the lease alive without rewriting the key, and
writes the key again (same `since`) when something deleted it while the lease lives. The node's
real runtime on the in-memory store, with the keep-alive interval shortened."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from cnm.cluster import liveness, model
from cnm.cluster.records import LivenessRecord
from cnm.store.base import KeyValue, LeaseRenewal
from cnm.store.memory import MemoryStore
from harness.api_node import ADMIN, create_body, memory_backend, node_config, running_node


class CountingStore(MemoryStore):
    """Counts keep-alives, so the test knows that several happened."""

    def __init__(self) -> None:
        super().__init__()
        self.renewals = 0

    async def lease_renew(self, lease_id: int) -> LeaseRenewal:
        self.renewals += 1
        return await super().lease_renew(lease_id)


async def until(condition: object, message: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, message
        await asyncio.sleep(0.01)


async def test_keepalives_rewrite_nothing_and_a_deleted_key_comes_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(liveness, "LIVENESS_INTERVAL", 0.02)
    store = CountingStore()
    async with running_node(node_config(tmp_path), backend=memory_backend(store)) as node:
        response = await node.client.post(
            "/v1/bootstrap/create_cluster", json=create_body("idle.example.com", ADMIN)
        )
        assert response.status_code == 200, response.text
        key = model.liveness_key(1)
        found: list[KeyValue | None] = [None]

        async def read() -> KeyValue | None:
            found[0] = await store.get(key)
            return found[0]

        deadline = time.monotonic() + 10
        while await read() is None:
            assert time.monotonic() < deadline, "no liveness key"
            await asyncio.sleep(0.01)
        first = found[0]
        assert first is not None
        since = LivenessRecord.decode(first.value).since
        start = store.renewals
        await until(lambda: store.renewals >= start + 10, "keep-alives")
        kept = await store.get(key)
        assert kept is not None and kept.mod_revision == first.mod_revision  # never rewritten

        # A repair (or anything) deletes the key while the lease lives: it comes back, with
        # the `since` of the same lease.
        await store.delete(key)
        deadline = time.monotonic() + 10
        while await read() is None:
            assert time.monotonic() < deadline, "the liveness key was not written again"
            await asyncio.sleep(0.01)
        back = found[0]
        assert back is not None and LivenessRecord.decode(back.value).since == since
        assert back.lease == first.lease
