"""bench_join part 1, sizes: one cluster built node by node, each join timed, beside the store
floor measured alternately before and after each join (see bench_join's docstring)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from common import (
    BREAKDOWN_HEADERS,
    AgentFactory,
    RunFailed,
    Stats,
    Target,
    etcd_pids_under,
    now,
    phase_line,
    segment_rows,
    start_agents,
    stats_segment,
    table,
)
from join_agents import (
    LOG_JSON,
    JoinRun,
    add_log_events,
    cpu_delta,
    cpu_read,
    cpu_watch,
    create,
    nodes_of,
    post_join,
    roles_text,
    stop_cluster,
    voter_endpoints,
)
from join_floor import store_floor
from profiling import text_summary

JOIN_TARGET = 0.3
# (label, source, from-event, to-event); events are seconds after the POST was sent.
SEGMENTS = [
    ("POST, checks (-> joining_cluster)", "joiner log", None, "joining"),
    ("contacting: CA, password proof (-> trusted)", "joiner log", "joining", "trusted"),
    ("handshake: clock x4, admission, certs", "member log", "trusted", "admitted"),
    ("store: certs, own record, snapshot", "joiner log", "admitted", "joined"),
    ("HTTPS switch, status (-> completed)", "joiner log", "joined", "completed_log"),
    ("completed -> seen by poll (auth)", "poll", "completed_log", "completed"),
]
CPU_ROWS = [
    ("joiner", "CPU in that time: joining agent"),
    ("member", "CPU in that time: member (node 1)"),
    ("etcd", "CPU in that time: the etcd members"),
    ("others", "CPU in that time: rest of the machine"),
]


def size_windows(sizes: Sequence[int], window: int, largest: int) -> list[tuple[int, int, int]]:
    """(size, first, last): `window` consecutive cluster sizes around each size, within 2..N."""
    found = []
    for size in sizes:
        first = max(2, size - window // 2)
        last = first + window - 1
        if last > largest:
            last, first = largest, max(2, largest - window + 1)
        found.append((size, first, last))
    return found


def part_sizes(args: argparse.Namespace, base: Path, failures: list[str]) -> list[JoinRun]:
    largest = max(args.sizes)
    factory = AgentFactory(base / "sizes")
    agents = [factory.make(f"node-{n}", extra_args=LOG_JSON) for n in range(1, largest + 1)]
    first = agents[0]
    runs: list[JoinRun] = []
    try:
        started = now()
        start_agents(agents)
        create(first, args.timeout)
        print(
            f"  {largest} agents started and node 1 created the cluster ({now() - started:.1f} s,"
            " untimed)",
            flush=True,
        )
        for size, joiner in enumerate(agents[1:], start=2):
            nodes = nodes_of(first)
            endpoints = voter_endpoints(nodes)
            floor_first = size % 2 == 0
            floor = store_floor(first, endpoints) if floor_first else None
            watched = cpu_watch(joiner, first, etcd_pids_under(factory.base))
            before = cpu_read(watched)
            run = post_join(joiner, [first.addr], poll=args.poll, timeout=args.timeout)
            cpu = cpu_delta(before, cpu_read(watched))
            if not floor_first:
                floor = store_floor(first, endpoints)
            add_log_events(run, joiner, first)
            run = replace(run, size=size, roles_at_post=roles_text(nodes), floor=floor, cpu=cpu)
            if run.state != "completed":
                failures.append(
                    f"sizes: join {size} ended in error [{run.error_code}] {run.error_message}"
                )
                print(f"  join {size:2d}: ERROR [{run.error_code}] {run.error_message}")
                # Later joins would measure a different cluster: stop this part here.
                break
            runs.append(run)
            print(
                f"  join {size:2d} (size {size:2d}): {run.seconds:.3f} s   store floor "
                f"{floor or 0:.3f} s   joiner CPU {cpu['joiner']:.3f} s   store at POST: "
                f"{run.roles_at_post}",
                flush=True,
            )
        print(f"  store at the end: {roles_text(nodes_of(first))}")
    except RunFailed as exc:
        failures.append(f"sizes: {exc}")
        print(f"  FAILED: {exc}")
    finally:
        failures += stop_cluster(factory, "sizes", base / "artefacts")
    return runs


def _size_row(
    label: str, window: list[JoinRun], verdict: str
) -> tuple[list[object], dict[str, Any]]:
    cnm = Stats.of([run.seconds for run in window])
    floor = Stats.of([run.floor or 0.0 for run in window])
    logged = [run.events["completed_log"] for run in window if "completed_log" in run.events]
    agent = Stats.of(logged).median if logged else None
    row: list[object] = [
        label,
        cnm.runs,
        cnm.median,
        cnm.p90,
        cnm.max,
        agent,
        floor.median,
        cnm.median - floor.median,
        verdict,
    ]
    document = {
        "cnm": cnm.as_dict(),
        "agent_log_completed_median": agent,
        "store_floor": floor.as_dict(),
    }
    return row, document


def report_sizes(args: argparse.Namespace, runs: list[JoinRun]) -> dict[str, Any]:
    by_size = {run.size: run for run in runs}
    rows: list[list[object]] = []
    document: dict[str, Any] = {"windows": [], "target_s": JOIN_TARGET}
    for size, first, last in size_windows(args.sizes, args.window, max(args.sizes)):
        window = [by_size[s] for s in range(first, last + 1) if s in by_size]
        label = f"{size} ({first}-{last})"
        if not window:
            rows.append([label, 0, None, None, None, None, None, None, "-"])
            continue
        verdict = "PASS" if Stats.of([r.seconds for r in window]).median <= JOIN_TARGET else "MISS"
        row, stats = _size_row(label, window, verdict)
        rows.append(row)
        document["windows"].append(
            {"size": size, "joins": [first, last], **stats, "verdict": verdict}
        )
    if runs:
        row, stats = _size_row(f"all (2-{runs[-1].size})", runs, "")
        rows.append(row)
        document["all"] = stats
    headers = (
        "cluster size (joins)",
        "joins",
        "cnm median s",
        "p90 s",
        "max s",
        "agent log median s",
        "store floor median s",
        "cnm - floor s",
        f"≤ {JOIN_TARGET:.3f} s",
    )
    print(table(headers, rows))
    print(
        "(agent log: POST -> the joining agent logs `completed`, without the poll interval and "
        "the argon2 check of the\nfirst authenticated GET; store floor: the same store "
        "operations on raw etcd, next to each join)"
    )
    text, segments = breakdown(runs)
    document["breakdown"] = segments
    print()
    print("where a join's time goes (all joins; from outside: joiner and member JSON logs, polls):")
    print(text)
    print(phase_line(("contacting", "handshake", "store", "completed"), [r.events for r in runs]))
    document["samples"] = [asdict(run) for run in runs]
    return document


def sizes_targets(
    args: argparse.Namespace, runs: list[JoinRun]
) -> tuple[list[Target], list[dict[str, Any]]]:
    """The issue's target (the median join at the largest size, over its window) and the
    series to plot: at each size 2..N, the median over the `--window` joins around it, of cnm
    and of the store floor."""
    by_size = {run.size: run for run in runs}
    largest = max(args.sizes)
    _, first, last = size_windows([largest], args.window, largest)[0]
    window = [by_size[s] for s in range(first, last + 1) if s in by_size]
    floor = Stats.of([r.floor or 0.0 for r in window]).median if window else None
    # A cluster that stopped growing early did not reach the size: no value, a MISS.
    complete = len(window) == last - first + 1
    account = None
    if window:
        text, _ = breakdown(window)
        account = text_summary(
            f"bench_join-{largest}-nodes",
            f"where joins {first}-{last} spent their time (phases from the joiner's and the "
            "member's JSON logs; CPU from /proc over each join):\n" + text,
        )
    targets = [
        Target(
            f"join median at {largest} nodes (joins {first}-{last})",
            Stats.of([r.seconds for r in window]).median if complete else None,
            JOIN_TARGET,
            "s",
            baseline=f"store floor median {floor:.3f} s" if floor is not None else "",
            profile=account,
        )
    ]
    sizes = sorted(by_size)
    cnm_y, floor_y = [], []
    for _size, first, last in size_windows(sizes, args.window, sizes[-1] if sizes else 2):
        around = [by_size[s] for s in range(first, last + 1) if s in by_size]
        cnm_y.append(Stats.of([r.seconds for r in around]).median)
        floor_y.append(Stats.of([r.floor or 0.0 for r in around]).median)
    series = [
        {
            "plot": "join_latency",
            "label": label,
            "x": sizes,
            "y": values,
            "x_label": "cluster size (nodes)",
            "y_label": f"median s (over {args.window} joins around the size)",
        }
        for label, values in (("cnm join", cnm_y), ("store floor", floor_y))
    ]
    return targets, series


def breakdown(runs: list[JoinRun]) -> tuple[str, list[dict[str, Any]]]:
    rows, document = segment_rows(SEGMENTS, [run.events for run in runs])
    if runs:
        label = "total (POST -> completed seen)"
        stats_segment(rows, document, label, "poll", [run.seconds for run in runs])
    for name, label in CPU_ROWS:
        values = [run.cpu[name] for run in runs if name in run.cpu]
        if values:
            stats_segment(rows, document, label, "/proc", values)
    return table(BREAKDOWN_HEADERS, rows), document
