"""Benchmark: the CPU an idle cluster uses, per agent, per etcd member and in total, at growing
cluster sizes, beside bare processes idling in the same windows.

    .venv/bin/python bench/bench_idle.py [--sizes 3,30,100] [--window 20] [--settle 10]
                                         [--batch 5] [--go-profile 60] [--json out.json] [--keep]

One cluster grows to the largest size: node 1 creates it, the others join through node 1
(`--batch` joins at once; untimed set-up). At each size of `--sizes`, once every node shows
`active` and the store has its voters (no learner left), the cluster is left alone for
`--settle` seconds, and at least one clock-heartbeat interval of that size (the joins'
after-effects: voter changes, certificates, heartbeats still at a smaller cluster's pace),
then the CPU time (user + system, from /proc) of every agent process and every etcd member is
read at the start and the end of a `--window`-second window. Agents are started only when they
are about to join, so the cluster measured is the only cnm on the machine.

Baselines, idling in the very same windows (these machines are shared and noisy: compare within
one window): a bare etcd member (one-member cluster, cnm's TLS, etcd's own default heartbeat
100 ms and election 1000 ms), and a bare uvicorn serving a do-nothing ASGI app. The rest of the
machine's busy time in the window is shown too (other test runs, this benchmark's polling).

Also counted over each window: the store's revision change (every write is one revision),
which shows whether an idle cluster writes, and so whether writes fan out to every watcher.

Where the busiest member's time goes (the report's profile of each etcd row): its own counters
over the window (etcd's /metrics, read before and after), and, after the window, `--go-profile`
seconds of its CPU profile. The agents run their members with Go's profiler on
(`CNM_ETCD_PPROF=1`, store/etcd_process.py), which costs nothing until a profile is read; it is
read only after the measured window, and decoded by go_profile.py (py-spy cannot see into Go).

Targets (issue 12 §2): the median agent ≤ 0.3 % of a core and the busiest etcd member (the
leader) ≤ 1 % at every size; the whole idle cluster (agents + etcd) < 0.5 cores at 100 nodes.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx

from cnm.cluster.health import upkeep_interval
from cnm.cluster.runtime import open_store
from cnm.node.data_dir import ClusterTls
from cnm.store.etcd_process import PPROF_ENV, etcd_arguments
from common import (
    Agent,
    AgentFactory,
    RunFailed,
    Target,
    base_parser,
    claimed_addresses,
    cpu_seconds,
    etcd_missing,
    etcd_pids_under,
    finish,
    lone_member,
    machine_busy_seconds,
    machine_info,
    machine_line,
    now,
    start_agents,
    table,
    target_lines,
)
from go_profile import ProfileError, parse
from go_profile import summary as go_summary
from harness import etcd_gateway
from harness.metrics import parse_samples
from join_agents import LOG_JSON, create, nodes_of, post_join, stop_cluster, voter_endpoints
from profiling import counters_text, text_summary

AGENT_TARGET = 0.3  # % of a core, each agent
ETCD_TARGET = 1.0  # % of a core, each etcd member
TOTAL_TARGET = 0.5  # cores, the whole idle cluster at TOTAL_AT nodes
TOTAL_AT = 100
JOIN_POLL = 0.05
READY_TIMEOUT = 300.0
IDLE_APP = """
import sys, uvicorn
async def app(scope, receive, send):
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})
uvicorn.run(app, host=sys.argv[1], port=8080, log_level="warning")
"""


def _sizes(text: str) -> list[int]:
    sizes = sorted({int(part) for part in text.split(",") if part.strip()})
    if not sizes or sizes[0] < 1:
        raise argparse.ArgumentTypeError("sizes are cluster sizes of at least 1")
    return sizes


# --- baselines ------------------------------------------------------------------------------


def start_bare_etcd(directory: Path, addr: str) -> subprocess.Popen[bytes]:
    """A one-member etcd as cnm launches its own, but with etcd's default raft timing."""
    tls, spec = lone_member(directory, addr, "bare", "bench-idle")
    spec = replace(spec, heartbeat_ms=100, election_ms=1000)
    log = open(spec.log_file, "ab")  # noqa: SIM115 - the child owns it
    process = subprocess.Popen(etcd_arguments("etcd", spec), stdout=log, stderr=log)
    log.close()

    async def ready() -> None:
        store = open_store((spec.client_url,), tls)
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    await store.get_prefix("/cnm/")
                    return
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.1)
        finally:
            await store.close()

    asyncio.run(ready())
    return process


def start_idle_app(addr: str) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, "-c", IDLE_APP, addr],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return process


# --- the cluster ----------------------------------------------------------------------------


def grow(first: Agent, joiners: list[Agent], batch: int, timeout: float) -> None:
    """Start the joiners and join them through node 1, `batch` at once (untimed)."""
    start_agents(joiners)
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(batch, 1)) as pool:
        for index in range(0, len(joiners), max(batch, 1)):
            group = joiners[index : index + max(batch, 1)]
            runs = list(
                pool.map(
                    lambda a: post_join(a, [first.addr], poll=JOIN_POLL, timeout=timeout), group
                )
            )
            for run in runs:
                if run.state != "completed":
                    raise RunFailed(f"join of {run.addr}: [{run.error_code}] {run.error_message}")


def wait_settled(first: Agent, size: int) -> list[dict[str, Any]]:
    """Until every node is active and the store has its voters (min(5, size), or what the
    cluster's count makes odd) and no learner: the cluster at rest."""
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        nodes = nodes_of(first)
        roles = [n.get("store_role") for n in nodes]
        active = [n for n in nodes if n.get("status") == "active"]
        voters = roles.count("voter")
        if (
            len(nodes) == size
            and len(active) == size
            and "learner" not in roles
            and voters >= min(3, size)
        ):
            return nodes
        if time.monotonic() > deadline:
            raise RunFailed(
                f"cluster of {size} not at rest after {READY_TIMEOUT:g} s: {len(active)} "
                f"active of {len(nodes)}, roles {sorted(map(str, roles))}"
            )
        time.sleep(1.0)


def store_state(first: Agent, nodes: list[dict[str, Any]]) -> tuple[int, dict[str, int]]:
    """The store's revision, and each key's last modification revision under /cnm/."""
    tls = first.layout.cluster_tls

    async def read() -> tuple[int, dict[str, int]]:
        store = open_store(voter_endpoints(nodes), tls)
        try:
            items, revision = await store.get_prefix("/cnm/")
            return revision, {kv.key: kv.mod_revision for kv in items}
        finally:
            await store.close()

    return asyncio.run(read())


def written_prefixes(since: int, keys: dict[str, int]) -> dict[str, int]:
    """How many keys of each kind (/cnm/<kind>/) were last written after revision `since`."""
    kinds: dict[str, int] = {}
    for key, revision in keys.items():
        if revision > since:
            kind = "/".join(key.split("/")[:3]) + "/"
            kinds[kind] = kinds.get(kind, 0) + 1
    return kinds


def client_url(pid: int) -> str | None:
    """The client URL an etcd process advertises (its command line)."""
    try:
        arguments = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    except OSError:
        return None
    for argument in arguments:
        if argument.startswith("--advertise-client-urls="):
            return argument.split("=", 1)[1].split(",")[0]
    return None


def etcd_counters(url: str, tls: ClusterTls) -> dict[str, float]:
    """Every sample of an etcd member's /metrics, by its name and labels as the exposition
    writes them ({} when it cannot be read: the summary then shows nothing rather than failing
    the benchmark)."""
    context = etcd_gateway.client_context(tls, (tls.cert_file, tls.key_file))
    try:
        samples = parse_samples(httpx.get(url + "/metrics", verify=context, timeout=5).text)
    except (httpx.HTTPError, ValueError):
        return {}
    named = {}
    for (name, labels), number in samples.items():
        shown = ",".join(f'{label}="{value}"' for label, value in sorted(labels))
        named[f"{name}{{{shown}}}" if shown else name] = number
    return named


def go_cpu_profile(url: str, tls: ClusterTls, seconds: float, who: str) -> str:
    """A summary of `seconds` of the member's own CPU profile (go_profile.py), taken after the
    measured window: reading a profile costs the member CPU. A line saying why when none."""
    context = etcd_gateway.client_context(tls, (tls.cert_file, tls.key_file))
    try:
        answer = httpx.get(
            url + "/debug/pprof/profile",
            params={"seconds": int(seconds)},
            verify=context,
            timeout=seconds + 30,
        )
        answer.raise_for_status()
        profile = parse(answer.content)
    except (httpx.HTTPError, ProfileError) as exc:
        return f"{who}: no Go CPU profile ({type(exc).__name__}: {exc})"
    samples = len(profile.samples)
    return go_summary(
        profile,
        f"{who}: Go's CPU profile over {seconds:.0f} s right after the window "
        f"({samples} stacks, one sample per 10 ms of CPU)",
    )


def measure(
    agents: list[Agent],
    etcd: list[int],
    baselines: dict[str, int],
    window: float,
    first: Agent,
    nodes: list[dict[str, Any]],
    profile_seconds: float,
) -> dict[str, Any]:
    """CPU % of a core of each process over `window` s, and the store writes meanwhile; then
    `profile_seconds` of the busiest member's CPU profile (0: none)."""
    pids = {f"agent {a.addr}": a.process.pid for a in agents if a.process is not None}
    pids.update({f"etcd {pid}": pid for pid in etcd})
    pids.update({f"baseline {name}": pid for name, pid in baselines.items()})
    revision, _ = store_state(first, nodes)
    tls = first.layout.cluster_tls
    urls = {pid: client_url(pid) for pid in etcd}
    counted = {pid: etcd_counters(url, tls) for pid, url in urls.items() if url}
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    busy, started = machine_busy_seconds(), now()
    time.sleep(window)
    after = {name: cpu_seconds(pid) for name, pid in pids.items()}
    elapsed, busy = now() - started, machine_busy_seconds() - busy
    busiest = max(etcd, key=lambda pid: after[f"etcd {pid}"] - before[f"etcd {pid}"])
    busiest_url = urls.get(busiest)
    # The window's writes are read before the profile's extra seconds.
    last, keys = store_state(first, nodes)
    profile = None
    if busiest_url and busiest in counted:
        counted_after = etcd_counters(busiest_url, tls)
        leads = counted_after.get("etcd_server_is_leader") == 1.0
        who = (
            f"the busiest etcd member ({busiest_url}, {'the leader' if leads else 'a follower'})"
            f" of a {len(agents)}-node idle cluster"
        )
        counters = counters_text(
            f"{who}: its own counters",
            counted[busiest],
            counted_after,
            elapsed,
        )
        go = go_cpu_profile(busiest_url, tls, profile_seconds, who) if profile_seconds else ""
        profile = text_summary(
            f"bench_idle-etcd-{len(agents)}-nodes", f"{go}\n\n{counters}" if go else counters
        )
    writes = last - revision
    used = {name: after[name] - before[name] for name in pids}
    percent = {name: 100.0 * seconds / elapsed for name, seconds in used.items()}
    agent = [v for k, v in percent.items() if k.startswith("agent ")]
    members = [v for k, v in percent.items() if k.startswith("etcd ")]
    cluster_seconds = sum(v for k, v in used.items() if not k.startswith("baseline "))
    return {
        "window_s": elapsed,
        "agents": len(agent),
        "agent_median_pct": statistics.median(agent),
        "agent_max_pct": max(agent),
        "etcd_members": len(members),
        "etcd_median_pct": statistics.median(members),
        "etcd_max_pct": max(members),
        "total_cores": cluster_seconds / elapsed,
        "store_writes_per_s": writes / elapsed,
        "keys_written": written_prefixes(revision, keys),
        "baseline_etcd_pct": percent.get("baseline etcd"),
        "baseline_uvicorn_pct": percent.get("baseline uvicorn"),
        "others_cores": max(0.0, busy - sum(used.values())) / elapsed,
        "etcd_profile": profile,
    }


def run(args: argparse.Namespace, base: Path, failures: list[str]) -> dict[int, dict[str, Any]]:
    results: dict[int, dict[str, Any]] = {}
    factory = AgentFactory(base / "cluster")
    # Go's profiler on in every member, read only after each measured window (go_cpu_profile).
    agents = [
        factory.make(f"node-{n}", extra_args=LOG_JSON, env={PPROF_ENV: "1"})
        for n in range(1, max(args.sizes) + 1)
    ]
    with claimed_addresses(2) as (etcd_addr, app_addr):
        bare = start_bare_etcd(base / "bare-etcd", etcd_addr)
        app = start_idle_app(app_addr)
        try:
            baselines = {"etcd": bare.pid, "uvicorn": app.pid}
            started = now()
            start_agents(agents[:1])
            create(agents[0], args.timeout)
            size = 1
            for target in args.sizes:
                grow(agents[0], agents[size:target], args.batch, args.timeout)
                size = target
                nodes = wait_settled(agents[0], size)
                # At least one clock-heartbeat interval of this size: nodes that joined a
                # smaller cluster still beat at its shorter interval until their next beat.
                settle = max(args.settle, upkeep_interval(size) + 5)
                print(
                    f"  {size} nodes at rest ({now() - started:.0f} s so far); settling "
                    f"{settle:g} s, then measuring {args.window:g} s",
                    flush=True,
                )
                time.sleep(settle)
                result = measure(
                    agents[:size],
                    etcd_pids_under(factory.base),
                    baselines,
                    args.window,
                    agents[0],
                    nodes,
                    args.go_profile,
                )
                results[size] = result
                print(
                    f"  {size:3d} nodes: agent median {result['agent_median_pct']:.2f} % (max "
                    f"{result['agent_max_pct']:.2f}), etcd max {result['etcd_max_pct']:.2f} %, "
                    f"total {result['total_cores']:.3f} cores, "
                    f"{result['store_writes_per_s']:.2f} writes/s (keys written: "
                    f"{result['keys_written']})",
                    flush=True,
                )
        except RunFailed as exc:
            failures.append(str(exc))
            print(f"  FAILED: {exc}")
        finally:
            for process in (bare, app):
                process.terminate()
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
            failures += stop_cluster(factory, "idle", base / "artefacts")
    return results


def report(results: dict[int, dict[str, Any]]) -> tuple[list[Target], list[dict[str, Any]]]:
    headers = (
        "nodes",
        "agent median %",
        "agent max %",
        "etcd members",
        "etcd median %",
        "etcd max %",
        "cluster cores",
        "writes/s",
        "bare etcd %",
        "bare uvicorn %",
        "others cores",
    )
    rows = [
        [
            size,
            r["agent_median_pct"],
            r["agent_max_pct"],
            r["etcd_members"],
            r["etcd_median_pct"],
            r["etcd_max_pct"],
            r["total_cores"],
            r["store_writes_per_s"],
            r["baseline_etcd_pct"],
            r["baseline_uvicorn_pct"],
            r["others_cores"],
        ]
        for size, r in sorted(results.items())
    ]
    print(table(headers, rows, decimals=3))
    print(
        "(% of one core over the window; cluster cores: all agents + etcd members; bare etcd: "
        "one member, etcd's default timing;\nbare uvicorn: a do-nothing ASGI app; others: the "
        "rest of the machine, busy meanwhile)"
    )
    sizes = sorted(results)
    targets = []
    for size in sizes:
        r = results[size]
        targets.append(
            Target(
                f"idle agent CPU at {size} nodes (median agent)",
                r["agent_median_pct"],
                AGENT_TARGET,
                "%",
                baseline=f"bare uvicorn {r['baseline_uvicorn_pct']:.2f} %",
            )
        )
        targets.append(
            Target(
                f"idle etcd member CPU at {size} nodes (busiest member)",
                r["etcd_max_pct"],
                ETCD_TARGET,
                "%",
                baseline=f"bare etcd member (etcd defaults) {r['baseline_etcd_pct']:.2f} %",
                profile=r.get("etcd_profile"),
            )
        )
    total = results.get(TOTAL_AT)
    targets.append(
        Target(
            f"idle cluster CPU at {TOTAL_AT} nodes (agents + etcd)",
            total["total_cores"] if total else None,
            TOTAL_TARGET,
            "cores",
        )
    )
    series = [
        {
            "plot": "idle_cpu",
            "label": label,
            "x": sizes,
            "y": [results[s][key] for s in sizes],
            "x_label": "cluster size (nodes)",
            "y_label": "% of a core",
        }
        for label, key in (
            ("agent", "agent_median_pct"),
            ("etcd member", "etcd_max_pct"),
            ("bare etcd member", "baseline_etcd_pct"),
            ("bare uvicorn", "baseline_uvicorn_pct"),
        )
    ]
    return targets, series


def main(argv: list[str] | None = None) -> int:
    parser = base_parser("CPU of an idle cluster per agent, per etcd member and in total.")
    parser.add_argument(
        "--sizes", type=_sizes, default=[3, 30, 100], help="cluster sizes (default 3,30,100)"
    )
    parser.add_argument("--window", type=float, default=20.0, help="measured s (default 20)")
    parser.add_argument("--settle", type=float, default=10.0, help="s left alone before (10)")
    parser.add_argument("--batch", type=int, default=5, help="joins at once while growing (5)")
    parser.add_argument("--timeout", type=float, default=60.0, help="s per join (default 60)")
    parser.add_argument(
        "--go-profile",
        type=float,
        default=60.0,
        help="s of the busiest etcd member's CPU profile after each window (default 60; 0: none)",
    )
    args = parser.parse_args(argv)
    if etcd_missing():
        return 1
    info = machine_info()
    print("idle cluster CPU: agents and etcd members of a cluster left alone, per size")
    print(machine_line(info))
    failures: list[str] = []
    base = Path(tempfile.mkdtemp(prefix="cnm-bench-idle-"))
    began = now()
    try:
        results = run(args, base, failures)
    finally:
        if args.keep or failures:
            print(f"\ndata directories kept in {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)
    print()
    targets, series = report(results) if results else ([], [])
    if targets:
        print(target_lines(targets))
    document: dict[str, Any] = {
        "benchmark": "idle",
        "machine": info,
        "window_s": args.window,
        "settle_s": args.settle,
        "sizes": {str(size): result for size, result in sorted(results.items())},
        "targets": [t.as_dict() for t in targets],
        "series": series,
        "failures": failures,
        "elapsed_s": now() - began,
    }
    print(f"\nbenchmark took {document['elapsed_s']:.0f} s")
    return finish(args.json, document, failures)


if __name__ == "__main__":
    sys.exit(main())
