"""Benchmark: the status path, GET /v1/bootstrap, beside a bare Starlette app (same bytes).

    .venv/bin/python bench/bench_status.py [--runs 3] [--requests 2000] [--concurrency 1,16,64]
                                           [--processes 3] [--json out.json] [--keep] [--profile]

Servers, `--processes` of each kind, every one a process pinned to CPU 0 (`taskset -c 0`, with
anything it starts, its etcd member included), while this process (the load) runs on CPU 1:

- an agent before bootstrap: `HTTP` (port 8080) and `HTTPS` (port 9443, the TLS handshake is made
  before the clock starts: keep-alive connections), no credentials: nothing to authenticate;
- an agent that created a one-node cluster: `Basic` and `JWT` (a token from
  POST /v1/users/authorize), both over plain HTTP so that they compare with `HTTP` directly;
- `bare Starlette`: bench/bare_status_app.py under uvicorn's defaults, answering the body the
  first agent answered, byte for byte.

Why several processes of each kind: one process answers within 1 % of itself run after run, but
two processes of the same code differ more. Five idle agents spread over 3.2 % (3920 to 4040
req/s); before the allocator fix of node/malloc_tuning.py, over 7 to 10 %, because whether
each socket read mapped and faulted in fresh pages depended on the state of that process's
heap. (With address randomisation off, `setarch -R`, the processes agreed, but on one draw of
that state, not on a typical one.) So each variant is measured on several processes and
reported as the median over all of them, and each process's own median is shown.

Every (server, concurrency) is measured once per round, the rounds in a new random order, so
slow phases of a shared machine hit all of them. A measurement is `--requests` requests over
`concurrency` keep-alive connections of the client of `http_load.py`. Reported per variant:
median req/s over its processes and rounds, p50 and p99 latency over all of their requests,
and at c=16 each process's own median (the spread between processes).

Targets (issue 12 §3), at concurrency 16: HTTP >= 60 % of bare Starlette; HTTP p99 <= 10 ms;
Basic and JWT each >= 85 % of HTTP. Exit status 1 only when a request fails or answers an
unexpected status; a missed target is reported, not an error. `--profile` then records the
servers of HTTP, Basic and JWT with py-spy during one more measurement each (bench/profiling.py)
and links each target to its variant's profile.
"""

from __future__ import annotations

import asyncio
import base64
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from common import (
    LOAD_CPU,
    SERVER_CPU,
    AgentFactory,
    Servers,
    Target,
    base_parser,
    claimed_addresses,
    cpu_seconds,
    finish,
    machine_info,
    machine_line,
    pin_prefix,
    server_pair,
    table,
    target_lines,
)
from harness.polling import eventually
from http_load import Blast, Endpoint, blast, fetch_once, get_request, percentile
from profiling import PySpy

ADMIN = ("admin@example.com", "bench-password")
FOCUS = 16  # the concurrency the targets are judged at
BARE = "bare Starlette"
LABELS = ("HTTP", "HTTPS", "Basic", "JWT", BARE)


@dataclass(frozen=True)
class Variant:
    label: str
    endpoint: Endpoint
    server_pid: int
    expected: int = 200


@dataclass(frozen=True)
class Measured:
    blast: Blast
    server_cpu: float  # CPU seconds the server process used meanwhile
    server_pid: int


def start_bare(base: Path, addr: str, body: bytes, prefix: list[str]) -> subprocess.Popen[bytes]:
    body_file = base / "status-body.json"
    body_file.write_bytes(body)
    script = Path(__file__).resolve().parent / "bare_status_app.py"
    process = subprocess.Popen(
        [*prefix, sys.executable, str(script), addr, "8080", str(body_file)],
        stdout=subprocess.DEVNULL,
        stderr=open(base / "bare.log", "ab"),  # noqa: SIM115 - the child owns it
        stdin=subprocess.DEVNULL,
    )

    def answers() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"the bare app exited with {process.returncode}")
        httpx.get(f"http://{addr}:8080/v1/bootstrap", timeout=1.0).raise_for_status()
        return True

    try:
        eventually(answers, timeout=90, message="bare Starlette app answering")
    except BaseException:
        process.kill()  # the caller never gets it, so it cannot stop it
        process.wait(10)
        raise
    return process


def variants(servers: Servers, bare: str, bare_pid: int) -> list[Variant]:
    """The five variants served by one process of each kind."""
    idle, member = servers.idle, servers.member
    credentials = base64.b64encode(f"{ADMIN[0]}:{ADMIN[1]}".encode()).decode()

    def endpoint(addr: str, port: int, authorization: str | None = None) -> Endpoint:
        request = get_request(addr, port, "/v1/bootstrap", authorization)
        return Endpoint(addr, port, request, tls=port == 9443)

    assert idle.process is not None and member.process is not None
    idle_pid, member_pid = idle.process.pid, member.process.pid
    return [
        Variant("HTTP", endpoint(idle.addr, 8080), idle_pid),
        Variant("HTTPS", endpoint(idle.addr, 9443), idle_pid),
        Variant("Basic", endpoint(member.addr, 8080, f"Basic {credentials}"), member_pid),
        Variant("JWT", endpoint(member.addr, 8080, f"JWT {servers.token}"), member_pid),
        Variant(BARE, endpoint(bare, 8080), bare_pid),
    ]


Results = dict[tuple[str, int], list[Measured]]


async def _blast(variant: Variant, total: int, concurrency: int) -> Blast:
    try:
        return await blast(variant.endpoint, total, concurrency)
    except (TimeoutError, OSError) as exc:
        raise RuntimeError(
            f"{variant.label} at {concurrency} connections: {type(exc).__name__} {exc}"
        ) from exc


async def measure(
    chosen: list[Variant], levels: Sequence[int], runs: int, total: int
) -> tuple[Results, list[str]]:
    results: Results = {(v.label, c): [] for v in chosen for c in levels}
    errors: list[str] = []
    cells = [(v, c) for v in chosen for c in levels]
    for variant, concurrency in cells:  # warm-up: caches, the first argon2 verification
        await _blast(variant, min(total, 300), concurrency)
    for run in range(runs):
        random.Random(run).shuffle(cells)
        for variant, concurrency in cells:
            cpu = cpu_seconds(variant.server_pid)
            result = await _blast(variant, total, concurrency)
            used = cpu_seconds(variant.server_pid) - cpu
            unexpected = {s: n for s, n in result.statuses.items() if s != variant.expected}
            if unexpected:
                errors.append(f"run {run + 1} {variant.label} c={concurrency}: {unexpected}")
            results[(variant.label, concurrency)].append(Measured(result, used, variant.server_pid))
        line = ", ".join(
            f"{label} c{c} {runs[-1].blast.rate:.0f}/s" for (label, c), runs in results.items()
        )
        print(f"run {run + 1}: {line}", flush=True)
    return results, errors


def profile_variants(chosen: list[Variant], total: int) -> dict[str, str | None]:
    """py-spy on the server of each of HTTP, Basic and JWT during one more measurement at
    c=FOCUS (five times the requests, for enough samples): where a request's time goes, the
    authenticated ones beside the unauthenticated (the run's numbers are from before)."""
    found: dict[str, str | None] = {}
    for variant in chosen:  # the first process of each
        if variant.label not in ("HTTP", "Basic", "JWT") or variant.label in found:
            continue
        with PySpy(variant.server_pid, f"bench_status-{variant.label.lower()}") as spy:
            asyncio.run(_blast(variant, total * 5, FOCUS))
        found[variant.label] = spy.summary_path
    return found


def summary(runs: list[Measured]) -> dict[str, Any]:
    latencies = [value for one in runs for value in one.blast.latencies]
    processes = sorted({one.server_pid for one in runs})
    return {
        "rate": statistics.median(one.blast.rate for one in runs),
        # Each process's own median: the spread between processes (module docstring).
        "process_rates": [
            statistics.median(one.blast.rate for one in runs if one.server_pid == pid)
            for pid in processes
        ],
        # Requests per second of server CPU: what one dedicated core would serve, whatever
        # else the machine ran meanwhile (coarse: /proc counts CPU time in 10 ms ticks).
        "per_cpu_second": statistics.median(
            len(one.blast.latencies) / one.server_cpu for one in runs if one.server_cpu > 0
        )
        if any(one.server_cpu > 0 for one in runs)
        else 0.0,
        "p50_ms": percentile(latencies, 0.50) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
    }


def targets(
    cells: dict[tuple[str, int], dict[str, Any]], profiles: dict[str, str | None]
) -> list[Target]:
    """The issue's targets; each links its variant's profile when `--profile` made one."""

    def rate(label: str) -> float | None:
        cell = cells.get((label, FOCUS))
        return cell["rate"] if cell else None

    def ratio(label: str, of: str) -> float | None:
        value, base = rate(label), rate(of)
        return None if value is None or not base else 100 * value / base

    http_p99 = cells.get(("HTTP", FOCUS), {}).get("p99_ms")
    return [
        Target(
            f"status HTTP req/s vs bare Starlette, c={FOCUS}",
            ratio("HTTP", BARE),
            60,
            "%",
            better="higher",
            baseline="bare Starlette app, same bytes, same core, same run",
            profile=profiles.get("HTTP"),
        ),
        Target(
            f"status HTTP p99 latency, c={FOCUS}", http_p99, 10, "ms", profile=profiles.get("HTTP")
        ),
        Target(
            f"status Basic req/s vs unauthenticated, c={FOCUS}",
            ratio("Basic", "HTTP"),
            85,
            "%",
            better="higher",
            baseline="HTTP without credentials (node before bootstrap), same run",
            profile=profiles.get("Basic"),
        ),
        Target(
            f"status JWT req/s vs unauthenticated, c={FOCUS}",
            ratio("JWT", "HTTP"),
            85,
            "%",
            better="higher",
            baseline="HTTP without credentials (node before bootstrap), same run",
            profile=profiles.get("JWT"),
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__.splitlines()[0] if __doc__ else "", default_runs=3)
    parser.add_argument("--requests", type=int, default=2000, help="requests per measurement")
    parser.add_argument(
        "--concurrency", default="1,16,64", help="comma-separated connection counts (1,16,64)"
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="then py-spy on the servers of HTTP, Basic and JWT during one more measurement",
    )
    parser.add_argument(
        "--processes", type=int, default=3, help="server processes of each kind (default 3)"
    )
    args = parser.parse_args(argv)
    levels = [int(part) for part in args.concurrency.split(",") if part.strip()]
    if args.runs < 1 or not levels or min(levels) < 1 or args.requests < max(levels):
        parser.error("need --runs >= 1 and --requests >= every concurrency >= 1")
    if args.processes < 1:
        parser.error("need --processes >= 1")
    info = machine_info()
    print(machine_line(info))
    prefix = pin_prefix()
    print(
        f"servers pinned to CPU {SERVER_CPU}, load on CPU {LOAD_CPU}"
        if prefix
        else "fewer than 2 CPUs (or no taskset): nothing pinned, numbers are not comparable"
    )
    base = Path(tempfile.mkdtemp(prefix="cnm-bench-status-"))
    factory = AgentFactory(base)
    bares: list[subprocess.Popen[bytes]] = []
    failures: list[str] = []
    results: Results = {}
    profiles: dict[str, str | None] = {}
    try:
        with claimed_addresses(args.processes) as bare_addrs:
            servers = [
                server_pair(factory, prefix, n + 1, cluster="bench-status.example.com", admin=ADMIN)
                for n in range(args.processes)
            ]
            idle = servers[0].idle
            first = Endpoint(idle.addr, 8080, get_request(idle.addr, 8080, "/v1/bootstrap"))
            status, body = asyncio.run(fetch_once(first))
            if status != 200:
                raise RuntimeError(f"GET /v1/bootstrap answered {status}")
            for addr in bare_addrs:
                bares.append(start_bare(base, addr, body, prefix))
            if prefix:
                os.sched_setaffinity(0, {LOAD_CPU})
            chosen = [
                variant
                for one, addr, bare in zip(servers, bare_addrs, bares, strict=True)
                for variant in variants(one, addr, bare.pid)
            ]
            results, failures = asyncio.run(measure(chosen, levels, args.runs, args.requests))
            if args.profile:
                profiles = profile_variants(chosen, args.requests)
    except Exception as exc:  # the run is broken: say so, exit 1
        failures.append(f"{type(exc).__name__}: {exc}")
    finally:
        for bare in bares:
            bare.terminate()
            bare.wait(10)
        kept = base.with_name(base.name + "-kept")
        failures += factory.close(failed=bool(failures) or args.keep, artefacts=kept)
        if args.keep or failures:
            print(f"data directories kept in {kept}")
        shutil.rmtree(base, ignore_errors=True)
    cells = {key: summary(blasts) for key, blasts in results.items() if blasts}
    rows: list[list[object]] = []
    for label in LABELS:
        for concurrency in levels:
            cell = cells.get((label, concurrency))
            if cell:
                rows.append(
                    [
                        label,
                        concurrency,
                        cell["rate"],
                        cell["p50_ms"],
                        cell["p99_ms"],
                        cell["per_cpu_second"],
                    ]
                )
    print()
    print(
        f"GET /v1/bootstrap, {args.requests} requests per measurement, {args.runs} rounds, "
        f"{args.processes} processes of each server"
    )
    headers = ("variant", "conc.", "median req/s", "p50 ms", "p99 ms", "req per server CPU s")
    print(table(headers, rows, decimals=1))
    focus = {label: cells[(label, FOCUS)] for label in LABELS if (label, FOCUS) in cells}
    if {"HTTP", BARE} <= set(focus):
        print(
            f"per server CPU second at c={FOCUS} (contention-proof, informative): "
            + ", ".join(
                f"{label}/{of} {100 * focus[label]['per_cpu_second'] / base:.0f} %"
                for label, of in (("HTTP", BARE), ("Basic", "HTTP"), ("JWT", "HTTP"))
                if label in focus and (base := focus[of]["per_cpu_second"])
            )
        )
    print(
        f"each process's median req/s at c={FOCUS}: "
        + "; ".join(
            f"{label} " + " ".join(f"{rate:.0f}" for rate in focus[label]["process_rates"])
            for label in LABELS
            if label in focus
        )
    )
    checks = targets(cells, profiles)
    print(target_lines(checks))
    series = [
        {
            "plot": "status_throughput",
            "label": label,
            "x": [c for c in levels if (label, c) in cells],
            "y": [round(cells[(label, c)]["rate"], 1) for c in levels if (label, c) in cells],
            "x_label": "concurrent connections",
            "y_label": "req/s",
        }
        for label in LABELS
    ]
    document: dict[str, Any] = {
        "machine": info,
        "requests": args.requests,
        "pinned": bool(prefix),
        "processes": args.processes,
        "auth_transport": "http",
        "cells": [
            {"variant": label, "concurrency": c, **cell} for (label, c), cell in cells.items()
        ],
        "targets": [check.as_dict() for check in checks],
        "series": series,
    }
    return finish(args.json, document, failures)


if __name__ == "__main__":
    sys.exit(main())
