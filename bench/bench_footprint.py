"""Benchmark: the agent's footprint: resident memory when idle, and restart to serving
authenticated requests.

    .venv/bin/python bench/bench_footprint.py [--runs 5] [--settle 3] [--json out.json] [--keep]

Memory (VmRSS of the agent process alone, not its etcd member, read from /proc after `--settle`
seconds without requests):

- an agent before bootstrap, at its first start (it makes its self-signed HTTPS certificate,
  which loads the cryptography library) and after a restart (the certificate exists);
- each agent of a 3-node cluster (create + 2 joins), once its signer child has exited: the node
  that made the CA and signed the others' certificates has a signer process do it
  (security/signing.py), which exits after `signing.IDLE_EXIT` seconds without a request;
  read while it lives, its RSS is reported too (no target: it exists only while there is
  signing to do);
- baseline: a bare `python -c "import uvicorn, starlette.applications, pydantic"` process,
  the floor of any agent built on them (cnm's web framework is Starlette since 2026-12-04;
  before, the baseline imported FastAPI: 43.7 MiB).

Restart to serving authenticated requests: node 2 of the cluster is killed (SIGKILL, its etcd
member dies with it) and spawned again; the clock runs from the spawn until the first
`GET /v1/bootstrap` with the admin's Basic credentials answers 200 (polled every 10 ms over new
connections), and until the first `GET /v1/cluster` (which needs the cluster store) does too.
Baseline, interleaved with the runs: from spawning bench/bare_status_app.py (bare Starlette
under uvicorn) until it answers. Targets (issue 12 §4): idle RSS <= 55 MiB, restart to an
authenticated 200 <= 1.0 s (judged on GET /v1/bootstrap, median). Each RSS target links a
map of that process's memory at the moment it was read (anonymous against file-backed, the
largest mappings: `profiling.memory_map`), the report's "where it goes" for a miss.
"""

from __future__ import annotations

import contextlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from cnm.security import signing
from common import (
    STATS_HEADERS,
    AgentFactory,
    RunFailed,
    Target,
    base_parser,
    begin,
    claimed_addresses,
    finish,
    now,
    stats_row,
    table,
    target_lines,
    three_voter_cluster,
)
from harness.agents import Agent, signer_children
from harness.bodies import ADMIN
from harness.polling import eventually
from profiling import memory_map

RSS_LIMIT_MIB = 55.0
RESTART_LIMIT_S = 1.0
POLL = 0.01


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RunFailed(f"no VmRSS for pid {pid}")


BARE = "bare python: import uvicorn, starlette, pydantic"
SIGNER = "signer child, right after the joins (then exits)"


def bare_import_rss(settle: float) -> float:
    """VmRSS of a process that imported uvicorn, Starlette and pydantic and waits."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import uvicorn, starlette.applications, pydantic, sys; print('ready', flush=True);"
            " sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        process.stdout.readline()
        time.sleep(settle)
        return rss_mib(process.pid)
    finally:
        process.kill()
        process.wait(10)


def answers(
    url: str, auth: tuple[str, str] | None, timeout: float, started: float | None = None
) -> float:
    """Seconds from `started` (default: now) until GET `url` answers 200 (every POLL, a new
    connection each time)."""
    started = now() if started is None else started
    deadline = started + timeout
    while now() < deadline:
        try:
            response = httpx.get(url, auth=auth, timeout=1.0)
            if response.status_code == 200:
                return now() - started
        except httpx.HTTPError:
            pass
        time.sleep(POLL)
    raise RunFailed(f"{url} did not answer 200 within {timeout} s")


def bare_start(base: Path, addr: str, timeout: float) -> float:
    """Spawn of the bare Starlette app until it answers 200."""
    body = base / "bare-body.json"
    body.write_bytes(b"{}")
    script = Path(__file__).resolve().parent / "bare_status_app.py"
    spawned = now()
    process = subprocess.Popen(
        [sys.executable, str(script), addr, "8080", str(body)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        return answers(f"http://{addr}:8080/v1/bootstrap", None, timeout, spawned)
    finally:
        process.terminate()
        process.wait(10)


def restart(agent: Agent, timeout: float) -> tuple[float, float]:
    """(spawn -> Basic GET /v1/bootstrap 200, spawn -> Basic GET /v1/cluster 200)."""
    agent.kill9()
    spawned = now()
    agent.start(wait=False)
    status = answers(agent.http_url + "/v1/bootstrap", ADMIN, timeout, spawned)
    cluster = answers(agent.http_url + "/v1/cluster", ADMIN, timeout, spawned)
    return status, cluster


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__.splitlines()[0] if __doc__ else "", default_runs=5)
    parser.add_argument("--settle", type=float, default=3.0, help="idle seconds before RSS")
    parser.add_argument("--timeout", type=float, default=30.0, help="a restart fails after this")
    started = begin(parser, argv, "agent footprint: idle RSS, restart -> authenticated 200")
    if started is None:
        return 1
    args, info = started
    base = Path(tempfile.mkdtemp(prefix="cnm-bench-footprint-"))
    factory = AgentFactory(base)
    memory: dict[str, list[float]] = {}
    maps: dict[str, str | None] = {}  # where that memory is (bench/profiling.py)
    to_status: list[float] = []
    to_cluster: list[float] = []
    bare: list[float] = []
    failures: list[str] = []
    try:
        memory[BARE] = [bare_import_rss(args.settle)]
        idle = factory.make("idle").start(wait=False)
        idle.wait_serving(timeout=60)
        time.sleep(args.settle)
        assert idle.process is not None
        memory["agent before bootstrap, first start"] = [rss_mib(idle.process.pid)]
        maps["agent before bootstrap, first start"] = memory_map(
            idle.process.pid, "bench_footprint-before-bootstrap-first-start"
        )
        idle.stop()
        idle.start(wait=False)
        idle.wait_serving(timeout=60)
        time.sleep(args.settle)
        assert idle.process is not None
        memory["agent before bootstrap, restarted"] = [rss_mib(idle.process.pid)]
        maps["agent before bootstrap, restarted"] = memory_map(
            idle.process.pid, "bench_footprint-before-bootstrap-restarted"
        )
        idle.stop()
        agents = three_voter_cluster(factory, "bench-footprint.example.com")
        pids = [a.process.pid for a in agents if a.process is not None]
        signers = [child for pid in pids for child, _ in signer_children(pid)]
        for child in signers:
            with contextlib.suppress(OSError, RunFailed):  # it may have just exited
                memory.setdefault(SIGNER, []).append(rss_mib(child))
        eventually(
            lambda: not any(signer_children(pid) for pid in pids),
            timeout=signing.IDLE_EXIT + 30,
            interval=0.2,
            message="the signer child exits when idle",
        )
        time.sleep(args.settle)
        sizes = [rss_mib(pid) for pid in pids]
        memory["agent in a 3-node cluster"] = sizes
        if pids:
            largest = pids[sizes.index(max(sizes))]
            maps["agent in a 3-node cluster"] = memory_map(
                largest, "bench_footprint-in-cluster-largest"
            )
        with claimed_addresses(1) as (bare_addr,):
            for index in range(args.runs):
                try:
                    bare.append(bare_start(base, bare_addr, args.timeout))
                    status, cluster = restart(agents[1], args.timeout)
                except RunFailed as exc:
                    failures.append(f"run {index + 1}: {exc}")
                    continue
                to_status.append(status)
                to_cluster.append(cluster)
                print(
                    f"  run {index + 1}: bare app {bare[-1]:.3f} s, authenticated "
                    f"/v1/bootstrap {status:.3f} s, /v1/cluster {cluster:.3f} s",
                    flush=True,
                )
                eventually(
                    lambda: agents[0].get("/v1/nodes", auth=ADMIN).json()[1]["status"] == "active",
                    timeout=60,
                    message="node 2 active again",
                )
        time.sleep(args.settle)
        memory["agent in a 3-node cluster, after the restarts (node 2)"] = [
            rss_mib(agents[1].process.pid) if agents[1].process else 0.0
        ]
    except (RunFailed, AssertionError, httpx.HTTPError, RuntimeError) as exc:
        failures.append(f"{type(exc).__name__}: {exc}")
    finally:
        kept = base.with_name(base.name + "-kept")
        failures += factory.close(failed=bool(failures) or args.keep, artefacts=kept)
        if args.keep or failures:
            print(f"data directories kept in {kept}")
        shutil.rmtree(base, ignore_errors=True)
    print()
    print(
        table(
            ("process", "samples", "median MiB", "max MiB"),
            [[name, len(v), statistics.median(v), max(v)] for name, v in memory.items() if v],
            decimals=1,
        )
    )
    rows = []
    if to_status:
        rows += [
            stats_row("spawn -> Basic GET /v1/bootstrap 200", to_status),
            stats_row("spawn -> Basic GET /v1/cluster 200", to_cluster),
        ]
    if bare:
        rows.append(stats_row("baseline: spawn -> bare Starlette answers", bare))
    if rows:
        print(table(STATS_HEADERS, rows))

    def worst(*names: str) -> float | None:
        values = [value for name in names for value in memory.get(name, [])]
        return max(values) if values else None

    checks = [
        Target(
            "idle agent RSS before bootstrap (restarted)",
            worst("agent before bootstrap, restarted"),
            RSS_LIMIT_MIB,
            "MiB",
            baseline="bare python importing uvicorn, starlette and pydantic",
            profile=maps.get("agent before bootstrap, restarted"),
        ),
        Target(
            "idle agent RSS before bootstrap (first start)",
            worst("agent before bootstrap, first start"),
            RSS_LIMIT_MIB,
            "MiB",
            profile=maps.get("agent before bootstrap, first start"),
        ),
        Target(
            "idle agent RSS in a 3-node cluster (largest)",
            worst("agent in a 3-node cluster"),
            RSS_LIMIT_MIB,
            "MiB",
            profile=maps.get("agent in a 3-node cluster"),
        ),
        Target(
            "restart -> authenticated 200 (GET /v1/bootstrap, median)",
            statistics.median(to_status) if to_status else None,
            RESTART_LIMIT_S,
            "s",
            baseline="spawn -> bare Starlette app answering",
        ),
    ]
    print(target_lines(checks))
    document: dict[str, Any] = {
        "machine": info,
        "rss_mib": memory,
        "restart_to_status_s": to_status,
        "restart_to_cluster_s": to_cluster,
        "bare_start_s": bare,
        "targets": [check.as_dict() for check in checks],
        "series": [],
    }
    return finish(args.json, document, failures)


if __name__ == "__main__":
    sys.exit(main())
