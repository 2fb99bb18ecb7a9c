"""bench_join part 3, voters: how long after a join the store has the voters it wants: 3 voters
after the third join, 5 after the fifth; cnm beside raw etcd with its own default settings
(strict reconfiguration check on, heartbeat 100 ms, election 1000 ms) doing the member steps
through the same store recipes (bench/raw_etcd.py), interleaved run by run (see bench_join's
docstring for the method)."""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from agent_logs import log_events
from cnm.errors import StoreError
from cnm.store.etcd_process import EtcdMemberSpec
from common import (
    AgentFactory,
    RunFailed,
    Stats,
    Target,
    claimed_addresses,
    now,
    start_agents,
    table,
    target_lines,
)
from join_agents import LOG_JSON, JoinRun, create, nodes_of, post_join, roles_text, stop_cluster
from raw_etcd import RawCluster

NODES_POLL_INTERVAL = 0.020  # GET /v1/nodes while waiting for voters
# The targets: seconds from the join's `completed` until the store has its voters.
TARGETS = {3: 1.0, 5: 2.0}
SIZES = (3, 5)


@dataclass
class VoterRun:
    kind: str  # cnm | etcd
    # voters wanted -> seconds. cnm: the join that makes 3 (5) nodes completed -> 3 (5) voters
    # listed; raw etcd: the first learner add of the step -> the last member promoted.
    seconds: dict[int, float] = field(default_factory=dict)
    events: dict[str, float] = field(default_factory=dict)


def _joined(agent: Any, first: Any, args: argparse.Namespace, which: str) -> JoinRun:
    run = post_join(agent, [first.addr], poll=args.poll, timeout=args.timeout)
    if run.state != "completed":
        raise RunFailed(f"{which} join: [{run.error_code}] {run.error_message}")
    return run


def _wait_voters(first: Any, count: int, since: float, timeout: float) -> float:
    """Poll GET /v1/nodes until `count` voters are listed; returns when (`now()`)."""
    while True:
        nodes = nodes_of(first)
        if sum(1 for node in nodes if node.get("store_role") == "voter") >= count:
            return now()
        if now() - since > timeout:
            raise RunFailed(f"no {count} voters within {timeout:g} s: {roles_text(nodes)}")
        time.sleep(NODES_POLL_INTERVAL)


def voters_cnm(args: argparse.Namespace, base: Path, index: int) -> VoterRun:
    factory = AgentFactory(base / f"voters-cnm-{index}")
    agents = [factory.make(f"node-{n}", extra_args=LOG_JSON) for n in range(1, 6)]
    first = agents[0]
    run = VoterRun("cnm")
    try:
        start_agents(agents)
        create(first, args.timeout)
        _joined(agents[1], first, args, "second")
        for size, joiner in ((3, agents[2]), (5, agents[4])):
            if size == 5:
                _joined(agents[3], first, args, "fourth")  # 4 nodes still want 3 voters
            joined = _joined(joiner, first, args, f"join to {size} nodes")
            completed_at = joined.start + joined.seconds
            voters_at = _wait_voters(first, size, completed_at, args.voters_timeout)
            run.seconds[size] = voters_at - completed_at
            # Each promotion's own time, from the promoted node's `store_voter` log event.
            promoted = agents[1:3] if size == 3 else agents[3:5]
            deadline = time.monotonic() + 3.0  # the role is written before the event is logged
            while time.monotonic() < deadline and not all(
                any(e.name == "store_voter" for e in log_events(a.log_file)) for a in promoted
            ):
                time.sleep(0.05)
            for agent in promoted:
                for found in log_events(agent.log_file):
                    if found.name == "store_voter":
                        done = found.time - joined.wall_start - joined.seconds
                        name = agent.data_dir.name
                        run.events[f"{size}: {name} promoted"] = done
                        run.events[f"{size}: {name} attempt"] = done - float(
                            found.fields["seconds"]
                        )
        return run
    finally:
        problems = stop_cluster(factory, f"voters cnm run {index + 1}", base / "artefacts")
        if problems:
            raise RunFailed("; ".join(problems))


def etcd_defaults(spec: EtcdMemberSpec) -> EtcdMemberSpec:
    """etcd as it ships: strict reconfiguration check on, heartbeat 100 ms, election 1000 ms,
    Go's own number of scheduler threads."""
    return replace(
        spec, strict_reconfig_check=True, heartbeat_ms=100, election_ms=1000, go_max_procs=None
    )


async def _raw_voters(addrs: list[str], directory: Path, timeout: float) -> VoterRun:
    cluster = RawCluster(addrs, directory, customise=etcd_defaults)
    run = VoterRun("etcd")
    try:
        await cluster.start_first(timeout)  # untimed: the cluster exists
        specs = cluster.specs
        for size, members in ((3, specs[1:3]), (5, specs[3:5])):
            start: float | None = None
            for spec in members:
                _, steps = await cluster.grow(spec, now() + timeout)
                if start is None:
                    # The clock starts at the first add etcd accepts. From 3 to 5 voters that
                    # add waits out etcd's 5 s after member 3's promotion, untimed: it stands
                    # for the time cnm's cluster spends with 3 and 4 nodes, untimed there too.
                    start = steps.add_sent
                run.events[f"{size}: {spec.name} refused for"] = (
                    0.0 if steps.first_refusal is None else steps.add_sent - steps.first_refusal
                )
                run.events[f"{size}: {spec.name} promoted"] = steps.promoted - start
            assert start is not None
            run.seconds[size] = now() - start
        return run
    except StoreError as exc:
        raise RunFailed(f"raw etcd: {exc.message}") from None
    finally:
        await cluster.close()


def voters_etcd(args: argparse.Namespace, base: Path, index: int) -> VoterRun:
    with claimed_addresses(5) as addrs:
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
                figures = ", ".join(f"{n} voters {s:.3f} s" for n, s in run.seconds.items())
                shown[kind] = f"{kind} {figures}"
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


def _median(runs: list[VoterRun], size: int) -> float | None:
    values = [run.seconds[size] for run in runs if size in run.seconds]
    return Stats.of(values).median if values else None


def report_voters(runs: list[VoterRun]) -> dict[str, Any]:
    """The table, the targets (PASS/MISS) and the document: its "targets" and "series" go to the
    top of the benchmark's JSON (bench_join.py)."""
    cnm = [run for run in runs if run.kind == "cnm"]
    raw = [run for run in runs if run.kind == "etcd"]
    labels = {
        "cnm": "cnm: join completed -> {n} voters",
        "etcd": "raw etcd (defaults): first learner add -> {n} voters",
    }
    rows = []
    document: dict[str, Any] = {"runs": [asdict(run) for run in runs]}
    for size in SIZES:
        for kind, chosen in (("cnm", cnm), ("etcd", raw)):
            values = [run.seconds[size] for run in chosen if size in run.seconds]
            if values:
                stats = Stats.of(values)
                label = labels[kind].format(n=size)
                rows.append([label, stats.runs, stats.median, stats.p90, stats.min, stats.max])
                document[label] = stats.as_dict()
    print(table(("", "runs", "median s", "p90 s", "min s", "max s"), rows))
    targets: list[Target] = []
    for size in SIZES:
        mine, theirs = _median(cnm, size), _median(raw, size)
        targets.append(
            Target(
                f"{size} voters after the join to {size} nodes completed (median)",
                mine,
                TARGETS[size],
                "s",
                baseline=f"raw etcd with its defaults: {theirs:.3f} s" if theirs else "",
            )
        )
        targets.append(
            Target(
                f"{size} voters: cnm / raw etcd with its defaults (medians)",
                mine / theirs if mine is not None and theirs else None,
                1.0,
                "ratio",
                baseline="raw etcd, same run, interleaved",
            )
        )
    print(target_lines(targets))
    for kind, chosen in (("cnm", cnm), ("raw etcd", raw)):
        names = dict.fromkeys(name for run in chosen for name in run.events)
        after = "the join completed" if kind == "cnm" else "the first add"
        print(f"{kind} events (median s after {after}): {event_medians(chosen, list(names))}")
    document["targets"] = [target.as_dict() for target in targets]
    document["series"] = [
        {
            "plot": "voters",
            "label": label,
            "x": list(SIZES),
            "y": [_median(chosen, size) for size in SIZES],
            "x_label": "store voters wanted (cluster of 3, of 5 nodes)",
            "y_label": "s from the join completed to the voters",
        }
        for label, chosen in (("cnm", cnm), ("raw etcd (defaults)", raw))
        if chosen
    ]
    return document
