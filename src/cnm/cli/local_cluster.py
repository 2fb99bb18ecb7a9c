"""The processes of a local cluster: agents on consecutive loopback addresses, one data dir each.

This module owns the process bookkeeping, nothing of the API (the directory's layout is
`cnm.node.data_dir.LocalClusterDir`):
`DIR/state.json` (written atomically) records each agent's address, data dir, log and pid with
the process's start time, so that `down` signals the agents it started and never a process that
later got the same pid. `DIR/admin-password` (0600) holds the generated admin password.

Linux routes all of 127.0.0.0/8 to loopback, so each agent binds its own address with the
product's default ports (8080, 9443, 2379, 2380); the ports are checked before anything starts.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import secrets
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

from cnm.cli.common import CliFailure
from cnm.node.data_dir import DataDir, LocalClusterDir, private_log
from cnm.node.local_state import atomic_write_bytes

AGENT_PORTS = (8080, 9443, 2379, 2380)
# psutil reports start times rounded differently across calls; a reused pid starts much later.
_START_TIME_SLACK = 1.0


@dataclass
class LocalNode:
    name: str
    addr: str
    data_dir: str
    pid: int | None = None
    started: float | None = None  # the process's start time, to tell a reused pid apart

    @property
    def http_url(self) -> str:
        return f"http://{self.addr}:8080"

    @property
    def https_url(self) -> str:
        return f"https://{self.addr}:9443"

    @property
    def layout(self) -> DataDir:
        return DataDir(Path(self.data_dir))

    @property
    def log(self) -> Path:
        return self.layout.agent_log

    @property
    def ca_file(self) -> Path:
        return self.layout.cluster_tls.ca_file

    def process(self) -> psutil.Process | None:
        """The agent this entry started, if it still runs (a zombie does not count)."""
        if self.pid is None or self.started is None:
            return None
        try:
            process = psutil.Process(self.pid)
            if abs(process.create_time() - self.started) > _START_TIME_SLACK:
                return None
            if process.status() == psutil.STATUS_ZOMBIE:
                return None
        except psutil.Error:
            return None
        return process

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


@dataclass
class LocalCluster:
    directory: Path
    name: str
    username: str
    nodes: list[LocalNode] = field(default_factory=list)

    @property
    def layout(self) -> LocalClusterDir:
        return LocalClusterDir(self.directory)

    @property
    def password_file(self) -> Path:
        return self.layout.password_file

    @property
    def state_file(self) -> Path:
        return self.layout.state_file

    def save(self) -> None:
        document = {
            "name": self.name,
            "username": self.username,
            "password_file": self.password_file.name,
            "nodes": [asdict(node) for node in self.nodes],
        }
        atomic_write_bytes(
            self.state_file, (json.dumps(document, indent=2) + "\n").encode(), mode=0o644
        )

    @classmethod
    def load(cls, directory: Path) -> LocalCluster | None:
        try:
            state_file = LocalClusterDir(directory).state_file
            document: dict[str, Any] = json.loads(state_file.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise CliFailure(f"{state_file} is unreadable: {exc}") from None
        return cls(
            directory=directory,
            name=str(document["name"]),
            username=str(document["username"]),
            nodes=[LocalNode(**node) for node in document.get("nodes", [])],
        )

    def password(self) -> str:
        return self.password_file.read_text().strip()

    def write_new_password(self) -> str:
        password = secrets.token_urlsafe(18)
        atomic_write_bytes(self.password_file, (password + "\n").encode(), mode=0o600)
        return password

    def running(self) -> list[LocalNode]:
        return [node for node in self.nodes if node.process() is not None]


def addresses(first: str, count: int) -> list[str]:
    try:
        start = ipaddress.IPv4Address(first)
    except ValueError:
        raise CliFailure(f"--first-addr {first!r} is not an IPv4 address", 2) from None
    found = [str(start + i) for i in range(count)]
    check_loopback(found)
    return found


def check_loopback(addrs: list[str]) -> None:
    for addr in addrs:
        try:
            loopback = ipaddress.ip_address(addr).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise CliFailure(f"{addr} is not a loopback address (127.x.y.z)", 2)
    if len(set(addrs)) != len(addrs):
        raise CliFailure("the addresses must differ", 2)


def busy_ports(addr: str) -> list[int]:
    busy = []
    for port in AGENT_PORTS:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            # SO_REUSEADDR: a port in TIME_WAIT from a cluster just stopped is free to use.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((addr, port))
            except OSError:
                busy.append(port)
    return busy


def check_ports(addrs: list[str]) -> None:
    problems = []
    for addr in addrs:
        busy = busy_ports(addr)
        if busy:
            problems.append(f"{addr} ports {', '.join(map(str, busy))}")
    if problems:
        raise CliFailure(
            "ports already in use (another agent or program): "
            + "; ".join(problems)
            + ". Pick other addresses with --first-addr or --addrs."
        )


def start_agent(node: LocalNode) -> subprocess.Popen[bytes]:
    layout = node.layout
    layout.root.mkdir(parents=True, exist_ok=True)
    argv = [
        sys.executable,
        "-m",
        "cnm",
        "node",
        "run",
        "--addr",
        node.addr,
        "--data-dir",
        str(layout.root),
        "--persistent-path",
        str(layout.persistent_path),
        "--ephemeral-path",
        str(layout.ephemeral_path),
        "--bigstore-path",
        str(layout.bigstore_path),
    ]
    # The agents must not pick up settings meant for the operator's own agent (CNM_HTTP_PORT...).
    env = {k: v for k, v in os.environ.items() if not k.startswith("CNM_")}
    with private_log(node.log) as log:
        # A new session: Ctrl-C in the operator's terminal must not reach the agents, and they
        # outlive this command.
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    node.pid = process.pid
    node.started = psutil.Process(process.pid).create_time()
    return process


def wait_serving(node: LocalNode, process: subprocess.Popen[bytes], deadline: float) -> None:
    """Until the node's API answers anything; CliFailure if the agent exits or time runs out."""
    while True:
        if process.poll() is not None:
            raise CliFailure(
                f"the agent of {node.name} ({node.addr}) exited with {process.returncode}; "
                f"the end of {node.log}:\n{node.log_tail()}"
            )
        try:
            httpx.get(node.http_url + "/v1/bootstrap", timeout=1.0, trust_env=False)
            return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise CliFailure(
                f"{node.name} ({node.addr}) does not answer on {node.http_url}; "
                f"the end of {node.log}:\n{node.log_tail()}"
            )
        time.sleep(0.05)


def _leftovers(node: LocalNode) -> list[psutil.Process]:
    """Processes still using the node's data dir (its etcd, if the agent died without it)."""
    found = []
    marker = node.data_dir
    for process in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            cmdline = process.info.get("cmdline") or []
            if process.pid != os.getpid() and any(marker in part for part in cmdline):
                found.append(process)
    return found


def _running(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _wait_gone(processes: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """The processes still running at the deadline. Our agents are not our children (another
    `cnm` started them), so this polls; a zombie counts as gone, its parent reaps it."""
    deadline = time.monotonic() + timeout
    alive = [p for p in processes if _running(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)
        alive = [p for p in alive if _running(p)]
    return alive


@dataclass
class StopReport:
    node: LocalNode
    outcome: str  # "stopped", "killed", "not running", "still running"
    seconds: float = 0.0


def stop_all(nodes: list[LocalNode], timeout: float) -> list[StopReport]:
    """SIGTERM every agent (each stops its own etcd), wait until the deadline, then SIGKILL the
    stragglers and whatever still runs on their data dirs."""
    started = time.monotonic()
    tracked: dict[str, list[psutil.Process]] = {}
    for node in nodes:
        agent = node.process()
        others = [p for p in _leftovers(node) if agent is None or p.pid != agent.pid]
        tracked[node.name] = ([agent] if agent else []) + others
        # The agent stops its etcd in order; signal only what has no agent left to do it.
        for process in [agent] if agent else others:
            with contextlib.suppress(psutil.Error):
                process.terminate()
    everything = [p for group in tracked.values() for p in group]
    alive = _wait_gone(everything, timeout)
    killed = {p.pid for p in alive}
    for process in alive:
        with contextlib.suppress(psutil.Error):
            process.kill()
    remaining = {p.pid for p in _wait_gone(alive, 5.0)}
    reports = []
    for node in nodes:
        group = tracked[node.name]
        pids = {p.pid for p in group}
        if not group:
            outcome = "not running"
        elif pids & remaining:
            outcome = "still running"
        elif pids & killed:
            outcome = "killed"
        else:
            outcome = "stopped"
        reports.append(StopReport(node, outcome, time.monotonic() - started))
    return reports
