"""Benchmark: CPU a node spends per watch message, cnm's reader beside httpx streaming.

    .venv/bin/python bench/bench_watch.py [--runs 5] [--messages 2000] [--json out.json] [--keep]

Every node of a cluster reads every change of the cluster's keys on its watch, so what one
message costs a node is paid N times per change (issue 12: a join at 100 nodes is two changes
read by 99 agents on a 2-core machine). cnm reads its watch on an asyncio connection of its own
(src/cnm/store/watch_stream.py); the baseline is what it did before, in the same run: httpx's
streaming response read line by line (`aiter_lines`), as every other store call still is.

One etcd member (mutual TLS, cnm's certificates and launcher) on a loopback address of its own.
Each measurement is a child process that opens one watch on a prefix with the reader of its
kind, tells the parent it is ready once etcd confirmed the watch, and counts its own CPU time
(user + system, `getrusage`) from then until it has read `--messages` messages; the parent
writes one key per message, one write after the other, so that each message arrives alone as a
bystander's would (a value the size of a node record). Both readers decode each message's JSON.
The kinds alternate in a new random order each run.

Output: microseconds of CPU per message for each reader (median, min, max over the runs) and
the ratio of cnm's median to httpx's. No target of its own: it explains the join's and the idle
cluster's numbers (bench_join, bench_idle).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import shutil
import ssl
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

from cnm.cluster.runtime import open_store
from cnm.store.etcd_process import EtcdProcess
from cnm.store.etcd_wire import client_tls_context, range_body
from cnm.store.watch_stream import watch_messages
from common import (
    RunFailed,
    Stats,
    base_parser,
    begin,
    claimed_addresses,
    finish,
    lone_member,
    table,
)

KINDS = ("cnm", "httpx")
PREFIX = "/bench/watch/"
# About a node record's size: what a join's writes carry to every node.
VALUE = json.dumps({"uid": 42, "addr": "127.0.0.42", "facts": "x" * 600}).encode()
CHILD_TIMEOUT = 120.0


def watch_request() -> dict[str, Any]:
    """The request EtcdStore.watch_prefix sends, without a start revision."""
    return {"create_request": range_body(PREFIX, True)}


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class _Tally:
    """Counts a reader's events; reports ready when etcd confirms the watch, and the CPU spent
    from then once `count` events have been read."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.start: float | None = None
        self.seen = 0

    def took(self, message: dict[str, Any]) -> float | None:
        result = message.get("result", {})
        if self.start is None and result.get("created"):
            self.start = _cpu()
            print("ready", flush=True)
        self.seen += len(result.get("events") or [])
        if self.seen < self.count or self.start is None:
            return None
        return _cpu() - self.start


async def _read_cnm(url: str, context: ssl.SSLContext, count: int) -> float:
    tally = _Tally(count)
    messages = watch_messages(url, watch_request(), tls=context, headers=None, timeout=5.0)
    try:
        async for message in messages:
            if (used := tally.took(message)) is not None:
                return used
    finally:
        await messages.aclose()
    raise RunFailed("the watch ended early")


async def _read_httpx(url: str, context: ssl.SSLContext, count: int) -> float:
    import httpx  # only the baseline's child needs it

    tally = _Tally(count)
    timeout = httpx.Timeout(5.0, read=None)
    async with (
        httpx.AsyncClient(verify=context, timeout=timeout) as client,
        client.stream("POST", url, json=watch_request()) as response,
    ):
        async for line in response.aiter_lines():
            if line.strip() and (used := tally.took(json.loads(line))) is not None:
                return used
    raise RunFailed("the watch ended early")


def child(args: argparse.Namespace) -> int:
    tls_dir = Path(args.tls_dir)
    context = client_tls_context(
        str(tls_dir / "ca.pem"), str(tls_dir / "node.pem"), str(tls_dir / "node.key")
    )
    reader = _read_cnm if args.child == "cnm" else _read_httpx
    used = asyncio.run(reader(args.url + "/v3/watch", context, args.messages))
    print(json.dumps({"cpu_s": used}), flush=True)
    return 0


async def one_measurement(kind: str, url: str, tls_dir: Path, messages: int, store: Any) -> float:
    """CPU seconds per message of one child reading `messages` messages with `kind`."""
    command = [sys.executable, __file__, "--child", kind, "--url", url]
    command += ["--tls-dir", str(tls_dir), "--messages", str(messages)]
    process = await asyncio.create_subprocess_exec(
        *command, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        ready = await asyncio.wait_for(process.stdout.readline(), CHILD_TIMEOUT)
        if ready.strip() != b"ready":
            raise RunFailed(f"{kind} reader did not start: {ready!r}")
        for number in range(messages):
            await store.put(f"{PREFIX}{number % 100}", VALUE)
        answer = await asyncio.wait_for(process.stdout.readline(), CHILD_TIMEOUT)
        await asyncio.wait_for(process.wait(), CHILD_TIMEOUT)
        if process.returncode != 0:
            raise RunFailed(f"{kind} reader exited {process.returncode}")
        return float(json.loads(answer)["cpu_s"]) / messages
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def measure(args: argparse.Namespace, directory: Path, addr: str) -> dict[str, list[float]]:
    tls, spec = lone_member(directory, addr, "node-1", str(uuid.uuid4()))
    etcd = EtcdProcess("etcd", spec)
    store = open_store((spec.client_url,), tls)
    try:
        await etcd.start()
        await etcd.wait_ready(store)
        tls_dir = directory / "client-tls"
        tls_dir.mkdir()
        shutil.copy(tls.ca_file, tls_dir / "ca.pem")
        shutil.copy(tls.cert_file, tls_dir / "node.pem")
        shutil.copy(tls.key_file, tls_dir / "node.key")
        per_message: dict[str, list[float]] = {kind: [] for kind in KINDS}
        order = list(KINDS)
        for run in range(args.runs):
            random.Random(run).shuffle(order)
            for kind in order:
                value = await one_measurement(kind, spec.client_url, tls_dir, args.messages, store)
                per_message[kind].append(value)
            line = ", ".join(f"{k} {1e6 * v[-1]:.0f} us" for k, v in per_message.items())
            print(f"run {run + 1}: {line}", flush=True)
        return per_message
    finally:
        await store.close()
        await etcd.stop()


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__.splitlines()[0] if __doc__ else "", default_runs=5)
    parser.add_argument("--messages", type=int, default=2000, help="messages per run (2000)")
    parser.add_argument("--child", choices=KINDS, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--tls-dir", help=argparse.SUPPRESS)
    raw = parser.parse_args(argv)
    if raw.child:
        return child(raw)
    if raw.messages < 10:
        parser.error("--messages must be at least 10")
    started = begin(parser, argv, "watch: CPU per watch message, cnm's reader and httpx's")
    if started is None:
        return 1
    args, info = started
    directory = Path(tempfile.mkdtemp(prefix="cnm-bench-watch-"))
    failures: list[str] = []
    document: dict[str, Any] = {"machine": info, "messages": args.messages, "stats": []}
    try:
        with claimed_addresses(1) as (addr,):
            per_message = asyncio.run(measure(args, directory, addr))
    except (RunFailed, OSError, TimeoutError) as exc:
        failures.append(str(exc))
    else:
        rows = []
        for kind in KINDS:
            stats = Stats.of([1e6 * value for value in per_message[kind]])
            document["stats"].append({"name": f"{kind} reader", **stats.as_dict(), "unit": "us"})
            rows.append([f"{kind} reader", stats.runs, stats.median, stats.min, stats.max])
        ratio = Stats.of(per_message["cnm"]).median / Stats.of(per_message["httpx"]).median
        document["cnm_to_httpx"] = ratio
        print()
        print(f"{args.messages} one-event messages per run, {args.runs} runs per reader")
        print(table(["reader", "runs", "median us", "min", "max"], rows, decimals=0))
        print(f"cnm's reader costs {ratio:.0%} of httpx's CPU per message")
    finally:
        if args.keep:
            print(f"kept {directory}")
        else:
            shutil.rmtree(directory, ignore_errors=True)
    return finish(args.json, document, failures)


if __name__ == "__main__":
    sys.exit(main())
