"""Benchmark: CPU a bystander node spends on one change of the cluster, as the cluster grows.

    .venv/bin/python bench/bench_events.py [--sizes 10,30,100,300] [--events 400] [--runs 5]
                                           [--json out.json]

Every node applies every change of the cluster's keys to its snapshot, and the snapshot's
listeners (the voters' loop and its healer, the store endpoints, backups, the down marker, the
voter log, read-your-writes) look at what changed. Whatever they do per change that walks all N
nodes is paid by each of the N nodes at every change: O(N^2) over the cluster per join, which
is how a 100-node cluster on 2 cores ends up slower to join than a 30-node one (bench_join).

In process, on the in-memory store (no etcd, no watch connection: those are bench_watch's): a
node that created a cluster (tests/harness `bootstrapped_node`, its runtime running as an
agent's does), made a store client; uids 2-6 are the voters (2 the acting one, which alone
walks every node for dead voters and ghosts), all N nodes alive. Each change is a node record
of a client node rewritten (what a join writes), one after the other, each applied before the
next; the CPU time of the process (`time.process_time`) over `--events` changes, divided by
their number. Baseline, alternated with it in each run: the same changes applied by a bare
`ClusterSnapshot` with no listeners, on a store holding the same records. The difference is the
listeners' share. No target of its own: it shows whether a change costs a node the same at 300
nodes as at 10.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from cnm.cluster import model
from cnm.cluster.records import LivenessRecord, NodeRecord, StoreRole
from cnm.cluster.snapshot import ClusterSnapshot
from cnm.cluster.writes import wait_for_revision
from cnm.store.memory import MemoryStore
from common import Stats, base_parser, finish, machine_info, machine_line, table
from harness.api_node import bootstrapped_node, node_config

KINDS = ("bystander", "bare snapshot")
VOTERS = range(2, 7)
FIRST_CLIENT = 7


def node_record(uid: int, **changes: Any) -> NodeRecord:
    """A node record of a realistic size (about a kilobyte, as the facts make it)."""
    return NodeRecord(
        uid=uid,
        addr=f"127.1.{uid // 250}.{uid % 250 + 1}",
        store_role=StoreRole.VOTER if uid in VOTERS else StoreRole.CLIENT,
        cores=2,
        total_memory=1 << 34,
        os_name="Debian GNU/Linux 12 (bookworm)",
        short_hostname=f"host-{uid}",
        persistent_storage_path="/var/opt/redislabs/persist",
        ephemeral_storage_path="/var/opt/redislabs/tmp",
        **changes,
    )


async def fill(store: MemoryStore, size: int) -> None:
    """Nodes 2..size, alive (node 1 is the bystander's own)."""
    for uid in range(2, size + 1):
        await store.put(model.node_key(uid), node_record(uid).encode())
        await store.put(model.liveness_key(uid), LivenessRecord(uid=uid).encode())


async def per_change(
    store: MemoryStore, snapshot: ClusterSnapshot, size: int, events: int
) -> float:
    """Seconds of CPU per change applied, for `events` node record rewrites."""
    clients = size - FIRST_CLIENT + 1
    values = [
        (uid, node_record(uid, rack_id=f"r{index}").encode())
        for index in range(events)
        for uid in [FIRST_CLIENT + index % clients]
    ]
    started = time.process_time()
    for uid, value in values:
        revision = await store.put(model.node_key(uid), value)
        if not await wait_for_revision(snapshot, revision, timeout=10):
            raise TimeoutError(f"the snapshot did not apply revision {revision}")
    return (time.process_time() - started) / events


async def settle(store: MemoryStore, snapshot: ClusterSnapshot) -> None:
    _, revision = await store.get_prefix(model.PREFIX)
    if not await wait_for_revision(snapshot, revision, timeout=10):
        raise TimeoutError("the snapshot did not catch up with the store")


async def bystander(size: int, events: int) -> float:
    with tempfile.TemporaryDirectory(prefix="cnm-bench-events-") as directory:
        data = Path(directory) / "node"
        data.mkdir()
        async with bootstrapped_node(node_config(data)) as node:
            runtime = node.manager.runtime
            assert runtime is not None and isinstance(runtime.store, MemoryStore)
            store, snapshot = runtime.store, runtime.snapshot
            own = snapshot.node(1)
            assert own is not None
            client = own.model_copy(update={"store_role": StoreRole.CLIENT})
            await store.put(model.node_key(1), client.encode())
            await fill(store, size)
            await settle(store, snapshot)
            await asyncio.sleep(0.2)  # the loops' first passes over the new cluster
            return await per_change(store, snapshot, size, events)


async def bare(size: int, events: int) -> float:
    store = MemoryStore()
    await store.put(model.node_key(1), node_record(1).encode())
    await fill(store, size)
    snapshot = ClusterSnapshot(store)
    task = asyncio.create_task(snapshot.run())
    try:
        await snapshot.wait_loaded(10)
        return await per_change(store, snapshot, size, events)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


MEASURE: dict[str, Callable[[int, int], Awaitable[float]]] = {
    "bystander": bystander,
    "bare snapshot": bare,
}


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__.splitlines()[0] if __doc__ else "", default_runs=5)
    parser.add_argument("--sizes", default="10,30,100,300", help="cluster sizes (10,30,100,300)")
    parser.add_argument("--events", type=int, default=400, help="changes per run (400)")
    args = parser.parse_args(argv)
    sizes = [int(part) for part in args.sizes.split(",")]
    if args.runs < 1 or args.events < 10 or min(sizes) < FIRST_CLIENT:
        parser.error(f"--runs >= 1, --events >= 10, every size >= {FIRST_CLIENT}")
    info = machine_info()
    print("events: CPU per change of the cluster on a bystander node (in-memory store)")
    print(machine_line(info))
    samples: dict[tuple[int, str], list[float]] = {(s, k): [] for s in sizes for k in KINDS}
    for _ in range(args.runs):
        for size in sizes:
            for kind in KINDS:
                seconds = asyncio.run(MEASURE[kind](size, args.events))
                samples[(size, kind)].append(1e6 * seconds)
    document: dict[str, Any] = {"machine": info, "events": args.events, "stats": [], "series": []}
    rows = []
    for size in sizes:
        node, snapshot = (Stats.of(samples[(size, kind)]) for kind in KINDS)
        rows.append([size, node.median, snapshot.median, node.median - snapshot.median])
        for kind, stats in zip(KINDS, (node, snapshot), strict=True):
            document["stats"].append(
                {"name": f"{size} nodes / {kind}", **stats.as_dict(), "unit": "us"}
            )
    for index, label in ((1, "bystander node"), (2, "bare snapshot (baseline)")):
        document["series"].append(
            {
                "plot": "event_cost",
                "label": label,
                "x": sizes,
                "y": [row[index] for row in rows],
                "x_label": "cluster size (nodes)",
                "y_label": "us of CPU per change (median)",
            }
        )
    growth = rows[-1][3] / rows[0][3] if rows[0][3] > 0 else None
    document["listeners_growth"] = growth
    print()
    print(f"{args.events} changes per run, {args.runs} runs, medians")
    headers = ["nodes", "bystander us", "bare snapshot us", "listeners us"]
    print(table(headers, rows, decimals=1))
    if growth is not None:
        print(f"listeners' share at {sizes[-1]} nodes: {growth:.1f} x that at {sizes[0]} nodes")
    return finish(args.json, document, [])


if __name__ == "__main__":
    raise SystemExit(main())
