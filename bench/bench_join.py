"""Benchmark: join_cluster, POST → completed, at growing cluster sizes; 20 joins at once; and the
time until the store has 3 voters after the third join and 5 after the fifth, beside raw etcd
with its defaults.

    .venv/bin/python bench/bench_join.py [--sizes 2,10,30,100] [--window 5] [--burst 20] [--runs 5]
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
   compare-and-set and the snapshot load of /cnm/), through the product's own helpers
   (`allocate_uid`, `update_record`, `ClusterSnapshot.load`) and cnm's `EtcdStore` against the
   same etcd at the same moment: etcd's share of a join, the rest is cnm's.
2. burst: a fresh one-node cluster and `--burst` fresh agents; every agent gets its POST at the
   same moment (one thread each, behind a barrier). The wall time runs from the first POST until
   the last joining agent logs its `completed` state event (JSON logs, milliseconds); each agent
   is also polled
   every BURST_POLL_INTERVAL, which gives the operator's view and the outcome (failures, state
   `error`, are counted with their error codes). Baseline, just before: the store operations of
   as many joins at once (allocations serialised as on one member, the joiners' parts in
   parallel). The CPU used meanwhile by the agents, etcd, this benchmark and the rest of the
   machine is read from /proc.
3. voters: a fresh 5-node cluster (create, join, join; then join, join): the time from the third
   join's `completed` until GET /v1/nodes on node 1 shows 3 nodes with `store_role: voter`, and
   from the fifth join's `completed` until it shows 5 (the fourth join, with 3 voters wanted at
   4 nodes, is untimed). Baseline, interleaved run by run: raw etcd with its own default
   settings (strict reconfiguration check on, heartbeat 100 ms, election 1000 ms), through
   cnm's launcher, store client and member recipes (bench/raw_etcd.py): a one-member etcd, then
   for each member `add_learner` (a refused add retried every ADD_RETRY_INTERVAL) -> start with
   `initial-cluster-state existing` -> `promote_learner` (polled until etcd accepts). Timed from
   the first add etcd accepts until members 2 and 3 are promoted, then again until 4 and 5 are.
   etcd refuses an add until every voter has been connected for 5 s (its HealthInterval), so
   the second member of each pair waits about 5 s; the wait before member 4's add is untimed
   (it stands for the time cnm's cluster runs with 3 and 4 nodes). Targets: 3 voters within
   1.0 s and 5 within 2.0 s (medians), and faster than raw etcd with its defaults.

Where a join's time goes is reconstructed from outside: the phases seen by the polls and the
millisecond timestamps of the joining agent's and the member's JSON log events (`event` and
`fields`, see cnm.logs.EVENTS), never the wording of a message.

The parts live in join_sizes.py, join_burst.py and join_voters.py; what they share in
join_agents.py (agents through a join) and join_floor.py (the store floor); this file is the
command line.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from common import (
    Target,
    base_parser,
    etcd_missing,
    finish,
    machine_info,
    machine_line,
    now,
    target_lines,
)
from join_agents import POLL_INTERVAL
from join_burst import BURST_POLL_INTERVAL, part_burst, report_burst
from join_sizes import part_sizes, report_sizes, sizes_targets
from join_voters import NODES_POLL_INTERVAL, part_voters, report_voters
from raw_etcd import ADD_RETRY_INTERVAL, PROMOTE_INTERVAL


def _sizes(text: str) -> list[int]:
    sizes = sorted({int(part) for part in text.split(",") if part.strip()})
    if not sizes or sizes[0] < 2:
        raise argparse.ArgumentTypeError("sizes are cluster sizes of at least 2")
    return sizes


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(
        "join_cluster POST -> completed at cluster sizes, many joins at once, and the time to "
        "3 and 5 store voters beside raw etcd.",
        default_runs=5,
    )
    parser.description = (parser.description or "") + " --runs: voter runs of each kind."
    parser.add_argument(
        "--sizes",
        type=_sizes,
        default=[2, 10, 30, 100],
        help="cluster sizes to report (default 2,10,30,100; the cluster grows to the largest)",
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
        help="seconds to wait for the voters (default 60)",
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
    targets: list[Target] = []
    series: list[dict[str, Any]] = []
    part_targets: list[dict[str, Any]] = []
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
            targets, sizes_series = sizes_targets(args, runs)
            series.extend(sizes_series)
            print(target_lines(targets))
        if "burst" in parts:
            print()
            print(
                f"[burst] a fresh one-node cluster, {args.burst} fresh agents, all POSTs at once "
                f"(a thread each); each agent\npolled every {args.burst_poll * 1000:.0f} ms."
            )
            result = part_burst(args, base, failures)
            print()
            burst = report_burst(result, args.burst_poll) if result else {}
            part_targets.extend(burst.pop("targets", []))
            document["burst"] = burst
        if "voters" in parts:
            print()
            print(
                f"[voters] {args.runs} runs of each, interleaved: cnm (fresh 5 agents: create, "
                "join x4; GET /v1/nodes on node 1\nevery "
                f"{NODES_POLL_INTERVAL * 1000:.0f} ms) and raw etcd with its defaults (strict "
                "reconfig check, 100/1000 ms;\nEtcdProcess + EtcdStore: 1 member, then learner "
                "add -> start -> promote for members 2..5, a refused\nadd retried every "
                f"{ADD_RETRY_INTERVAL * 1000:.0f} ms, promote polled every "
                f"{PROMOTE_INTERVAL * 1000:.0f} ms)."
            )
            voter_runs = part_voters(args, base, failures)
            print()
            voters = report_voters(voter_runs) if voter_runs else {}
            # The burst's and voters' targets (and the voters' series) come as dicts already:
            # kept beside the sizes'.
            part_targets.extend(voters.pop("targets", []))
            series.extend(voters.pop("series", []))
            document["voters"] = voters
    finally:
        if args.keep or failures:
            print(f"\ndata directories (agent.log, logs/etcd.log) kept in {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)
    document["targets"] = [target.as_dict() for target in targets] + part_targets
    document["series"] = series
    document["failures"] = failures
    document["elapsed_s"] = now() - began
    print(f"\nbenchmark took {document['elapsed_s']:.0f} s")
    return finish(args.json, document, failures)


if __name__ == "__main__":
    sys.exit(main())
