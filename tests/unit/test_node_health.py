"""The per-node checks of /v1/cluster/check on the in-memory store with fake clocks."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

import pytest

from cnm.cluster import model
from cnm.cluster.health import (
    HEARTBEAT_SILENCE,
    ClockObserver,
    heartbeat_silence,
    node_check,
    node_uptime,
    upkeep_interval,
)
from cnm.cluster.records import NodeRecord
from cnm.cluster.snapshot import ClusterSnapshot
from cnm.cluster.writes import wait_for_revision
from cnm.store.memory import MemoryStore


class Clocks:
    def __init__(self) -> None:
        self.wall = 1_000_000.0
        self.mono = 50.0


@pytest.fixture
async def world() -> AsyncIterator[tuple[MemoryStore, ClusterSnapshot]]:
    store = MemoryStore()
    snapshot = ClusterSnapshot(store)
    task = asyncio.create_task(snapshot.run())
    await snapshot.wait_loaded(5)
    yield store, snapshot
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def put(
    store: MemoryStore, snapshot: ClusterSnapshot, key: str, doc: dict[str, object]
) -> None:
    raw = json.dumps(doc).encode()
    assert await wait_for_revision(snapshot, await store.put(key, raw))


async def test_checks(world: tuple[MemoryStore, ClusterSnapshot]) -> None:
    store, snapshot = world
    clocks = Clocks()
    observer = ClockObserver(snapshot, wall=lambda: clocks.wall, monotonic=lambda: clocks.mono)
    nodes = {uid: NodeRecord(uid=uid) for uid in (1, 2, 3, 4)}
    for uid in (1, 2, 3):
        await put(store, snapshot, model.liveness_key(uid), {"uid": uid})

    async def heartbeat(uid: int, offset: float) -> None:
        record = {"uid": uid, "wall": clocks.wall + offset}
        await put(store, snapshot, model.node_clock_key(uid), record)

    # Too early to judge anything but liveness.
    assert node_check(snapshot, observer, nodes[1]) == {"node_uid": "1", "result": True}
    down = node_check(snapshot, observer, nodes[4])
    assert down["result"] is False and "down" in down["error"]

    for _ in range(2):
        await heartbeat(1, 0.05)
        await heartbeat(2, -4.0)
        clocks.wall += 10
        clocks.mono += 10
    # A heartbeat that arrived late (a reload) does not make a good clock look off.
    clocks.wall += 6
    await heartbeat(1, -6.0)
    assert observer.offset(1) == pytest.approx(0.05)
    assert observer.offset(2) == pytest.approx(-4.0)
    assert node_check(snapshot, observer, nodes[1])["result"] is True
    off = node_check(snapshot, observer, nodes[2])
    assert off["result"] is False and "clock is off by -4.0 s" in off["error"]

    clocks.mono += HEARTBEAT_SILENCE + 1
    silent = node_check(snapshot, observer, nodes[3])
    assert silent["result"] is False and "no heartbeat" in silent["error"]
    stale = node_check(snapshot, observer, nodes[2])
    assert "no heartbeat" in stale["error"]


def test_uptime_from_boot_time() -> None:
    assert node_uptime(NodeRecord(uid=1, boot_time=1000), 1500.7) == 500
    assert node_uptime(NodeRecord(uid=1, boot_time=2000), 1500) == 0
    assert node_uptime(NodeRecord(uid=1, uptime=42), 1500) == 42
    assert node_uptime(NodeRecord(uid=1), 1500) == 0


def test_heartbeats_stretch_with_the_cluster_so_their_total_rate_stays_flat() -> None:
    # Every node watches every heartbeat: N nodes each writing every interval send N / interval
    # events to each node. Stretched to N s past 10 nodes, that is at most one a second.
    assert upkeep_interval(3) == upkeep_interval(10) == 10.0
    for nodes in (10, 30, 100):
        assert nodes / upkeep_interval(nodes) <= 1.0
    assert heartbeat_silence(3) == HEARTBEAT_SILENCE
    assert heartbeat_silence(100) == 3 * 100
