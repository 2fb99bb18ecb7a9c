"""Shared helpers of the benchmarks: agents on loopback, timing, statistics, tables, JSON.

Agents are started with the test harness (`tests/harness`, installed with cnm as the package
`harness`), so a benchmark runs the product the way the cluster tests do: a real `cnm node run`
subprocess on its own claimed 127.x.y.z address (lock files shared with pytest, so a benchmark
beside a test run never collides), fresh data directory each time. All traffic stays on
loopback.

Results are plain numbers in seconds; `Stats` summarises a list of them, `table()` prints rows
with fixed-width columns, and `write_json()` stores a run for later comparison. Each benchmark
measures its own baseline in the same process, interleaved with the measured runs, because these
machines are noisy: compare the ratio, not absolute numbers from different days.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import httpx

from cnm.node.data_dir import ClusterTls
from cnm.security import key_files, pki
from cnm.store.etcd_process import EtcdMemberSpec
from harness.addresses import claim_address, release_address
from harness.agents import Agent, AgentFactory, basic, etcd_pids_under
from harness.bodies import ADMIN, create_body, join_body
from harness.polling import eventually

ROOT = Path(__file__).resolve().parent.parent

__all__ = [
    "BREAKDOWN_HEADERS",
    "LOAD_CPU",
    "ROOT",
    "SERVER_CPU",
    "STATS_HEADERS",
    "Agent",
    "AgentFactory",
    "RunFailed",
    "Servers",
    "Stats",
    "Target",
    "admin_jwt",
    "base_parser",
    "basic",
    "begin",
    "claim_address",
    "claimed_addresses",
    "cpu_seconds",
    "etcd_missing",
    "etcd_pids_under",
    "etcd_version",
    "finish",
    "lone_member",
    "machine_busy_seconds",
    "machine_info",
    "machine_line",
    "member_spec",
    "node_tls",
    "now",
    "phase_line",
    "pin_prefix",
    "release_address",
    "segment_rows",
    "server_pair",
    "start_agents",
    "stats_row",
    "stats_segment",
    "table",
    "target_lines",
    "three_voter_cluster",
    "write_json",
]

now = time.perf_counter
"""The clock of every measurement: monotonic, highest resolution available."""


class RunFailed(Exception):
    """One run of a benchmark did not produce a valid measurement (error, timeout, bad exit)."""


@dataclass(frozen=True)
class Stats:
    """Summary of one series of samples, in seconds."""

    runs: int
    median: float
    p90: float
    min: float
    max: float

    @classmethod
    def of(cls, samples: Sequence[float]) -> Stats:
        if not samples:
            raise ValueError("no samples")
        ordered = sorted(float(sample) for sample in samples)
        # Linear interpolation between order statistics (numpy's default, never outside the
        # samples); with few runs the p90 lies between the two largest samples.
        if len(ordered) == 1:
            p90 = ordered[0]
        else:
            p90 = statistics.quantiles(ordered, n=10, method="inclusive")[-1]
        return cls(len(ordered), statistics.median(ordered), p90, ordered[0], ordered[-1])

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


@dataclass(frozen=True)
class Target:
    """One target of an issue that a benchmark checks, judged PASS or MISS.

    Every benchmark stores its targets in its JSON document under `"targets"` (a list of
    `as_dict()`), and the figures to plot under `"series"`: a list of {"plot": str, "label": str,
    "x": [...], "y": [...], "x_label": str, "y_label": str}; the series that share a "plot" are
    drawn as lines of one figure. `scripts/bench.sh` gathers both into the report.
    """

    name: str  # what is measured, e.g. "join median at 100 nodes"
    value: float | None  # the measurement (None: could not be measured: a MISS)
    limit: float  # the target's bound
    unit: str  # "s", "ms", "%", "MiB", "ratio", "cores"
    better: Literal["lower", "higher"] = "lower"
    baseline: str = ""  # the same-run baseline it was compared against, in words
    # Where the time (or memory) goes when it misses: a text file under bench/results/profiles/
    # (bench/profiling.py), quoted by the report under the missed target.
    profile: str | None = None

    @property
    def passed(self) -> bool:
        if self.value is None:
            return False
        return self.value <= self.limit if self.better == "lower" else self.value >= self.limit

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed}


def target_lines(targets: Sequence[Target]) -> str:
    """`target: NAME VALUE (≤|≥ LIMIT UNIT) → PASS|MISS`, one line each, for the console."""
    lines = []
    for target in targets:
        sign = "≤" if target.better == "lower" else "≥"
        value = "-" if target.value is None else f"{target.value:.3f}"
        verdict = "PASS" if target.passed else "MISS"
        lines.append(
            f"target: {target.name} {value} {target.unit} ({sign} {target.limit:g}) → {verdict}"
        )
    return "\n".join(lines)


def _cell(value: object, decimals: int) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{decimals}f}"
    return str(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], *, decimals: int = 3) -> str:
    """Fixed-width plain-text table: first column left-aligned, the others right-aligned.
    Floats get `decimals` places, None prints as "-"."""
    cells = [[_cell(value, decimals) for value in row] for row in rows]
    widths = [len(header) for header in headers]
    for row in cells:
        for index, text in enumerate(row):
            widths[index] = max(widths[index], len(text))

    def line(values: Sequence[str]) -> str:
        parts = [
            text.ljust(widths[index]) if index == 0 else text.rjust(widths[index])
            for index, text in enumerate(values)
        ]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([line(headers), rule, *(line(row) for row in cells)])


def stats_row(name: str, samples: Sequence[float]) -> list[object]:
    """A table row `name, runs, median, p90, min, max` (the columns of `STATS_HEADERS`)."""
    stats = Stats.of(samples)
    return [name, stats.runs, stats.median, stats.p90, stats.min, stats.max]


STATS_HEADERS = ("", "runs", "median s", "p90 s", "min s", "max s")
BREAKDOWN_HEADERS = ("segment", "source", "runs", "median s", "min s", "max s")


def stats_segment(
    rows: list[list[object]],
    document: list[dict[str, Any]],
    label: str,
    source: str,
    samples: Sequence[float],
) -> None:
    """Add a breakdown row (the columns of `BREAKDOWN_HEADERS`) and its JSON entry."""
    stats = Stats.of(samples)
    rows.append([label, source, stats.runs, stats.median, stats.min, stats.max])
    document.append({"segment": label, "source": source, **stats.as_dict()})


def segment_rows(
    segments: Sequence[tuple[str, str, str | None, str]], events: Sequence[Mapping[str, float]]
) -> tuple[list[list[object]], list[dict[str, Any]]]:
    """Breakdown rows and JSON entries of `segments` (label, source, from-event or None for the
    start, to-event) over the runs' `events`; a segment no run saw gets an empty row."""
    rows: list[list[object]] = []
    document: list[dict[str, Any]] = []
    for label, source, begin, end in segments:
        spans = [
            run[end] - (run[begin] if begin else 0.0)
            for run in events
            if end in run and (begin is None or begin in run)
        ]
        if spans:
            stats_segment(rows, document, label, source, spans)
        else:
            rows.append([label, source, 0, None, None, None])
    return rows, document


def phase_line(phases: Sequence[str], events: Sequence[Mapping[str, float]]) -> str:
    """The median time at which the poll first saw each phase (`poll_<phase>` events)."""
    parts = []
    for phase in phases:
        values = [run[f"poll_{phase}"] for run in events if f"poll_{phase}" in run]
        if values:
            median = Stats.of(values).median
            parts.append(f"{phase} {median:.3f} s ({len(values)}/{len(events)} runs)")
        else:
            parts.append(f"{phase} -")
    return "phase first seen by the poll (median, s after POST): " + ", ".join(parts)


def base_parser(description: str, *, default_runs: int = 5) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--runs",
        type=int,
        default=default_runs,
        help=f"measured runs of each kind, interleaved (default {default_runs}, at least 1)",
    )
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the results here")
    parser.add_argument(
        "--keep", action="store_true", help="keep the runs' data directories (logs) afterwards"
    )
    return parser


def etcd_missing() -> bool:
    """True, after saying so on stderr, when there is no etcd on PATH to measure."""
    if shutil.which("etcd") is None:
        print("etcd is not on PATH (Debian package etcd-server)", file=sys.stderr)
        return True
    return False


def finish(json_path: Path | None, document: dict[str, Any], failures: Sequence[str]) -> int:
    """Write the results (when asked), list the failures; the exit code: 1 if any failed."""
    if json_path:
        write_json(json_path, document)
        print(f"results written to {json_path}")
    if failures:
        print()
        print(f"{len(failures)} failure(s):")
        for failure in failures:
            print(f"  {failure}")
        return 1
    return 0


def begin(
    parser: argparse.ArgumentParser, argv: Sequence[str] | None, title: str
) -> tuple[argparse.Namespace, dict[str, Any]] | None:
    """The start every etcd benchmark shares: parse `argv` (at least one run), check that etcd
    is there, print `title` and the machine line. (args, machine info), or None when there is
    no etcd (already said on stderr: exit 1)."""
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if etcd_missing():
        return None
    info = machine_info()
    print(title)
    print(machine_line(info))
    return args, info


def etcd_version(binary: str = "etcd") -> str:
    path = shutil.which(binary)
    if path is None:
        return "not found"
    try:
        output = subprocess.run(
            [path, "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    for line in output.splitlines():
        if line.lower().startswith("etcd version"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def machine_info() -> dict[str, Any]:
    """What the numbers depend on, printed above every table and stored in the JSON."""
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        "etcd": etcd_version(),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }


def machine_line(info: dict[str, Any]) -> str:
    return (
        f"{info['date']}  {info['cpus']} CPUs, load {info['load_avg_1m']}, "
        f"Python {info['python']}, etcd {info['etcd']}"
    )


def write_json(path: Path, document: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, sort_keys=False) + "\n")


@contextlib.contextmanager
def claimed_addresses(count: int) -> Iterator[list[str]]:
    """`count` loopback addresses of our own (the harness's claims), released afterwards."""
    addrs: list[str] = []
    try:
        for _ in range(count):
            addrs.append(claim_address())
        yield addrs
    finally:
        for addr in addrs:
            release_address(addr)


def node_tls(directory: Path, ca: pki.CertKey, addr: str, sans: Sequence[str]) -> ClusterTls:
    """A node's TLS files in a new `directory`, as cnm writes them: the cluster CA and a node
    certificate for `addr` (names `sans`) that serves clients and peers (mutual TLS)."""
    tls = ClusterTls(directory)
    tls.directory.mkdir(parents=True)
    node = pki.issue_cert(ca, f"cnm node {addr}", sans)
    key_files.write_public(tls.ca_file, ca.cert_pem)
    key_files.write_public(tls.cert_file, node.cert_pem)
    key_files.write_private(tls.key_file, node.key_pem)
    return tls


def member_spec(
    name: str,
    addr: str,
    tls: ClusterTls,
    *,
    data_dir: Path,
    log_file: Path,
    initial_cluster: str,
    initial_state: Literal["new", "existing"],
    token: str,
) -> EtcdMemberSpec:
    """An etcd member on `addr` with cnm's ports and `tls`, launched as cnm launches its own."""
    return EtcdMemberSpec(
        name=name,
        data_dir=data_dir,
        addr=addr,
        client_port=2379,
        peer_port=2380,
        ca_file=tls.ca_file,
        cert_file=tls.cert_file,
        key_file=tls.key_file,
        initial_cluster=initial_cluster,
        initial_state=initial_state,
        cluster_token=token,
        log_file=log_file,
    )


def start_agents(agents: Sequence[Agent], *, batch: int = 6, timeout: float = 30.0) -> None:
    """Start agents `batch` at a time and wait until each serves (untimed set-up): starting
    dozens of Python processes at once on a small machine only makes every one of them slow."""
    for first in range(0, len(agents), max(batch, 1)):
        group = agents[first : first + max(batch, 1)]
        for agent in group:
            agent.start(wait=False)
        for agent in group:
            agent.wait_serving(timeout=timeout)


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system, all threads) a process has used so far; 0.0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def machine_busy_seconds() -> float:
    """CPU time the whole machine has spent busy (all CPUs, not idle or waiting for I/O) since
    boot: the difference over an interval, minus what the measured processes used, is what the
    rest of the machine (other test runs, say) took from them."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    # Fields 8 and 9 (guest time) are already counted in user and nice.
    return (sum(fields[:8]) - idle) / _CLOCK_TICKS


def three_voter_cluster(factory: AgentFactory, name: str) -> list[Agent]:
    """Three agents started at once; the first creates cluster `name`, the others join it one
    by one; returns once the store has its three voters (untimed set-up of a benchmark)."""
    agents = [factory.make(f"node{i}") for i in (1, 2, 3)]
    for agent in agents:
        agent.start(wait=False)
    for agent in agents:
        agent.wait_serving(timeout=60)
    first = agents[0]
    first.post("/v1/bootstrap/create_cluster", create_body(name))
    first.wait_state("completed", auth=ADMIN, timeout=60)
    for joiner in agents[1:]:
        joiner.post("/v1/bootstrap/join_cluster", join_body([first.addr]))
        joiner.wait_state("completed", auth=ADMIN, timeout=60)

    def three_voters() -> bool:
        nodes = first.get("/v1/nodes", auth=ADMIN).json()
        return [n.get("store_role") for n in nodes] == ["voter"] * 3

    eventually(three_voters, timeout=60, message="three voters")
    return agents


def admin_jwt(member: Agent, admin: tuple[str, str] = ADMIN) -> str:
    """A day-long JWT of `admin` from `member`'s POST /v1/users/authorize (Basic auth)."""
    answer = httpx.post(
        member.http_url + "/v1/users/authorize",
        json={"ttl": 86_400},
        headers=basic(*admin),
        timeout=10,
    )
    answer.raise_for_status()
    return str(answer.json()["access_token"])


def lone_member(
    directory: Path, addr: str, name: str, token: str
) -> tuple[ClusterTls, EtcdMemberSpec]:
    """A new one-member etcd in `directory` on `addr`: a fresh CA and node certificate (made
    untimed), and its spec as cnm launches its own (cnm's raft timing; `replace()` to change)."""
    tls = node_tls(directory / "tls", pki.make_ca("bench"), addr, [addr, socket.gethostname()])
    spec = member_spec(
        name,
        addr,
        tls,
        data_dir=directory / "etcd",
        log_file=directory / "etcd.log",
        initial_cluster=f"{name}=https://{addr}:2380",
        initial_state="new",
        token=token,
    )
    return tls, spec


# The throughput benchmarks' method (bench_status, bench_auth): the servers on one CPU, the load
# on the other, so that the agent's single event loop is what is measured.
SERVER_CPU = 0
LOAD_CPU = 1


def pin_prefix() -> list[str]:
    """`taskset -c 0` when this machine has the two CPUs the method needs, else nothing. An
    agent started under it keeps its etcd member on that CPU too (children inherit it)."""
    if (os.cpu_count() or 1) < 2 or shutil.which("taskset") is None:
        return []
    return ["taskset", "-c", str(SERVER_CPU)]


@dataclass(frozen=True)
class Servers:
    """An agent left before bootstrap, an agent that created a one-node cluster, and a JWT of
    that cluster's admin."""

    idle: Agent
    member: Agent
    token: str


def server_pair(
    factory: AgentFactory, prefix: list[str], number: int, *, cluster: str, admin: tuple[str, str]
) -> Servers:
    """Servers number `number`, started under `prefix` (`pin_prefix()`)."""
    idle = factory.make(f"idle-{number}", command_prefix=prefix).start(wait=False)
    member = factory.make(f"member-{number}", command_prefix=prefix).start(wait=False)
    for agent in (idle, member):
        agent.wait_serving(timeout=60)  # generous: a shared machine can be very slow
    member.post(
        "/v1/bootstrap/create_cluster",
        {
            "action": "create_cluster",
            "cluster": {"name": cluster},
            "credentials": {"username": admin[0], "password": admin[1]},
        },
    ).raise_for_status()
    status = member.wait_state("completed", "error", auth=admin, timeout=60)
    if status["bootstrap_status"]["state"] != "completed":
        raise RuntimeError(f"create_cluster failed: {status}")
    return Servers(idle, member, admin_jwt(member, admin))
