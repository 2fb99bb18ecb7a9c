"""Benchmark: create_cluster, POST → completed, against a bare etcd started the same way.

    .venv/bin/python bench/bench_create.py [--runs 5] [--json out.json] [--keep] [--profile]

Each run, in alternating order (cnm first on even runs, etcd first on odd ones, so slow phases of
the machine hit both series):

- cnm: a fresh agent (`cnm node run`, fresh data dir, own 127.x.y.z address) is started and
  waited for untimed; the clock runs from sending POST /v1/bootstrap/create_cluster until the
  first GET /v1/bootstrap (Basic auth, one every POLL_INTERVAL) that shows `completed`. Then the
  agent gets SIGTERM and must exit 0 and leave no etcd behind.
- bare etcd: the same binary with cnm's own launcher (`EtcdProcess`, hence `etcd_arguments`,
  setpriv, the `EtcdMemberSpec` heartbeat/election defaults), a fresh cluster CA and node
  certificate from `cnm.security.pki` (mutual TLS for clients and peers), on its own address;
  the clock runs from spawning the process until the first linearizable read through cnm's
  `EtcdStore` succeeds, waited for with cnm's own `EtcdProcess.wait_ready` (it polls every
  10 ms, the POLL_INTERVAL).

Alongside, it reconstructs from outside where cnm's time goes: the phase transitions seen by the
polls, and the millisecond timestamps of the agent's JSON log events and of etcd's log.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from agent_logs import bootstrap_state, etcd_log_times, event_times, is_event
from cnm.cluster.runtime import open_store
from cnm.errors import StoreError, StoreUnavailable
from cnm.store.etcd_process import EtcdProcess
from common import (
    BREAKDOWN_HEADERS,
    STATS_HEADERS,
    AgentFactory,
    RunFailed,
    Stats,
    Target,
    base_parser,
    basic,
    begin,
    claimed_addresses,
    finish,
    lone_member,
    now,
    phase_line,
    segment_rows,
    stats_row,
    stats_segment,
    table,
    target_lines,
)
from profiling import PySpy

ADMIN = ("admin@example.com", "bench-pass-1")
POLL_INTERVAL = 0.010
TARGET_SECONDS = 1.0

CREATE_BODY = {
    "action": "create_cluster",
    "cluster": {"name": "bench.example.com"},
    "credentials": {"username": ADMIN[0], "password": ADMIN[1]},
}

# Agent log events (JSON log format, millisecond timestamps) that mark the steps of create.
LOG_EVENTS = {
    "accepted": bootstrap_state("initiated"),
    "certificates": bootstrap_state("creating_cluster"),
    "etcd_spawned": is_event("store_member_started"),
    "https_switched": is_event("https_switched"),
    "completed_log": bootstrap_state("completed"),
}
# etcd 3.4 logs a warning for each request through its JSON gateway made with a client
# certificate: the first one is cnm's first read that etcd answered (the end of phase `store`).
ETCD_FIRST_REQUEST = "gRPC-gateway"

# The breakdown: (label, source, from-event, to-event); events are seconds after POST was sent.
SEGMENTS = [
    ("POST, checks (-> phase certificates)", "agent log", None, "certificates"),
    ("certificates (-> etcd spawned)", "agent log", "certificates", "etcd_spawned"),
    ("store: etcd spawned -> first read served", "etcd log", "etcd_spawned", "etcd_ready"),
    ("records, snapshot, HTTPS (-> completed)", "agent log", "etcd_ready", "completed_log"),
    ("completed -> seen by poll (auth)", "poll", "completed_log", "completed"),
]


@dataclass
class CnmRun:
    seconds: float
    # Seconds after POST was sent: first poll showing each phase, and the log/etcd events.
    events: dict[str, float] = field(default_factory=dict)
    profile: str | None = None  # with --profile: py-spy's summary of the agent during create


# --- cnm ----------------------------------------------------------------------------------------


def run_cnm(factory: AgentFactory, name: str, timeout: float, profile: bool = False) -> CnmRun:
    agent = factory.make(name, extra_args=["--log-format", "json"])
    spy = None
    try:
        agent.start()
        assert agent.process is not None
        with contextlib.ExitStack() as stack:
            if profile:  # the agent only (not its etcd), from before the POST to completed
                spy = stack.enter_context(
                    PySpy(agent.process.pid, f"bench_create-{name}", rate=250)
                )
                time.sleep(0.5)  # untimed: py-spy attaches before the POST goes out
            wall_start, events = _create(agent.http_url, timeout)
    except (RunFailed, AssertionError, httpx.HTTPError, ValueError, KeyError) as exc:
        with contextlib.suppress(AssertionError):
            agent.stop()  # the factory kills what is left at the end
        if isinstance(exc, RunFailed):
            raise
        raise RunFailed(f"{type(exc).__name__}: {exc}") from None
    try:
        code = agent.stop()
    except AssertionError as exc:
        raise RunFailed(str(exc)) from None
    if code != 0:
        raise RunFailed(f"agent exited with code {code} after SIGTERM")
    if agent.etcd_pids():
        raise RunFailed("agent exited but its etcd is still running")

    for event, stamp in event_times(agent.log_file, LOG_EVENTS).items():
        events[event] = stamp - wall_start
    etcd_log = agent.layout.etcd_log
    ready = etcd_log_times(etcd_log, {"etcd_ready": ETCD_FIRST_REQUEST})
    if "etcd_ready" in ready:
        events["etcd_ready"] = ready["etcd_ready"] - wall_start
    elif "poll_records" in events:  # another etcd version: the poll's view, 10 ms coarse
        events["etcd_ready"] = events["poll_records"]
    return CnmRun(events["completed"], events, spy.summary_path if spy else None)


def _create(url: str, timeout: float) -> tuple[float, dict[str, float]]:
    """POST create_cluster and poll until completed: (wall-clock time of the POST, events in
    seconds after it, `completed` being the sample)."""
    auth = basic(*ADMIN)
    with httpx.Client(timeout=5.0) as client:
        # Untimed: opens the connection the timed requests reuse, and checks the starting state.
        idle = client.get(url + "/v1/bootstrap").json()["bootstrap_status"]
        if idle["state"] != "idle":
            raise RunFailed(f"fresh agent is not idle: {idle}")
        wall_start = time.time()
        start = now()
        response = client.post(url + "/v1/bootstrap/create_cluster", json=CREATE_BODY)
        events = {"post_answered": now() - start}
        if response.status_code != 200:
            raise RunFailed(f"POST answered {response.status_code}: {response.text}")
        while True:
            status = client.get(url + "/v1/bootstrap", headers=auth)
            seen = now() - start
            if status.status_code != 200:
                raise RunFailed(f"GET /v1/bootstrap answered {status.status_code}: {status.text}")
            bootstrap = status.json()["bootstrap_status"]
            state = bootstrap["state"]
            events.setdefault(f"poll_{bootstrap.get('phase') or state}", seen)
            if state == "completed":
                events["completed"] = seen
                return wall_start, events
            if state == "error":
                raise RunFailed(
                    f"create ended in error after {seen:.3f} s: {bootstrap.get('error_code')} "
                    f"{bootstrap.get('error_details')}"
                )
            if seen > timeout:
                raise RunFailed(
                    f"not completed within {timeout:g} s (state {state}, phase "
                    f"{bootstrap.get('phase')})"
                )
            time.sleep(POLL_INTERVAL)


# --- bare etcd ----------------------------------------------------------------------------------


async def _bare_etcd(addr: str, directory: Path, timeout: float) -> float:
    tls, spec = lone_member(directory, addr, "node-1", str(uuid.uuid4()))
    etcd = EtcdProcess("etcd", spec)
    store = open_store((spec.client_url,), tls)
    try:
        start = now()
        await etcd.start()
        # etcd 3.4 accepts connections before it has a leader and answers them once it has one,
        # so a read usually waits inside the request rather than in wait_ready's loop.
        await etcd.wait_ready(store, timeout=timeout)
        return now() - start
    except StoreUnavailable:
        raise RunFailed(f"etcd not serving within {timeout:g} s: {etcd.log_tail()}") from None
    except StoreError as exc:
        raise RunFailed(f"etcd did not serve: {exc.message}") from None
    finally:
        await store.close()
        await etcd.stop()


def run_etcd(base: Path, name: str, timeout: float) -> float:
    with claimed_addresses(1) as (addr,):
        return asyncio.run(_bare_etcd(addr, base / name, timeout))


# --- report -------------------------------------------------------------------------------------


def breakdown(runs: list[CnmRun]) -> tuple[str, list[dict[str, Any]]]:
    rows, document = segment_rows(SEGMENTS, [run.events for run in runs])
    outside = [
        run.seconds - (run.events["etcd_ready"] - run.events["etcd_spawned"])
        for run in runs
        if "etcd_ready" in run.events and "etcd_spawned" in run.events
    ]
    for label, source, values in (
        ("total (POST -> completed seen)", "poll", [run.seconds for run in runs]),
        ("total minus store segment: cnm's own", "derived", outside),
    ):
        if values:
            stats_segment(rows, document, label, source, values)
    return table(BREAKDOWN_HEADERS, rows), document


def measure(args: argparse.Namespace) -> tuple[list[CnmRun], list[float], list[str]]:
    """All runs, interleaved; returns the cnm runs, the etcd samples and the failures."""
    base = Path(tempfile.mkdtemp(prefix="cnm-bench-create-"))
    factory = AgentFactory(base)
    cnm_runs: list[CnmRun] = []
    etcd_times: list[float] = []
    failures: list[str] = []
    try:
        for index in range(args.warmup + args.runs):
            warm = index < args.warmup
            label = f"warm-up {index + 1}" if warm else f"run {index - args.warmup + 1}"
            order = ("cnm", "etcd") if index % 2 == 0 else ("etcd", "cnm")
            results: dict[str, str] = {}
            for kind in order:
                try:
                    if kind == "cnm":
                        run = run_cnm(factory, f"cnm-{index}", args.timeout, args.profile)
                        seconds = run.seconds
                        if not warm:
                            cnm_runs.append(run)
                    else:
                        seconds = run_etcd(base, f"etcd-{index}", args.timeout)
                        if not warm:
                            etcd_times.append(seconds)
                    results[kind] = f"{kind} {seconds:.3f} s"
                except RunFailed as exc:
                    failures.append(f"{label} {kind}: {exc}")
                    results[kind] = f"{kind} FAILED"
            print(f"  {label}: " + ", ".join(results[kind] for kind in order), flush=True)
    finally:
        factory.close(failed=False, artefacts=base)
        if args.keep or failures:
            print(f"data directories (agent.log, logs/etcd.log) kept in {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)
    return cnm_runs, etcd_times, failures


def main(argv: list[str] | None = None) -> int:
    parser = base_parser("create_cluster POST -> completed, beside a bare etcd start.")
    parser.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        help="a run not done after this many seconds fails (default 10: clients give up then)",
    )
    parser.add_argument(
        "--warmup", type=int, default=0, help="untimed runs of each kind first (default 0)"
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="py-spy on each cnm agent during its create (bench/profiling.py); the document's "
        "profile is the slowest run's",
    )
    started = begin(
        parser,
        argv,
        "create_cluster: POST /v1/bootstrap/create_cluster -> first poll showing completed",
    )
    if started is None:
        return 1
    args, info = started
    print(
        f"{args.runs} runs of each, interleaved, {args.warmup} warm-up. The poll interval "
        f"({POLL_INTERVAL * 1000:.0f} ms) bounds the resolution:\n"
        "a cnm sample ends at the first authenticated GET showing `completed` (up to one "
        "interval + one GET late),\nan etcd sample at its first successful read (up to one "
        "interval late)."
    )
    cnm_runs, etcd_times, failures = measure(args)
    cnm_times = [run.seconds for run in cnm_runs]

    print()
    rows = []
    if cnm_times:
        rows.append(stats_row("cnm create_cluster", cnm_times))
    if etcd_times:
        rows.append(stats_row("bare etcd start", etcd_times))
    print(table(STATS_HEADERS, rows) if rows else "no successful runs")
    document: dict[str, Any] = {
        "benchmark": "create_cluster",
        "machine": info,
        "runs": args.runs,
        "warmup": args.warmup,
        "poll_interval_s": POLL_INTERVAL,
        "timeout_s": args.timeout,
        "cnm_seconds": cnm_times,
        "etcd_seconds": etcd_times,
        "cnm_events": [run.events for run in cnm_runs],
        "failures": failures,
    }
    if etcd_times:
        document["etcd"] = Stats.of(etcd_times).as_dict()
    if cnm_times:
        cnm_median = Stats.of(cnm_times).median
        document["cnm"] = Stats.of(cnm_times).as_dict()
        if etcd_times:
            ratio = cnm_median / Stats.of(etcd_times).median
            document["ratio"] = ratio
            print(f"ratio of medians (cnm / etcd): {ratio:.2f}")
        verdict = "PASS" if cnm_median <= TARGET_SECONDS else "MISS"
        document.update(target_s=TARGET_SECONDS, verdict=verdict)

        text, segments = breakdown(cnm_runs)
        document["breakdown"] = segments
        print()
        print("where cnm's time goes (from outside: agent JSON log, etcd log, polls; seconds):")
        print(text)
        phases = ("checks", "certificates", "store", "records", "completed")
        print(phase_line(phases, [run.events for run in cnm_runs]))
    # No successful cnm run is a MISS too (value None), never a missing line in the report.
    baseline = (
        f"bare etcd start median {Stats.of(etcd_times).median:.3f} s"
        if etcd_times
        else "bare etcd start: no successful run"
    )
    target = Target(
        "create_cluster median",
        Stats.of(cnm_times).median if cnm_times else None,
        TARGET_SECONDS,
        "s",
        baseline=baseline,
    )
    document["targets"] = [target.as_dict()]
    profiled = [run for run in cnm_runs if run.profile]
    if profiled:
        document["profile"] = max(profiled, key=lambda run: run.seconds).profile
    print(target_lines([target]))
    return finish(args.json, document, failures)


if __name__ == "__main__":
    sys.exit(main())
