"""Benchmark: join_cluster, POST → completed, at growing cluster sizes; 20 joins at once; and the
time until a third node gives the store 3 voters, beside raw etcd doing the same member steps.

    .venv/bin/python bench/bench_join.py [--sizes 2,10,30] [--window 5] [--burst 20] [--runs 5]
                                         [--json out.json] [--keep] [--timeout 20]
                                         [--parts sizes,burst,voters]

Three parts, each with a baseline measured in the same process (these machines are noisy):

1. sizes: one cluster built node by node: node 1 creates it, nodes 2..N join one after the other
   through node 1. Each join is timed from sending POST /v1/bootstrap/join_cluster on the joining
   agent until the first GET /v1/bootstrap (Basic auth, one every POLL_INTERVAL) that shows
   `completed`; "size N" is the join that makes the cluster N nodes. The medians are taken over
   `--window` consecutive joins around each size of `--sizes`. Baseline, alternately before and
   after each join: the store operations a join makes (the member's uid allocation read and
   compare-and-set, then from a fresh mutual-TLS client the joiner's record read and
   compare-and-set and the snapshot load of /cnm/), with cnm's `EtcdStore` against the same etcd
   at the same moment: etcd's share of a join, the rest is cnm's.
2. burst: a fresh one-node cluster and `--burst` fresh agents; every agent gets its POST at the
   same moment (one thread each, behind a barrier). The wall time runs from the first POST until
   the last joining agent logs `completed` (JSON logs, milliseconds); each agent is also polled
   every BURST_POLL_INTERVAL, which gives the operator's view and the outcome (failures, state
   `error`, are counted with their error codes). Baseline, just before: the store operations of
   as many joins at once (allocations serialised as on one member, the joiners' parts in
   parallel). The CPU used meanwhile by the agents, etcd, this benchmark and the rest of the
   machine is read from /proc.
3. voters: a fresh 3-node cluster (create, join, join); the time from the third join (POST, and
   completed) until GET /v1/nodes on node 1 shows 3 nodes with `store_role: voter`. Baseline,
   interleaved run by run: raw etcd with cnm's own launcher and store client: a one-member etcd,
   then for members 2 and 3 `member_add` (learner) → start with `initial-cluster-state
   existing` → `member_promote` polled until etcd accepts. etcd refuses to add a member
   ("unhealthy cluster") until every voter has been connected for 5 s (its HealthInterval), so
   after member 2's promotion the baseline retries the add every ADD_RETRY_INTERVAL, as cnm
   retries at its own pace; both totals are shown with and without that wait, which runs from
   the previous promotion to the start of the add that etcd accepted.

Where a join's time goes is reconstructed from outside: the phases seen by the polls and the
millisecond timestamps of the joining agent's and the member's JSON logs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx

from cnm.cluster import model
from cnm.cluster.runtime import ClusterTls, node_cert_sans, open_store
from cnm.errors import StoreError
from cnm.security import pki
from cnm.store.base import Compare, Get, MembershipChangeRefused, Put
from cnm.store.etcd import EtcdStore
from cnm.store.etcd_process import EtcdMemberSpec, EtcdProcess
from common import (
    BREAKDOWN_HEADERS,
    Agent,
    AgentFactory,
    RunFailed,
    Stats,
    base_parser,
    basic,
    claimed_addresses,
    cpu_seconds,
    etcd_missing,
    etcd_pids_under,
    finish,
    log_times,
    machine_busy_seconds,
    machine_info,
    machine_line,
    member_spec,
    node_tls,
    now,
    phase_line,
    segment_rows,
    start_agents,
    stats_segment,
    table,
)

ADMIN = ("admin@example.com", "bench-pass-1")
LOG_JSON = ["--log-format", "json"]
POLL_INTERVAL = 0.010  # one joining agent, polled while it joins
# Per agent in the burst. Each GET costs the agent ~1 ms of CPU: polling 20 agents every 50 ms
# through a 7 s burst would add ~3 CPU-s; the agent logs give the exact times anyway.
BURST_POLL_INTERVAL = 0.250
STOP_TIMEOUT = 10.0  # an agent gets this long to exit after SIGTERM
NODES_POLL_INTERVAL = 0.020  # GET /v1/nodes while waiting for voters
ADD_RETRY_INTERVAL = 0.1  # raw etcd: retry of a refused member_add
PROMOTE_INTERVAL = 0.05  # raw etcd: member_promote polling, as cnm's voters.py does
JOIN_TARGET = 0.3
BURST_TARGET = 3.0
VOTERS_RATIO_TARGET = 1.5
PROBE_KEY = "/cnm/ready-probe"
FLOOR_PREFIX = "/cnm-bench/join/"  # outside /cnm/: the agents' snapshots never see it
FLOOR_RECORD = json.dumps({f"field_{i:02d}": "x" * 16 for i in range(40)}).encode()  # ~1.2 kB

# Log messages (JSON log format, millisecond timestamps) that mark the steps of a join.
JOINER_EVENTS = {
    "joining": "bootstrap state initiated -> joining_cluster",
    "trusted": "trusting the cluster CA of",
    "joined": "joined cluster",
    "completed_log": "bootstrap state joining_cluster -> completed",
}
# (label, source, from-event, to-event); events are seconds after the POST was sent.
SEGMENTS = [
    ("POST, checks (-> joining_cluster)", "joiner log", None, "joining"),
    ("contacting: fetch cluster CA (-> trusted)", "joiner log", "joining", "trusted"),
    ("handshake: clock x4, CSR, admission", "member log", "trusted", "admitted"),
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
VOTER_DONE = re.compile(r"became a store voter .* in ([0-9.]+) s")
NOT_READY = "store not ready for another member yet"


def _admitted_marker(addr: str) -> str:
    return f" at {addr} (node key"  # membership.py: "admitted node 7 at 127.100.0.9 (node key …"


@dataclass
class JoinRun:
    addr: str
    state: str  # completed | error
    seconds: float  # POST sent -> first poll showing `state`
    start: float  # now() when the POST was sent
    wall_start: float  # time.time() then, to place log timestamps
    events: dict[str, float] = field(default_factory=dict)
    error_code: str | None = None
    error_message: str | None = None
    size: int = 0
    roles_at_post: str = ""
    floor: float | None = None
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds used during the join


# --- helpers on agents --------------------------------------------------------------------------


def create(agent: Agent, timeout: float) -> None:
    body = {
        "action": "create_cluster",
        "cluster": {"name": "bench.example.com"},
        "credentials": {"username": ADMIN[0], "password": ADMIN[1]},
    }
    response = agent.post("/v1/bootstrap/create_cluster", body)
    if response.status_code != 200:
        raise RunFailed(f"create_cluster answered {response.status_code}: {response.text}")
    try:
        status = agent.wait_state("completed", "error", auth=ADMIN, timeout=timeout)
    except AssertionError as exc:
        raise RunFailed(f"create_cluster: {exc}") from None
    if status["bootstrap_status"]["state"] != "completed":
        raise RunFailed(f"create_cluster failed: {status['bootstrap_status']}")


def join_body(members: Sequence[str]) -> dict[str, Any]:
    return {
        "action": "join_cluster",
        "cluster": {"nodes": list(members)},
        "credentials": {"username": ADMIN[0], "password": ADMIN[1]},
    }


def post_join(
    agent: Agent,
    members: Sequence[str],
    *,
    poll: float,
    timeout: float,
    before_post: Callable[[], object] | None = None,
) -> JoinRun:
    """POST join_cluster and poll until completed or error. Raises `RunFailed` when there is no
    outcome (HTTP failure, timeout); an `error` state is an outcome, returned."""
    url = agent.http_url
    auth = basic(*ADMIN)
    try:
        with httpx.Client(timeout=5.0) as client:
            # Untimed: opens the connection the timed requests reuse, checks the starting state.
            idle = client.get(url + "/v1/bootstrap").json()["bootstrap_status"]
            if idle["state"] != "idle":
                raise RunFailed(f"{agent.addr}: fresh agent is not idle: {idle}")
            if before_post is not None:
                before_post()
            wall_start = time.time()
            start = now()
            response = client.post(url + "/v1/bootstrap/join_cluster", json=join_body(members))
            events = {"post_answered": now() - start}
            if response.status_code != 200:
                raise RunFailed(
                    f"{agent.addr}: POST answered {response.status_code}: {response.text}"
                )
            while True:
                status = client.get(url + "/v1/bootstrap", headers=auth)
                seen = now() - start
                if status.status_code != 200:
                    raise RunFailed(
                        f"{agent.addr}: GET /v1/bootstrap answered {status.status_code}: "
                        f"{status.text}"
                    )
                bootstrap = status.json()["bootstrap_status"]
                state = bootstrap["state"]
                events.setdefault(f"poll_{bootstrap.get('phase') or state}", seen)
                if state in ("completed", "error"):
                    events[state] = seen
                    details = bootstrap.get("error_details") or {}
                    return JoinRun(
                        agent.addr,
                        state,
                        seen,
                        start,
                        wall_start,
                        events,
                        bootstrap.get("error_code"),
                        details.get("message") if isinstance(details, dict) else str(details),
                    )
                if seen > timeout:
                    raise RunFailed(
                        f"{agent.addr}: join not done within {timeout:g} s (state {state}, "
                        f"phase {bootstrap.get('phase')})"
                    )
                time.sleep(poll)
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        raise RunFailed(f"{agent.addr}: {type(exc).__name__}: {exc}") from None


def add_log_events(run: JoinRun, joiner: Agent, member: Agent) -> None:
    """The joiner's and the member's log events, in seconds after the POST."""
    for name, stamp in log_times(joiner.log_file, "time", JOINER_EVENTS).items():
        run.events[name] = stamp - run.wall_start
    admitted = log_times(member.log_file, "time", {"admitted": _admitted_marker(run.addr)})
    if "admitted" in admitted:
        run.events["admitted"] = admitted["admitted"] - run.wall_start


def nodes_of(agent: Agent) -> list[dict[str, Any]]:
    response = agent.get("/v1/nodes", auth=ADMIN)
    if response.status_code != 200:
        raise RunFailed(f"GET /v1/nodes on {agent.addr} answered {response.status_code}")
    nodes: list[dict[str, Any]] = response.json()
    return nodes


def roles_text(nodes: list[dict[str, Any]]) -> str:
    roles = Counter(str(node.get("store_role") or "client") for node in nodes)
    parts = [f"{roles[role]} {role}" for role in ("voter", "learner") if roles[role]]
    return " + ".join(parts) or "none"


def voter_endpoints(nodes: list[dict[str, Any]]) -> tuple[str, ...]:
    return tuple(
        str(node["store_client_url"])
        for node in nodes
        if node.get("store_role") == "voter" and node.get("store_client_url")
    )


def _terminate(agents: Sequence[Agent], label: str) -> list[str]:
    """SIGTERM the agents together and wait for them with one deadline; an agent still running
    then is reported and killed (the harness would give each 15 s more, one after the other)."""
    problems = []
    for agent in agents:
        assert agent.process is not None
        agent.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    for agent in agents:
        assert agent.process is not None
        try:
            code = agent.process.wait(max(deadline - time.monotonic(), 0.01))
        except subprocess.TimeoutExpired:
            problems.append(
                f"{label}: agent {agent.addr} still running {STOP_TIMEOUT:g} s after SIGTERM "
                f"(killed; its log ends with: {_last_message(agent)})"
            )
            agent.process.kill()
            agent.process.wait()
            continue
        if code != 0:
            problems.append(f"{label}: agent {agent.addr} exited with {code} after SIGTERM")
    return problems


def _last_message(agent: Agent) -> str:
    lines = agent.log().strip().splitlines()
    try:
        return str(json.loads(lines[-1]).get("message"))
    except (IndexError, ValueError, AttributeError):
        return lines[-1] if lines else "(empty log)"


def stop_cluster(factory: AgentFactory, label: str, artefacts: Path) -> list[str]:
    """Stop a cluster's agents, check exit codes and leftover etcd processes, release the
    addresses; returns the problems. The agents without a store member go first, all at once,
    then the voters one at a time: stopped together, a voter's etcd tries to hand its leadership
    to members that are going away and its agent kills it after 3 s."""
    running = [a for a in factory.agents if a.process is not None and a.process.poll() is None]
    voters = [a for a in running if a.etcd_pids()]
    problems = _terminate([a for a in running if a not in voters], label)
    for voter in voters:
        problems += _terminate([voter], label)
    deadline = time.monotonic() + 2.0
    left = [a for a in factory.agents if a.etcd_pids()]
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = [a for a in left if a.etcd_pids()]
    problems += [f"{label}: etcd of {a.addr} still running after its agent exited" for a in left]
    problems += [
        f"{label}: {report}" for report in factory.close(failed=False, artefacts=artefacts)
    ]
    return problems


# --- the store floor: a join's store operations on raw etcd -------------------------------------


async def _join_store_ops(
    member: EtcdStore, lock: asyncio.Lock, endpoints: tuple[str, ...], tls: ClusterTls
) -> None:
    """What a join asks of the store, in the order it does: the member allocates a uid
    (`Admissions._allocate`: one read transaction, one compare-and-set of counter, index and
    record, under its lock); the joiner opens its own mutual-TLS client, completes its record
    (`_write_own_record`: read, compare-and-set) and loads the snapshot (a range over /cnm/)."""
    node_key = secrets.token_hex(16)
    index_key = f"{FLOOR_PREFIX}node-keys/{node_key}"
    counter_key = f"{FLOOR_PREFIX}counter"
    async with lock:
        found = await member.txn([Compare.exists(index_key)], [Get(index_key)], [Get(counter_key)])
        counter = found.reads[0][0] if found.reads and found.reads[0] else None
        uid = (json.loads(counter.value)["last"] if counter else 0) + 1
        record_key = f"{FLOOR_PREFIX}nodes/{uid}"
        guard = (
            Compare.mod(counter_key, "=", counter.mod_revision)
            if counter
            else Compare.absent(counter_key)
        )
        result = await member.txn(
            [guard, Compare.absent(index_key)],
            [
                Put(counter_key, json.dumps({"last": uid}).encode()),
                Put(index_key, json.dumps({"uid": uid}).encode()),
                Put(record_key, FLOOR_RECORD),
            ],
        )
        if not result.succeeded:
            raise RunFailed("store floor: the allocation compare-and-set lost unexpectedly")
    joiner = open_store(endpoints, tls)
    try:
        current = await joiner.get(record_key)
        if current is None:
            raise RunFailed("store floor: the record vanished")
        await joiner.txn(
            [Compare.mod(record_key, "=", current.mod_revision)], [Put(record_key, FLOOR_RECORD)]
        )
        await joiner.get_prefix(model.PREFIX)
    finally:
        # Not part of a join (the joiner keeps its client); closing is quick either way.
        await joiner.close()


async def _store_floor(endpoints: tuple[str, ...], tls: ClusterTls, joins: int) -> float:
    member = open_store(endpoints, tls)
    try:
        await member.get(PROBE_KEY)  # untimed: the member's client is warm in a real join
        lock = asyncio.Lock()
        start = now()
        await asyncio.gather(*(_join_store_ops(member, lock, endpoints, tls) for _ in range(joins)))
        return now() - start
    finally:
        await member.close()


def store_floor(member: Agent, endpoints: tuple[str, ...], joins: int = 1) -> float:
    try:
        return asyncio.run(_store_floor(endpoints, ClusterTls.under(member.data_dir), joins))
    except StoreError as exc:
        raise RunFailed(f"store floor: {exc.message}") from None


# --- CPU accounting: whether a join waits or computes, and who else used the machine -----------


def cpu_watch(joiner: Agent, member: Agent, etcd: Sequence[int]) -> dict[str, list[int]]:
    assert joiner.process is not None and member.process is not None
    return {"joiner": [joiner.process.pid], "member": [member.process.pid], "etcd": list(etcd)}


def cpu_read(watched: dict[str, list[int]]) -> dict[str, float]:
    """CPU seconds so far of each group of processes, and of the whole machine (busy time)."""
    found = {name: sum(cpu_seconds(pid) for pid in pids) for name, pids in watched.items()}
    found["machine"] = machine_busy_seconds()
    return found


def cpu_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """The CPU each group used between two readings, and `others`: what the rest of the machine
    used (other agents, this benchmark, anything else running on it)."""
    used = {name: after[name] - before[name] for name in after}
    # /proc counts in clock ticks (10 ms) per process: a few ticks of rounding, never below 0.
    used["others"] = max(0.0, used["machine"] - sum(v for k, v in used.items() if k != "machine"))
    return used


# --- part 1: join time at growing cluster size --------------------------------------------------


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


# --- part 2: many joins at once -----------------------------------------------------------------


@dataclass
class BurstResult:
    joins: int
    completed: int
    failed: int
    error_codes: dict[str, int]
    wall_polls: float | None  # first POST -> last `completed` seen by the polls
    wall_logs: float | None  # first POST -> last "-> completed" in the joiners' logs
    floor: float | None
    per_join: list[float]  # POST -> completed seen by the polls
    per_join_logs: list[float]  # POST -> completed in the agent's log
    nodes_after: int
    roles_after: str
    messages: list[str]
    window: float = 0.0  # threads started -> all threads done
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds used in that window


def part_burst(args: argparse.Namespace, base: Path, failures: list[str]) -> BurstResult | None:
    factory = AgentFactory(base / "burst")
    member = factory.make("member", extra_args=LOG_JSON)
    joiners = [factory.make(f"joiner-{i}", extra_args=LOG_JSON) for i in range(1, args.burst + 1)]
    try:
        started = now()
        start_agents([member, *joiners])
        create(member, args.timeout)
        print(
            f"  {args.burst + 1} agents started, member created the cluster "
            f"({now() - started:.1f} s, untimed)",
            flush=True,
        )
        floor = store_floor(member, voter_endpoints(nodes_of(member)), joins=args.burst)
        print(
            f"  store floor: the store operations of {args.burst} joins at once on raw etcd: "
            f"{floor:.3f} s",
            flush=True,
        )

        barrier = threading.Barrier(args.burst)
        outcomes: list[JoinRun | str] = ["not run"] * args.burst

        def worker(index: int) -> None:
            try:
                outcomes[index] = post_join(
                    joiners[index],
                    [member.addr],
                    poll=args.burst_poll,
                    timeout=args.timeout,
                    before_post=barrier.wait,
                )
            except (RunFailed, threading.BrokenBarrierError) as exc:
                outcomes[index] = str(exc)
                barrier.abort()

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(args.burst)]
        groups = {
            "member": [member.process.pid] if member.process else [],
            "joiners": [j.process.pid for j in joiners if j.process is not None],
            "benchmark": [os.getpid()],
        }
        etcd_before = {pid: cpu_seconds(pid) for pid in etcd_pids_under(factory.base)}
        cpu_before = cpu_read(groups)
        window_start = now()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        window = now() - window_start
        cpu = cpu_delta(cpu_before, cpu_read(groups))
        # Members promoted meanwhile started new etcd processes: all their CPU is new.
        cpu["etcd"] = sum(
            cpu_seconds(pid) - etcd_before.get(pid, 0.0) for pid in etcd_pids_under(factory.base)
        )
        cpu["others"] = max(
            0.0, cpu["machine"] - sum(cpu[k] for k in ("member", "joiners", "etcd", "benchmark"))
        )

        runs = [o for o in outcomes if isinstance(o, JoinRun)]
        lost = [o for o in outcomes if isinstance(o, str)]
        failures += [f"burst: no outcome: {text}" for text in lost]
        for run, joiner in zip(outcomes, joiners, strict=True):
            if isinstance(run, JoinRun):
                add_log_events(run, joiner, member)
        done = [run for run in runs if run.state == "completed"]
        failed = [run for run in runs if run.state != "completed"]
        codes = Counter(str(run.error_code) for run in failed) + Counter(
            "no outcome (timeout)" for _ in lost
        )
        first_post = min((run.start for run in runs), default=None)
        wall_polls = (
            max(run.start + run.seconds for run in done) - first_post
            if done and first_post is not None and not failed and not lost
            else None
        )
        first_wall = min((run.wall_start for run in runs), default=None)
        log_ends = [
            run.wall_start + run.events["completed_log"]
            for run in done
            if "completed_log" in run.events
        ]
        wall_logs = (
            max(log_ends) - first_wall
            if first_wall is not None
            and len(log_ends) == len(done)
            and done
            and not failed
            and not lost
            else None
        )
        nodes = nodes_of(member)
        messages = sorted({f"[{run.error_code}] {run.error_message}" for run in failed})
        result = BurstResult(
            joins=args.burst,
            completed=len(done),
            failed=len(failed) + len(lost),
            error_codes=dict(codes),
            wall_polls=wall_polls,
            wall_logs=wall_logs,
            floor=floor,
            per_join=[run.seconds for run in done],
            per_join_logs=[
                run.events["completed_log"] for run in done if "completed_log" in run.events
            ],
            nodes_after=len(nodes),
            roles_after=roles_text(nodes),
            messages=messages,
            window=window,
            cpu=cpu,
        )
        spread = max(run.start for run in runs) - first_post if runs and first_post else 0.0
        print(
            f"  POSTs sent within {spread * 1000:.1f} ms of each other; "
            f"{result.completed} completed, {result.failed} failed; nodes listed after: "
            f"{result.nodes_after}; store: {result.roles_after}",
            flush=True,
        )
        if len(nodes) != 1 + len(done):
            failures.append(
                f"burst: {len(done)} joins completed but node 1 lists {len(nodes)} nodes"
            )
        return result
    except RunFailed as exc:
        failures.append(f"burst: {exc}")
        print(f"  FAILED: {exc}")
        return None
    finally:
        failures += stop_cluster(factory, "burst", base / "artefacts")


def report_burst(result: BurstResult, poll: float) -> dict[str, Any]:
    rows: list[list[object]] = [
        ["cnm: all completed (agent logs, ms)", result.wall_logs],
        [f"cnm: all completed, seen by polls ({poll * 1000:.0f} ms, auth)", result.wall_polls],
        ["store floor: the joins' store ops at once", result.floor],
    ]
    if result.per_join_logs:
        stats = Stats.of(result.per_join_logs)
        rows += [
            ["one join in the burst (agent log): median", stats.median],
            ["one join in the burst (agent log): max", stats.max],
        ]
    print(table((f"{result.joins} joins at once", "wall s"), rows))
    if result.cpu:
        cpus = os.cpu_count() or 1
        used = ", ".join(
            f"{label} {result.cpu[name]:.2f}"
            for name, label in (
                ("member", "member agent"),
                ("joiners", "joining agents"),
                ("etcd", "etcd"),
                ("benchmark", "this benchmark"),
                ("others", "rest of the machine"),
            )
        )
        print(
            f"CPU seconds in the {result.window:.2f} s the burst ran (POSTs until every poll "
            f"done; {cpus} CPUs: {cpus * result.window:.2f} available):\n  {used}; machine busy "
            f"{result.cpu['machine']:.2f}"
        )
    codes = ", ".join(f"{code} x{count}" for code, count in result.error_codes.items())
    print(
        f"completed {result.completed}, failed {result.failed}" + (f" ({codes})" if codes else "")
    )
    for message in result.messages:
        print(f"  {message}")
    ok = result.failed == 0 and result.wall_logs is not None and result.wall_logs <= BURST_TARGET
    verdict = "PASS" if ok else "MISS"
    print(
        f"target: all {result.joins} succeed and all completed (agent logs) within "
        f"{BURST_TARGET:.3f} s → {verdict}"
    )
    return {**asdict(result), "target_s": BURST_TARGET, "verdict": verdict}


# --- part 3: voters -----------------------------------------------------------------------------


@dataclass
class VoterRun:
    kind: str  # cnm | etcd
    seconds: float  # cnm: third join completed -> 3 voters; etcd: first member_add -> promoted
    pacing: float  # 2nd voter promoted -> the 3rd's accepted add: etcd's 5 s rule, and retries
    from_post: float | None = None  # cnm: third join's POST -> 3 voters
    # The same steps as raw etcd: cnm from node 2's first attempt to become a voter (its log)
    # until 3 voters are seen; raw etcd: `seconds`.
    steps: float = 0.0
    events: dict[str, float] = field(default_factory=dict)


def _log_records(path: Path) -> list[tuple[float, str]]:
    """(epoch seconds, message) of every line of an agent's JSON log."""
    records = []
    with contextlib.suppress(FileNotFoundError):
        for line in path.read_text(errors="replace").splitlines():
            try:
                record = json.loads(line)
                stamp = datetime.datetime.fromisoformat(str(record["time"])).timestamp()
            except (ValueError, KeyError, TypeError):
                continue
            records.append((stamp, str(record.get("message"))))
    return records


def voters_cnm(args: argparse.Namespace, base: Path, index: int) -> VoterRun:
    factory = AgentFactory(base / f"voters-cnm-{index}")
    agents = [factory.make(f"node-{n}", extra_args=LOG_JSON) for n in (1, 2, 3)]
    first = agents[0]
    problems: list[str] = []
    try:
        start_agents(agents)
        create(first, args.timeout)
        second = post_join(agents[1], [first.addr], poll=args.poll, timeout=args.timeout)
        if second.state != "completed":
            raise RunFailed(f"second join: [{second.error_code}] {second.error_message}")
        third = post_join(agents[2], [first.addr], poll=args.poll, timeout=args.timeout)
        if third.state != "completed":
            raise RunFailed(f"third join: [{third.error_code}] {third.error_message}")
        completed_at = third.start + third.seconds
        while True:
            nodes = nodes_of(first)
            if len(nodes) == 3 and all(node.get("store_role") == "voter" for node in nodes):
                voters_at = now()
                break
            if now() - completed_at > args.voters_timeout:
                raise RunFailed(
                    f"no 3 voters within {args.voters_timeout:g} s: {roles_text(nodes)}"
                )
            time.sleep(NODES_POLL_INTERVAL)
        # Events from the agents' logs, in seconds after the third POST. A node records its
        # role before it logs "became a store voter": give the last line a moment to appear.
        events: dict[str, float] = {"completed": third.seconds, "voters": voters_at - third.start}
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline and not all(
            any(VOTER_DONE.search(message) for _, message in _log_records(agent.log_file))
            for agent in agents[1:]
        ):
            time.sleep(0.05)
        refused: list[float] = []
        for agent, name in ((agents[1], "node2"), (agents[2], "node3")):
            for stamp, message in _log_records(agent.log_file):
                offset = stamp - third.wall_start
                match = VOTER_DONE.search(message)
                if match:
                    events[f"{name}_voter"] = offset
                    events[f"{name}_attempt"] = offset - float(match.group(1))
                elif NOT_READY in message:
                    refused.append(offset)
        if refused:
            events["first_refusal"] = min(refused)
        if not all(f"{name}_voter" in events for name in ("node2", "node3")):
            raise RunFailed("3 voters listed, but nodes 2 and 3 did not both log their promotion")
        # Whichever node was promoted first (node 2, by uid order): waiting at etcd's pace runs
        # from its promotion to the start of the other's attempt whose learner add etcd accepted
        # (this includes cnm's retry interval); the steps run from the first attempt.
        earlier, later = sorted(("node2", "node3"), key=lambda name: events[f"{name}_voter"])
        pacing = max(0.0, events[f"{later}_attempt"] - events[f"{earlier}_voter"])
        steps = events["voters"] - events[f"{earlier}_attempt"]
        return VoterRun(
            "cnm", voters_at - completed_at, pacing, voters_at - third.start, steps, events
        )
    finally:
        problems = stop_cluster(factory, f"voters cnm run {index + 1}", base / "artefacts")
        if problems:
            raise RunFailed("; ".join(problems))


async def _raw_voters(addrs: list[str], directory: Path, timeout: float) -> VoterRun:
    ca = pki.make_ca("bench")
    token = str(uuid.uuid4())
    specs: list[EtcdMemberSpec] = []
    for number, addr in enumerate(addrs, start=1):
        tls = node_tls(directory / f"tls-{number}", ca, addr, node_cert_sans(addr, []))
        specs.append(
            member_spec(
                f"node-{number}",
                addr,
                tls,
                data_dir=directory / f"etcd-{number}",
                log_file=directory / f"etcd-{number}.log",
                initial_cluster=f"node-1={specs[0].peer_url}" if specs else "",
                initial_state="existing",
                token=token,
            )
        )
    specs[0] = replace(specs[0], initial_cluster=f"node-1={specs[0].peer_url}", initial_state="new")
    processes = [EtcdProcess("etcd", specs[0])]
    store = open_store((specs[0].client_url,), ClusterTls(directory / "tls-1"))
    events: dict[str, float] = {}
    try:
        await processes[0].start()
        await processes[0].wait_ready(store, timeout=timeout)  # untimed: the cluster exists
        start = now()
        deadline = start + timeout
        for number, spec in enumerate(specs[1:], start=2):
            refused_since: float | None = None
            while True:
                attempt = now()
                try:
                    added = await store.member_add([spec.peer_url], learner=True)
                    break
                except MembershipChangeRefused as exc:
                    if not exc.transient or now() > deadline:
                        raise RunFailed(f"member_add of member {number}: {exc.message}") from None
                    if refused_since is None:
                        refused_since = attempt
                        events[f"member{number}_first_refusal"] = attempt - start
                    await asyncio.sleep(ADD_RETRY_INTERVAL)
            events[f"member{number}_add_sent"] = attempt - start
            events[f"member{number}_added"] = now() - start
            initial = ",".join(
                f"{member.name or spec.name}={member.peer_urls[0]}" for member in added
            )
            process = EtcdProcess("etcd", replace(spec, initial_cluster=initial))
            processes.append(process)
            await process.start()
            while not await store.member_promote(added[0].id):
                if not process.running:
                    raise RunFailed(f"etcd member {number} exited: {process.log_tail()}")
                if now() > deadline:
                    raise RunFailed(f"member {number} not promoted within {timeout:g} s")
                await asyncio.sleep(PROMOTE_INTERVAL)
            events[f"member{number}_promoted"] = now() - start
        # Waiting at etcd's pace, as for cnm: from member 2's promotion to the accepted add.
        pacing = max(0.0, events["member3_add_sent"] - events["member2_promoted"])
        total = now() - start
        return VoterRun("etcd", total, pacing, None, total, events)
    except StoreError as exc:
        raise RunFailed(f"raw etcd: {exc.message}") from None
    finally:
        await store.close()
        # One at a time: stopped together, a leader tries to hand over to members that are
        # going away and EtcdProcess kills it after 3 s (the agents' own shutdown pays that).
        for process in processes:
            await process.stop()


def voters_etcd(args: argparse.Namespace, base: Path, index: int) -> VoterRun:
    with claimed_addresses(3) as addrs:
        return asyncio.run(_raw_voters(addrs, base / f"voters-etcd-{index}", args.voters_timeout))


def part_voters(args: argparse.Namespace, base: Path, failures: list[str]) -> list[VoterRun]:
    runs: list[VoterRun] = []
    for index in range(args.runs):
        order = ("cnm", "etcd") if index % 2 == 0 else ("etcd", "cnm")
        shown = {}
        for kind in order:
            try:
                run = (
                    voters_cnm(args, base, index)
                    if kind == "cnm"
                    else voters_etcd(args, base, index)
                )
                runs.append(run)
                extra = f" (from POST {run.from_post:.3f} s)" if run.from_post is not None else ""
                shown[kind] = f"{kind} {run.seconds:.3f} s{extra}, wait for etcd {run.pacing:.3f} s"
            except RunFailed as exc:
                failures.append(f"voters run {index + 1} {kind}: {exc}")
                shown[kind] = f"{kind} FAILED"
        print(f"  run {index + 1}: " + "; ".join(shown[kind] for kind in order), flush=True)
    return runs


def event_medians(runs: list[VoterRun], names: Sequence[str]) -> str:
    """`name median` of each event some run saw, comma-separated."""
    parts = []
    for name in names:
        values = [run.events[name] for run in runs if name in run.events]
        if values:
            parts.append(f"{name} {Stats.of(values).median:.3f}")
    return ", ".join(parts)


def report_voters(runs: list[VoterRun]) -> dict[str, Any]:
    cnm = [run for run in runs if run.kind == "cnm"]
    raw = [run for run in runs if run.kind == "etcd"]
    rows = []
    series: list[tuple[str, list[VoterRun], Callable[[VoterRun], float]]] = [
        ("cnm: third join completed -> 3 voters", cnm, lambda r: r.seconds),
        ("raw etcd: first learner add -> 3rd promoted", raw, lambda r: r.seconds),
        ("cnm: third join POST -> 3 voters", cnm, lambda r: r.from_post or 0.0),
        ("cnm: first voter attempt (log) -> 3 voters", cnm, lambda r: r.steps),
        ("cnm: the same, minus the wait for etcd", cnm, lambda r: r.steps - r.pacing),
        ("raw etcd: total minus the wait for etcd", raw, lambda r: r.seconds - r.pacing),
        ("cnm: wait for etcd (promoted -> next add)", cnm, lambda r: r.pacing),
        ("raw etcd: wait for etcd (promoted -> next add)", raw, lambda r: r.pacing),
    ]
    document: dict[str, Any] = {"runs": [asdict(run) for run in runs]}
    medians: dict[str, float] = {}
    for label, chosen, value in series:
        if not chosen:
            continue
        stats = Stats.of([value(run) for run in chosen])
        medians[label] = stats.median
        rows.append([label, stats.runs, stats.median, stats.p90, stats.min, stats.max])
        document[label] = stats.as_dict()
    print(table(("", "runs", "median s", "p90 s", "min s", "max s"), rows))
    if cnm and raw:
        raw_median = medians[series[1][0]]
        ratio = medians[series[0][0]] / raw_median
        ratio_post = medians[series[2][0]] / raw_median
        ratio_steps = medians[series[3][0]] / raw_median
        ratio_unpaced = medians[series[4][0]] / medians[series[5][0]]
        verdict = "PASS" if ratio <= VOTERS_RATIO_TARGET else "MISS"
        print(
            f"ratio of medians cnm / raw etcd: {ratio:.2f} from the third join completed, "
            f"{ratio_post:.2f} from its POST, {ratio_steps:.2f} over the same steps,\n"
            f"{ratio_unpaced:.2f} over the same steps without the wait for etcd"
        )
        print(f"target: cnm (from completed) ≤ {VOTERS_RATIO_TARGET:.1f} x raw etcd → {verdict}")
        document.update(
            ratio=ratio,
            ratio_from_post=ratio_post,
            ratio_same_steps=ratio_steps,
            ratio_without_wait=ratio_unpaced,
            target_ratio=VOTERS_RATIO_TARGET,
            verdict=verdict,
        )
        cnm_events = (
            "completed",
            "node2_attempt",
            "node2_voter",
            "first_refusal",
            "node3_attempt",
            "node3_voter",
            "voters",
        )
        print("cnm events (median s after the third POST): " + event_medians(cnm, cnm_events))
        raw_events = (
            "member2_added",
            "member2_promoted",
            "member3_first_refusal",
            "member3_add_sent",
            "member3_added",
            "member3_promoted",
        )
        print("raw etcd events (median s after the first add): " + event_medians(raw, raw_events))
    return document


# --- main ---------------------------------------------------------------------------------------


def _sizes(text: str) -> list[int]:
    sizes = sorted({int(part) for part in text.split(",") if part.strip()})
    if not sizes or sizes[0] < 2:
        raise argparse.ArgumentTypeError("sizes are cluster sizes of at least 2")
    return sizes


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(
        "join_cluster POST -> completed at cluster sizes, many joins at once, and the time to "
        "3 store voters beside raw etcd.",
        default_runs=5,
    )
    parser.description = (parser.description or "") + " --runs: voter runs of each kind."
    parser.add_argument(
        "--sizes",
        type=_sizes,
        default=[2, 10, 30],
        help="cluster sizes to report (default 2,10,30; the cluster grows to the largest)",
    )
    parser.add_argument(
        "--window", type=int, default=5, help="joins per reported size (default 5, at least 1)"
    )
    parser.add_argument("--burst", type=int, default=20, help="joins at once (default 20)")
    parser.add_argument(
        "--timeout",
        type=float,
        default=20.0,
        help="a join not done after this many seconds fails (default 20)",
    )
    parser.add_argument(
        "--voters-timeout",
        type=float,
        default=60.0,
        help="seconds to wait for 3 voters (default 60)",
    )
    parser.add_argument(
        "--poll",
        type=float,
        default=POLL_INTERVAL,
        help=f"poll interval of one join, s (default {POLL_INTERVAL})",
    )
    parser.add_argument(
        "--burst-poll",
        type=float,
        default=BURST_POLL_INTERVAL,
        help=f"poll interval per agent in the burst, s (default {BURST_POLL_INTERVAL})",
    )
    parser.add_argument(
        "--parts",
        default="sizes,burst,voters",
        help="which parts to run, comma-separated (default sizes,burst,voters)",
    )
    args = parser.parse_args(argv)
    parts = {part.strip() for part in args.parts.split(",") if part.strip()}
    if unknown := parts - {"sizes", "burst", "voters"}:
        parser.error(f"unknown parts: {', '.join(sorted(unknown))}")
    if args.runs < 1 or args.window < 1 or args.burst < 1:
        parser.error("--runs, --window and --burst must be at least 1")
    if max(args.sizes) < args.window + 1:
        parser.error("the largest size must be at least --window + 1")
    if etcd_missing():
        return 1

    info = machine_info()
    print("join_cluster: POST /v1/bootstrap/join_cluster -> first poll showing completed")
    print(machine_line(info))
    document: dict[str, Any] = {
        "benchmark": "join_cluster",
        "machine": info,
        "poll_interval_s": args.poll,
        "burst_poll_interval_s": args.burst_poll,
        "timeout_s": args.timeout,
    }
    failures: list[str] = []
    base = Path(tempfile.mkdtemp(prefix="cnm-bench-join-"))
    began = now()
    try:
        if "sizes" in parts:
            largest = max(args.sizes)
            print()
            print(
                f"[sizes] one cluster: node 1 creates it, nodes 2..{largest} join one by one "
                f"through node 1; a join's size is the\ncluster size it makes. Polled every "
                f"{args.poll * 1000:.0f} ms (a sample is up to one interval + one GET late); "
                "store floor alternately\nbefore and after each join. Voters are promoted in "
                "the background meanwhile (3 at 3 nodes, 5 at 5)."
            )
            runs = part_sizes(args, base, failures)
            print()
            document["sizes"] = report_sizes(args, runs) if runs else {}
        if "burst" in parts:
            print()
            print(
                f"[burst] a fresh one-node cluster, {args.burst} fresh agents, all POSTs at once "
                f"(a thread each); each agent\npolled every {args.burst_poll * 1000:.0f} ms."
            )
            result = part_burst(args, base, failures)
            print()
            document["burst"] = report_burst(result, args.burst_poll) if result else {}
        if "voters" in parts:
            print()
            print(
                f"[voters] {args.runs} runs of each, interleaved: cnm (fresh 3 agents: create, "
                "join, join; GET /v1/nodes on node 1\nevery "
                f"{NODES_POLL_INTERVAL * 1000:.0f} ms) and raw etcd (EtcdProcess + EtcdStore: "
                "1 member, then learner add -> start ->\npromote for members 2 and 3, a refused "
                f"add retried every {ADD_RETRY_INTERVAL * 1000:.0f} ms, promote polled every "
                f"{PROMOTE_INTERVAL * 1000:.0f} ms)."
            )
            voter_runs = part_voters(args, base, failures)
            print()
            document["voters"] = report_voters(voter_runs) if voter_runs else {}
    finally:
        if args.keep or failures:
            print(f"\ndata directories (agent.log, logs/etcd.log) kept in {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)
    document["failures"] = failures
    document["elapsed_s"] = now() - began
    print(f"\nbenchmark took {document['elapsed_s']:.0f} s")
    return finish(args.json, document, failures)


if __name__ == "__main__":
    sys.exit(main())
