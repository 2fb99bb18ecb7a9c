"""Store voters that heal: the time from a voter's death to 3 healthy voters again.

cnm: a 4-node cluster (3 voters, 1 client), `voter_replace_after` set low (`--replace-after`,
default 3 s), a voter that is not the store's leader killed with SIGKILL; the clock runs from the
kill until `GET /v1/nodes` on another node lists 3 voters, all active, the dead one not among
them (polled every 20 ms). Segments from the agents' JSON logs: until the node is seen `down`,
until the acting node logs `voter_replacement` (seat_given), until 3 voters.

Baseline, same run, interleaved: the same steps by hand with etcd's member API (through the same
store recipes cnm uses): 3 etcd members and a 4th ready to start; one member killed (SIGKILL);
the clock runs from the kill through member_remove, add_learner, the 4th started, promote.
A person or script doing it has no detection or waiting policy: the baseline is the floor of
the member steps, compare it with cnm's last segment (seat given -> 3 voters).

Target, from the documented bounds (README "Store voters that heal"): a dead node is `down`
within 10 s and its seat is given within `voter_replace_after` + 10 s of that, so kill -> 3
healthy voters, median, <= 20 s + `voter_replace_after`.

    .venv/bin/python bench/bench_heal.py [--runs 3] [--replace-after 3] [--json out.json] [--keep]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import ssl
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from agent_logs import log_events
from common import (
    STATS_HEADERS,
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
    stats_row,
    table,
    target_lines,
)
from harness.agents import Agent, basic
from join_agents import ADMIN, LOG_JSON, create, nodes_of, post_join, stop_cluster
from raw_etcd import RawCluster

POLL = 0.02


@dataclass
class HealRun:
    kind: str
    seconds: float
    segments: dict[str, float] = field(default_factory=dict)


def _etcd(agent: Agent, path: str) -> dict[str, Any]:
    tls = agent.layout.cluster_tls
    context = ssl.create_default_context(cafile=str(tls.ca_file))
    context.load_cert_chain(*tls.store_client_files())
    response = httpx.post(f"https://{agent.addr}:2379{path}", json={}, verify=context, timeout=5)
    response.raise_for_status()
    document: dict[str, Any] = response.json()
    return document


def _leader_addr(agent: Agent) -> str:
    leader = _etcd(agent, "/v3/maintenance/status")["leader"]
    members = _etcd(agent, "/v3/cluster/member/list")["members"]
    return str(httpx.URL(next(m for m in members if m["ID"] == leader)["peerURLs"][0]).host)


def _wait(check: Any, timeout: float, what: str) -> Any:
    deadline = now() + timeout
    while True:
        value = check()
        if value:
            return value
        if now() > deadline:
            raise RunFailed(f"{what} not within {timeout:g} s")
        time.sleep(POLL)


def heal_cnm(args: argparse.Namespace, base: Path, index: int) -> HealRun:
    factory = AgentFactory(base / f"heal-cnm-{index}")
    agents = [factory.make(f"node-{n}", extra_args=LOG_JSON) for n in (1, 2, 3, 4)]
    first = agents[0]
    try:
        start_agents(agents)
        create(first, args.timeout)
        for agent in agents[1:]:
            run = post_join(agent, [first.addr], poll=0.05, timeout=args.timeout)
            if run.state != "completed":
                raise RunFailed(f"join: [{run.error_code}] {run.error_message}")

        def voters() -> list[dict[str, Any]]:
            return [n for n in nodes_of(first) if n.get("store_role") == "voter"]

        _wait(lambda: len(voters()) == 3, 60, "3 voters")
        response = httpx.put(
            first.http_url + "/v1/cluster/policy",
            json={"voter_replace_after": args.replace_after},
            headers=basic(*ADMIN),
            timeout=5,
        )
        if response.status_code != 200:
            raise RunFailed(f"policy: {response.status_code} {response.text}")
        leader = _leader_addr(first)
        victim_uid, victim_addr = next(
            (v["uid"], v["addr"]) for v in voters() if v["addr"] != leader
        )
        victim = next(a for a in agents if a.addr == victim_addr)
        observer = next(a for a in agents if a is not victim)
        wall = time.time()
        start = now()
        victim.kill9()

        def down() -> bool:
            return any(n["uid"] == victim_uid and n["status"] == "down" for n in nodes_of(observer))

        _wait(down, 30, "victim down")
        down_at = now() - start

        def healed() -> bool:
            current = [n for n in nodes_of(observer) if n.get("store_role") == "voter"]
            return (
                len(current) == 3
                and victim_uid not in [n["uid"] for n in current]
                and all(n["status"] == "active" for n in current)
            )

        _wait(healed, args.replace_after + 60, "3 healthy voters")
        total = now() - start
        given = [
            e.time - wall
            for agent in agents
            for e in log_events(agent.log_file)
            if e.name == "voter_replacement" and e.fields.get("outcome") == "seat_given"
        ]
        segments = {"down seen": down_at}
        if given:
            segments["seat given"] = min(given) - down_at
            segments["seat given -> 3 voters"] = total - min(given)
        return HealRun("cnm", total, segments)
    finally:
        problems = stop_cluster(factory, f"heal cnm run {index + 1}", base / "artefacts")
        if problems:
            print("  " + "; ".join(problems), file=sys.stderr)


async def _raw_heal(addrs: list[str], directory: Path, timeout: float) -> HealRun:
    cluster = RawCluster(addrs, directory)
    specs = cluster.specs
    try:
        await cluster.start_first(timeout)
        for spec in specs[1:3]:  # untimed: a 3-member store
            await cluster.grow(spec, now() + timeout)
        victim = cluster.processes[2]
        members = await cluster.store.member_list()
        dead = next(m for m in members if specs[2].peer_url in m.peer_urls)
        start = now()
        assert victim.pid is not None
        os.kill(victim.pid, signal.SIGKILL)
        await cluster.store.member_remove(dead.id)
        removed = now() - start
        await cluster.grow(specs[3], start + timeout)
        total = now() - start
        segments = {"member_remove": removed, "add, start, promote": total - removed}
        return HealRun("etcd", total, segments)
    finally:
        await cluster.close()


def heal_etcd(args: argparse.Namespace, base: Path, index: int) -> HealRun:
    with claimed_addresses(4) as addrs:
        return asyncio.run(_raw_heal(addrs, base / f"heal-etcd-{index}", args.timeout))


def main() -> int:
    parser = base_parser(__doc__.split("\n")[0], default_runs=3)
    parser.add_argument("--replace-after", type=int, default=3, help="voter_replace_after, s")
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args()
    if etcd_missing():
        return 2
    info = machine_info()
    print(machine_line(info))
    base = Path(tempfile.mkdtemp(prefix="bench-heal-"))
    runs: list[HealRun] = []
    failures: list[str] = []
    for index in range(max(args.runs, 1)):
        order = (heal_etcd, heal_cnm) if index % 2 else (heal_cnm, heal_etcd)
        for measure in order:
            try:
                run = measure(args, base, index)
                runs.append(run)
                details = ", ".join(f"{k} {v:.2f}" for k, v in run.segments.items())
                print(f"run {index + 1}: {run.kind} {run.seconds:.3f} s ({details})")
            except RunFailed as exc:
                failures.append(f"run {index + 1} {measure.__name__}: {exc}")
    rows = []
    labels = (("cnm", "cnm: kill -> 3 healthy voters"), ("etcd", "by hand: etcd member API"))
    for kind, label in labels:
        samples = [r.seconds for r in runs if r.kind == kind]
        if samples:
            rows.append(stats_row(label, samples))
        for name in dict.fromkeys(k for r in runs if r.kind == kind for k in r.segments):
            seg = [r.segments[name] for r in runs if r.kind == kind and name in r.segments]
            rows.append(stats_row(f"  {kind}: {name}", seg))
    print()
    print(f"voter_replace_after = {args.replace_after} s")
    print(table(STATS_HEADERS, rows))
    document = {
        "machine": info,
        "replace_after": args.replace_after,
        "runs": [{"kind": r.kind, "seconds": r.seconds, "segments": r.segments} for r in runs],
    }
    cnm = [r.seconds for r in runs if r.kind == "cnm"]
    by_hand = [r.seconds for r in runs if r.kind == "etcd"]
    document["stats"] = [
        {"name": label, **Stats.of(samples).as_dict()}
        for samples, label in ((cnm, labels[0][1]), (by_hand, labels[1][1] + " (baseline)"))
        if samples
    ]
    target = Target(
        f"kill -> 3 healthy voters (voter_replace_after {args.replace_after} s), median",
        Stats.of(cnm).median if cnm else None,
        20.0 + args.replace_after,
        "s",
        baseline=(
            f"the member steps by hand: median {Stats.of(by_hand).median:.2f} s"
            if by_hand
            else "by hand: no successful run"
        ),
    )
    document["targets"] = [target.as_dict()]
    print(target_lines([target]))
    if not args.keep:
        import shutil

        shutil.rmtree(base, ignore_errors=True)
    return finish(args.json, document, failures)


if __name__ == "__main__":
    sys.exit(main())
