"""bench_join part 3, voters: the time until a third node gives the store 3 voters, cnm beside
raw etcd doing the same member steps through the same store recipes (cnm.store.recipes:
add_learner, initial_cluster, promote_learner), interleaved run by run (see bench_join's
docstring)."""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from agent_logs import log_events
from cnm.errors import StoreError
from common import (
    AgentFactory,
    RunFailed,
    Stats,
    claimed_addresses,
    now,
    start_agents,
    table,
)
from join_agents import LOG_JSON, create, nodes_of, post_join, roles_text, stop_cluster
from raw_etcd import RawCluster

NODES_POLL_INTERVAL = 0.020  # GET /v1/nodes while waiting for voters
VOTERS_RATIO_TARGET = 1.5


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
        # role before it logs its `store_voter` event: give the last line a moment to appear.
        events: dict[str, float] = {"completed": third.seconds, "voters": voters_at - third.start}
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline and not all(
            any(e.name == "store_voter" for e in log_events(agent.log_file)) for agent in agents[1:]
        ):
            time.sleep(0.05)
        refused: list[float] = []
        for agent, name in ((agents[1], "node2"), (agents[2], "node3")):
            for found in log_events(agent.log_file):
                offset = found.time - third.wall_start
                if found.name == "store_voter":
                    events[f"{name}_voter"] = offset
                    events[f"{name}_attempt"] = offset - float(found.fields["seconds"])
                elif found.name == "store_change_deferred":
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
    cluster = RawCluster(addrs, directory)
    events: dict[str, float] = {}
    try:
        await cluster.start_first(timeout)  # untimed: the cluster exists
        start = now()
        deadline = start + timeout
        for number, spec in enumerate(cluster.specs[1:], start=2):
            _, steps = await cluster.grow(spec, deadline)
            if steps.first_refusal is not None:
                events[f"member{number}_first_refusal"] = steps.first_refusal - start
            events[f"member{number}_add_sent"] = steps.add_sent - start
            events[f"member{number}_added"] = steps.added - start
            events[f"member{number}_promoted"] = steps.promoted - start
        # Waiting at etcd's pace, as for cnm: from member 2's promotion to the accepted add.
        pacing = max(0.0, events["member3_add_sent"] - events["member2_promoted"])
        total = now() - start
        return VoterRun("etcd", total, pacing, None, total, events)
    except StoreError as exc:
        raise RunFailed(f"raw etcd: {exc.message}") from None
    finally:
        await cluster.close()


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
