"""Agents in their own network namespaces, joined by a bridge, to cut one off for real.

Layout of one `Network` (namespace names carry the test process's pid, so concurrent runs never
collide and a killed run's leftovers are recognised and swept by the next):
- a "switch" namespace holding the bridge `br0` (no address: it only forwards);
- per node, a namespace with `eth0` (198.18.0.N/24, the benchmarking range, used only inside
  these namespaces), the other end of its veth pair plugged into the bridge.
Cutting a node sets its veth end on the bridge down: the node keeps its address (and its own
API answers inside its namespace), but no packet reaches any other node. Nothing here routes
anywhere else: the namespaces have no default route and the host namespace gets no address.

The test talks to each agent from a thread that entered that agent's namespace (setns(2) is per
thread), so even a cut node stays observable. `Network` is a context manager that always removes
what it created (namespaces take their veths and the bridge with them), even on failure.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import itertools
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import httpx
import pytest

from harness.agents import Agent, AgentFactory

T = TypeVar("T")
CLONE_NEWNET = 0x40000000
SUBNET = "198.18.0"
_counter = itertools.count(1)


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=30)


def netns_unavailable() -> str | None:
    """Why agents cannot run in network namespaces here, or None when they can."""
    if os.geteuid() != 0:
        return "network namespaces need root (the tests run as an unprivileged user)"
    if shutil.which("ip") is None:
        return "`ip` (iproute2) is not installed"
    probe = f"cnmprobe{os.getpid()}"
    made = ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"`ip netns add` fails here: {made.stderr.strip()}"
    try:
        pair = ip("-n", probe, "link", "add", "a0", "type", "veth", "peer", "b0", check=False)
        if pair.returncode != 0:
            return f"veth pairs are not available: {pair.stderr.strip()}"
        bridge = ip("-n", probe, "link", "add", "br0", "type", "bridge", check=False)
        if bridge.returncode != 0:
            return f"bridges are not available: {bridge.stderr.strip()}"
    finally:
        ip("netns", "del", probe, check=False)
    return None


def netem_unavailable() -> str | None:
    """Why latency/loss cannot be emulated here (the netem qdisc), or None when it can."""
    if shutil.which("tc") is None:
        return "`tc` is not installed, so no netem latency/loss"
    probe = f"cnmnetem{os.getpid()}"
    ip("netns", "add", probe)
    try:
        ip("-n", probe, "link", "set", "lo", "up")
        added = subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                probe,
                "tc",
                "qdisc",
                "add",
                "dev",
                "lo",
                "root",
                "netem",
                "delay",
                "1ms",
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if added.returncode != 0:
            return f"the netem qdisc is not available in this kernel: {added.stderr.strip()}"
    finally:
        ip("netns", "del", probe, check=False)
    return None


def require_netns() -> None:
    reason = netns_unavailable()
    if reason:
        pytest.skip(f"partition tests need network namespaces: {reason}")


LEFTOVER = re.compile(r"^cnm(\d+)x\d+(?:sw|n\d+)$")


def sweep_leftovers() -> None:
    """Remove the namespaces of test processes that died without cleaning up (SIGKILL), known
    by the pid in their name; never those of a process still alive."""
    for line in ip("netns", "list", check=False).stdout.splitlines():
        name = line.split(" ", 1)[0]
        match = LEFTOVER.match(name)
        if match and not Path(f"/proc/{match.group(1)}").exists():
            ip("netns", "del", name, check=False)


class NamespaceThread:
    """One thread inside a network namespace; `run(fn)` calls fn there (sockets it opens live
    in that namespace)."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self._pool = ThreadPoolExecutor(1, initializer=self._enter, thread_name_prefix=namespace)

    def _enter(self) -> None:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        fd = os.open(f"/run/netns/{self.namespace}", os.O_RDONLY)
        try:
            if libc.setns(fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), f"setns into {self.namespace}")
        finally:
            os.close(fd)

    def run(self, fn: Callable[[], T]) -> T:
        return self._pool.submit(fn).result()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


@dataclass
class NetnsAgent(Agent):
    """An agent run with `ip netns exec`; every request of the test goes from its namespace."""

    thread: NamespaceThread | None = None
    veth: str = ""
    network: Network | None = field(default=None, repr=False)

    def _in_ns(self, fn: Callable[[], T]) -> T:
        assert self.thread is not None
        return self.thread.run(fn)

    def wait_serving(self, timeout: float = 15.0) -> None:
        self._in_ns(lambda: Agent.wait_serving(self, timeout))

    def get(self, path: str, *, auth: tuple[str, str] | None = None, **kw: Any) -> httpx.Response:
        return self._in_ns(lambda: Agent.get(self, path, auth=auth, **kw))

    def post(
        self, path: str, body: Any = None, *, raw: bytes | None = None, **kw: Any
    ) -> httpx.Response:
        return self._in_ns(lambda: Agent.post(self, path, body, raw=raw, **kw))

    def cut(self) -> None:
        """Take this node off the network: its veth end on the bridge goes down."""
        assert self.network is not None
        ip("-n", self.network.switch, "link", "set", self.veth, "down")

    def reconnect(self) -> None:
        assert self.network is not None
        ip("-n", self.network.switch, "link", "set", self.veth, "up")


class Network(AgentFactory):
    """An `AgentFactory` whose agents each live in their own namespace on one bridge."""

    def __init__(self, base: Path) -> None:
        super().__init__(base)
        sweep_leftovers()
        self.tag = f"{os.getpid()}x{next(_counter)}"
        self.switch = f"cnm{self.tag}sw"
        self.namespaces: list[str] = []
        self.threads: list[NamespaceThread] = []

    def __enter__(self) -> Network:
        try:
            self._add_namespace(self.switch)
            ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
            ip("-n", self.switch, "link", "set", "br0", "up")
        except BaseException:
            self._remove()
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._remove()

    def _add_namespace(self, name: str) -> None:
        ip("netns", "add", name)
        self.namespaces.append(name)
        ip("-n", name, "link", "set", "lo", "up")

    def _remove(self) -> None:
        for thread in self.threads:
            thread.close()
        for name in reversed(self.namespaces):
            ip("netns", "del", name, check=False)
        self.namespaces.clear()

    def make(self, name: str | None = None, **kw: Any) -> NetnsAgent:
        index = len(self.agents) + 1
        namespace = f"cnm{self.tag}n{index}"
        self._add_namespace(namespace)
        # Both ends are made in the switch namespace: names need only be unique there.
        inside, outside = f"a{index}", f"b{index}"
        # Made in the switch namespace, one end moved into the node's and renamed there.
        ip("-n", self.switch, "link", "add", inside, "type", "veth", "peer", "name", outside)
        ip("-n", self.switch, "link", "set", inside, "netns", namespace)
        ip("-n", namespace, "link", "set", inside, "name", "eth0")
        ip("-n", self.switch, "link", "set", outside, "master", "br0", "up")
        addr = f"{SUBNET}.{index}"
        ip("-n", namespace, "addr", "add", f"{addr}/24", "dev", "eth0")
        ip("-n", namespace, "link", "set", "eth0", "up")
        thread = NamespaceThread(namespace)
        self.threads.append(thread)
        agent = NetnsAgent(
            addr=addr,
            data_dir=self.base / (name or f"n{index}"),
            command_prefix=["ip", "netns", "exec", namespace],
            thread=thread,
            veth=outside,
            network=self,
            **kw,
        )
        self.agents.append(agent)
        return agent

    def start(self, name: str | None = None, **kw: Any) -> NetnsAgent:
        agent = self.make(name, **kw)
        agent.start()
        return agent
