"""Experiment: what lease keep-alives cost an idle etcd leader, sent to followers or to the leader.

    .venv/bin/python bench/keepalive_paths.py [--leases 100] [--window 20] [--runs 2]
                                              [--json out.json]

Why: bench_idle's busiest etcd member at 30 and 100 nodes is the leader, over the 1 % target,
and its counters name lease renewals among its work. A node's keep-alive goes to its preferred
member; a follower forwards it to the leader over the peer port (only the leader renews leases).
Would sending keep-alives straight to the leader help it? And what does a leader with nothing to
do cost at all?

Method: a raw 5-member etcd cluster (bench/raw_etcd.py: cnm's launcher and TLS, heartbeat 100
ms, election 500 ms, as cnm runs it), `--leases` leases, then in turn, `--runs` times over:
`none` (no keep-alives), `followers` (one gRPC keep-alive stream per lease, as each agent keeps
one, spread over the four followers) and `leader` (all streams to the leader). Each lease is
renewed every 3 s (model.LIVENESS_KEEPALIVE), phases spread at random; after 5 s of that the
CPU time of the leader and of the followers is read over `--window` seconds. No target: the
figures explain bench_idle's etcd targets (docs/architecture.md, "Idle cost").
"""

from __future__ import annotations

import asyncio
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from cnm.cluster.model import LIVENESS_KEEPALIVE, LIVENESS_TTL
from cnm.store.lease_stream import LeaseKeepAliveStream, grpc_tls
from common import (
    RunFailed,
    base_parser,
    claimed_addresses,
    cpu_seconds,
    etcd_missing,
    finish,
    machine_info,
    machine_line,
    now,
    table,
)
from raw_etcd import RawCluster

MEMBERS = 5
WARM_UP = 5.0
KINDS = ("none", "followers", "leader")


async def window_cpu(pids: list[int], seconds: float) -> list[float]:
    """% of a core each process used over `seconds`."""
    before, began = [cpu_seconds(pid) for pid in pids], time.monotonic()
    await asyncio.sleep(seconds)
    elapsed = time.monotonic() - began
    return [100 * (cpu_seconds(pid) - was) / elapsed for pid, was in zip(pids, before, strict=True)]


async def measure(
    cluster: RawCluster, tls: Any, leases: list[int], kind: str, window: float
) -> tuple[float, float]:
    """(leader %, mean follower %) while `leases` are kept alive the `kind` way."""
    leader_id = await cluster.store.leader()
    members = await cluster.store.member_list()
    leader = next(m.client_urls[0] for m in members if str(m.id) == leader_id)
    followers = [m.client_urls[0] for m in members if str(m.id) != leader_id]
    pids = {p.spec.client_url: p.pid for p in cluster.processes}
    streams = [
        LeaseKeepAliveStream(
            leader if kind == "leader" else followers[n % len(followers)], tls, 2.0
        )
        for n in range(len(leases) if kind != "none" else 0)
    ]

    async def keep(stream: LeaseKeepAliveStream, lease: int) -> None:
        await asyncio.sleep(random.random() * LIVENESS_KEEPALIVE)
        while True:
            await stream.renew(lease)
            await asyncio.sleep(LIVENESS_KEEPALIVE)

    tasks = [asyncio.create_task(keep(s, lease)) for s, lease in zip(streams, leases, strict=False)]
    try:
        await asyncio.sleep(WARM_UP)
        for task in tasks:
            if task.done():
                task.result()  # a failed stream fails the run
        measured = [pids[leader], *(pids[url] for url in followers)]
        if None in measured:
            raise RunFailed("an etcd member is not running")
        usage = await window_cpu([pid for pid in measured if pid is not None], window)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for stream in streams:
            await stream.close()
    return usage[0], statistics.mean(usage[1:])


async def run(args: Any, base: Path) -> dict[str, list[tuple[float, float]]]:
    results: dict[str, list[tuple[float, float]]] = {kind: [] for kind in KINDS}
    with claimed_addresses(MEMBERS) as addrs:
        cluster = RawCluster(addrs, base)
        try:
            await cluster.start_first(30)
            for spec in cluster.specs[1:]:
                await cluster.grow(spec, now() + 60)
            ttl = max(LIVENESS_TTL, int(args.window + WARM_UP) * 2 * len(KINDS) * args.runs)
            leases = [await cluster.store.lease_grant(ttl) for _ in range(args.leases)]
            files = cluster.specs[0]
            tls = grpc_tls(files.ca_file, files.cert_file, files.key_file)
            for run_number in range(args.runs):
                for kind in KINDS:
                    leader, follower = await measure(cluster, tls, leases, kind, args.window)
                    results[kind].append((leader, follower))
                    print(
                        f"run {run_number + 1} {kind:9}: leader {leader:.2f} %, "
                        f"followers {follower:.2f} % each",
                        flush=True,
                    )
        finally:
            await cluster.close()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__.splitlines()[0] if __doc__ else "", default_runs=2)
    parser.add_argument("--leases", type=int, default=100, help="leases kept alive (100)")
    parser.add_argument("--window", type=float, default=20.0, help="measured s (default 20)")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.leases < 1 or args.window <= 0:
        parser.error("need --runs >= 1, --leases >= 1 and --window > 0")
    if etcd_missing():
        return 1
    info = machine_info()
    print(machine_line(info))
    failures: list[str] = []
    results: dict[str, list[tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="cnm-bench-keepalive-") as directory:
        try:
            results = asyncio.run(run(args, Path(directory)))
        except (RunFailed, OSError) as exc:
            failures.append(f"{type(exc).__name__}: {exc}")
    rows = [
        [
            kind,
            statistics.median(leader for leader, _ in runs),
            statistics.median(follower for _, follower in runs),
        ]
        for kind, runs in results.items()
        if runs
    ]
    print()
    print(
        f"{MEMBERS}-member etcd, {args.leases} leases each renewed every "
        f"{LIVENESS_KEEPALIVE:.0f} s ({args.leases / LIVENESS_KEEPALIVE:.0f}/s), "
        f"{args.window:.0f} s windows"
    )
    print(
        table(("keep-alives sent to", "leader % of a core", "follower % (mean)"), rows, decimals=2)
    )
    document = {
        "machine": info,
        "leases": args.leases,
        "rows": [{"kind": r[0], "leader_pct": r[1], "follower_pct": r[2]} for r in rows],
    }
    return finish(args.json, document, failures)


if __name__ == "__main__":
    sys.exit(main())
