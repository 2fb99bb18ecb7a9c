"""bench_join part 3, voters: the time until a third node gives the store 3 voters, cnm beside
raw etcd doing the same member steps through the same store recipes (cnm.store.recipes:
add_learner, initial_cluster, promote_learner), interleaved run by run (see bench_join's
docstring)."""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from agent_logs import log_events
from cnm.cluster.runtime import open_store
from cnm.errors import StoreError
from cnm.node.data_dir import ClusterTls
from cnm.security import pki
from cnm.store.base import MembershipChangeRefused
from cnm.store.etcd_process import EtcdMemberSpec, EtcdProcess
from cnm.store.recipes import add_learner, initial_cluster, promote_learner
from common import (
    AgentFactory,
    RunFailed,
    Stats,
    claimed_addresses,
    member_spec,
    node_tls,
    now,
    start_agents,
    table,
)
from join_agents import LOG_JSON, create, nodes_of, post_join, roles_text, stop_cluster

NODES_POLL_INTERVAL = 0.020  # GET /v1/nodes while waiting for voters
ADD_RETRY_INTERVAL = 0.1  # raw etcd: retry of a refused member_add
PROMOTE_INTERVAL = 0.05  # raw etcd: member_promote polling, as cnm's voters.py does
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
    ca = pki.make_ca("bench")
    token = str(uuid.uuid4())
    specs: list[EtcdMemberSpec] = []
    for number, addr in enumerate(addrs, start=1):
        tls = node_tls(directory / f"tls-{number}", ca, addr, pki.node_cert_sans(addr, []))
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
                    added, _ = await add_learner(store, spec.peer_url)
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
            initial = initial_cluster(
                await store.member_list(), peer_url=spec.peer_url, name=spec.name
            )
            process = EtcdProcess("etcd", replace(spec, initial_cluster=initial))
            processes.append(process)
            await process.start()

            def alive(process: EtcdProcess = process) -> bool:
                return process.running

            try:
                await promote_learner(
                    store,
                    added,
                    timeout=max(deadline - now(), 0.0),
                    interval=PROMOTE_INTERVAL,
                    alive=alive,
                )
            except StoreError as exc:
                raise RunFailed(
                    f"member {number}: {exc.message}; its log ends: {process.log_tail()}"
                ) from None
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
