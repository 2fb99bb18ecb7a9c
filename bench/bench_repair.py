"""Benchmark: a replacement join of a failed store voter, beside the same steps done by hand with
etcd's member API, interleaved run by run.

    .venv/bin/python bench/bench_repair.py [--runs 3] [--json out.json] [--keep] [--timeout 60]

- cnm: a 3-node cluster with 3 store voters (create, join, join, wait: untimed); node 3's
  agent and its etcd get SIGKILL; once node 3 shows `down` (untimed) a fresh agent is started
  (untimed) and sent join_cluster with `node.identity.uid: 3`. Timed from that POST: until
  GET /v1/bootstrap shows `completed` (the replacement join: admission, the failed member's
  removal, the take-over of uid 3, the joiner's store client), and until GET /v1/nodes shows
  node 3 active as a store voter again (learner add, start, promote).
- raw etcd: a 3-member etcd made with cnm's launcher and store recipes (untimed); member 3
  gets SIGKILL; timed: `member_remove` of the dead member, then for a new member on a fresh
  address `add_learner` → start with `initial-cluster-state existing` → `promote_learner`
  (polled until etcd accepts): what an operator does with etcdctl, without any of cnm's checks.

Target: no issue sets one for a replacement; the report checks the bound every bootstrap action
lives under, the clients' patience (10 s, docs/api-contract.md): median POST -> completed
<= 10 s, with raw etcd's member steps as the same-run baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from common import (
    AgentFactory,
    RunFailed,
    Stats,
    Target,
    base_parser,
    claimed_addresses,
    etcd_missing,
    finish,
    machine_info,
    machine_line,
    now,
    start_agents,
    table,
    target_lines,
)
from join_agents import ADMIN, create, join_body, nodes_of, stop_cluster
from raw_etcd import RawCluster

POLL = 0.02
# No issue sets a target for a replacement: the clients' patience with a bootstrap action.
TARGET_SECONDS = 10.0


def _wait(check: Any, timeout: float, what: str, interval: float = POLL) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
        except (httpx.HTTPError, KeyError, ValueError):
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise RunFailed(f"no {what} within {timeout:g} s (last: {value!r})")
        time.sleep(interval)


def _join(agent: Any, member: Any, timeout: float, **extra: Any) -> float:
    """POST join_cluster, poll until completed; seconds (state error: RunFailed)."""
    body = {**join_body([member.addr]), **extra}
    start = now()
    response = agent.post("/v1/bootstrap/join_cluster", body)
    if response.status_code != 200:
        raise RunFailed(f"join answered {response.status_code}: {response.text}")

    def done() -> dict[str, Any] | None:
        state = agent.status(ADMIN)["bootstrap_status"]
        return state if state["state"] in ("completed", "error") else None

    state = _wait(done, timeout, f"join outcome on {agent.addr} ({body.get('node')})")
    if state["state"] != "completed":
        raise RunFailed(f"join failed: {state}")
    return now() - start


def _voters(first: Any) -> bool:
    nodes = nodes_of(first)
    return len(nodes) == 3 and all(
        n.get("store_role") == "voter" and n.get("status") == "active" for n in nodes
    )


def repair_cnm(args: argparse.Namespace, base: Path, index: int) -> dict[str, float]:
    factory = AgentFactory(base / f"cnm-{index}")
    agents = [factory.make(f"node-{n}") for n in (1, 2, 3)]
    first, third = agents[0], agents[2]
    try:
        start_agents(agents)
        create(first, args.timeout)
        for agent in agents[1:]:
            _join(agent, first, args.timeout)
        _wait(lambda: _voters(first), args.timeout, "3 voters")
        pids = third.etcd_pids()
        third.kill9()
        for pid in pids:  # the agent's etcd usually dies with it (parent-death signal)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

        def down() -> bool:
            return any(n["uid"] == 3 and n["status"] == "down" for n in nodes_of(first))

        _wait(down, args.timeout, "node 3 down")
        fresh = factory.make("node-4")
        start_agents([fresh])
        start = now()
        joined = _join(fresh, first, args.timeout, node={"identity": {"uid": 3}})
        _wait(lambda: _voters(first), args.timeout, "3 voters again")
        return {"join": joined, "voters": now() - start}
    finally:
        problems = stop_cluster(factory, f"cnm run {index + 1}", base / "artefacts")
        if problems:
            print("  " + "; ".join(problems), file=sys.stderr)


async def _raw(addrs: list[str], directory: Path, timeout: float) -> dict[str, float]:
    cluster = RawCluster(addrs, directory)
    specs = cluster.specs
    try:
        await cluster.start_first(timeout)
        for spec in specs[1:3]:
            await cluster.grow(spec, now() + timeout)  # untimed set-up
        dead = cluster.processes[2]
        members = await cluster.store.member_list()
        target = next(m for m in members if specs[2].peer_url in m.peer_urls)
        assert dead.pid is not None
        os.kill(dead.pid, signal.SIGKILL)
        await dead.wait()
        start = now()
        await cluster.store.member_remove(target.id)
        removed = now() - start
        await cluster.grow(specs[3], now() + timeout)
        return {"remove": removed, "voters": now() - start}
    finally:
        await cluster.close()


def repair_etcd(args: argparse.Namespace, base: Path, index: int) -> dict[str, float]:
    with claimed_addresses(4) as addrs:
        return asyncio.run(_raw(addrs, base / f"etcd-{index}", args.timeout))


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(
        "replacement join of a failed voter, beside etcd's member API", default_runs=3
    )
    parser.add_argument("--timeout", type=float, default=60.0, help="per step (default 60 s)")
    args = parser.parse_args(argv)
    if etcd_missing():
        return 2
    info = machine_info()
    print(machine_line(info))
    base = Path(tempfile.mkdtemp(prefix="cnm-bench-repair-"))
    runs: dict[str, list[dict[str, float]]] = {"cnm": [], "etcd": []}
    failures: list[str] = []
    try:
        for index in range(max(args.runs, 1)):
            order = ("cnm", "etcd") if index % 2 == 0 else ("etcd", "cnm")
            for kind in order:
                try:
                    run = (repair_cnm if kind == "cnm" else repair_etcd)(args, base, index)
                    runs[kind].append(run)
                    print(
                        f"  run {index + 1} {kind}: "
                        + ", ".join(f"{k} {v:.3f} s" for k, v in run.items()),
                        flush=True,
                    )
                except RunFailed as exc:
                    failures.append(f"run {index + 1} {kind}: {exc}")
                    print(f"  run {index + 1} {kind}: FAILED ({exc})", flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    series = (
        ("cnm: replacement join POST -> completed", "cnm", "join"),
        ("cnm: replacement join POST -> 3 voters", "cnm", "voters"),
        ("raw etcd: member remove", "etcd", "remove"),
        ("raw etcd: remove + add learner + start + promote", "etcd", "voters"),
    )
    rows = []
    document: dict[str, Any] = {"machine": info, "runs": runs}
    for label, kind, key in series:
        values = [run[key] for run in runs[kind]]
        if values:
            stats = Stats.of(values)
            rows.append([label, stats.runs, stats.median, stats.p90, stats.min, stats.max])
            document[label] = stats.as_dict()
    print(table(("", "runs", "median s", "p90 s", "min s", "max s"), rows))
    if runs["cnm"] and runs["etcd"]:
        ratio = (
            Stats.of([r["voters"] for r in runs["cnm"]]).median
            / Stats.of([r["voters"] for r in runs["etcd"]]).median
        )
        print(f"ratio of medians, to 3 voters again: cnm / raw etcd = {ratio:.2f}")
        document["ratio_voters"] = ratio
    joins = [run["join"] for run in runs["cnm"]]
    floor = [run["voters"] for run in runs["etcd"]]
    target = Target(
        "replacement join POST -> completed, median",
        Stats.of(joins).median if joins else None,
        TARGET_SECONDS,
        "s",
        baseline=(
            f"raw etcd remove + learner + start + promote: median {Stats.of(floor).median:.2f} s"
            if floor
            else "raw etcd: no successful run"
        ),
    )
    document["targets"] = [target.as_dict()]
    print(target_lines([target]))
    return finish(args.json, document, failures)


if __name__ == "__main__":
    sys.exit(main())
