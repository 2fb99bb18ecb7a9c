"""Real cnm agents as subprocesses, each on its own loopback address and data dir."""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from cnm.node.data_dir import DataDir
from harness.addresses import claim_address, release_address
from harness.polling import eventually

REPORT_MARKER = "please report"
ARTEFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def basic(username: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def etcd_pids_under(directory: Path) -> list[int]:
    """etcd processes whose command line names a path under `directory` (one /proc scan)."""
    marker = str(directory).encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmdline[0].endswith(b"etcd") and any(marker in part for part in cmdline):
            found.append(int(entry.name))
    return found


def signer_children(parent: int) -> list[tuple[int, str]]:
    """(pid, state letter from /proc) of the signer child processes of process `parent`
    (security/signing.py)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        if int(ppid) == parent and b"cnm.security.signer_process" in command:
            found.append((int(entry.name), state))
    return found


@dataclass
class Agent:
    addr: str
    data_dir: Path
    extra_args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    command_prefix: list[str] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None

    @property
    def layout(self) -> DataDir:
        return DataDir(self.data_dir)

    @property
    def persistent_path(self) -> Path:
        return self.layout.persistent_path

    @property
    def ephemeral_path(self) -> Path:
        return self.layout.ephemeral_path

    @property
    def log_file(self) -> Path:
        return self.layout.agent_log

    @property
    def http_url(self) -> str:
        return f"http://{self.addr}:8080"

    @property
    def https_url(self) -> str:
        return f"https://{self.addr}:9443"

    @property
    def ca_file(self) -> Path:
        return self.layout.cluster_tls.ca_file

    def argv(self) -> list[str]:
        return [
            *self.command_prefix,
            sys.executable,
            "-m",
            "cnm",
            "node",
            "run",
            "--addr",
            self.addr,
            "--data-dir",
            str(self.data_dir),
            "--persistent-path",
            str(self.persistent_path),
            "--ephemeral-path",
            str(self.ephemeral_path),
            "--bigstore-path",
            str(self.layout.bigstore_path),
            *self.extra_args,
        ]

    def start(self, *, wait: bool = True) -> Agent:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_file, "ab")  # noqa: SIM115 - the child owns it
        self.process = subprocess.Popen(
            self.argv(),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **self.env},
            # Its own process group, so teardown can reach anything a wrapper started.
            start_new_session=True,
        )
        log.close()
        if wait:
            self.wait_serving()
        return self

    def wait_serving(self, timeout: float = 15.0) -> None:
        def serving() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"agent exited with {self.process.returncode}: {self.log()}")
            # Any HTTP answer (200, 401, 503) means the API listens.
            httpx.get(self.http_url + "/v1/bootstrap", timeout=1.0)
            return True

        eventually(serving, timeout=timeout, message=f"agent {self.addr} serving")

    def log(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def get(self, path: str, *, auth: tuple[str, str] | None = None, **kw: Any) -> httpx.Response:
        headers = {**(basic(*auth) if auth else {}), **kw.pop("headers", {})}
        return httpx.get(self.http_url + path, headers=headers, timeout=5.0, **kw)

    def post(
        self, path: str, body: Any = None, *, raw: bytes | None = None, **kw: Any
    ) -> httpx.Response:
        if raw is not None:
            return httpx.post(self.http_url + path, content=raw, timeout=5.0, **kw)
        return httpx.post(self.http_url + path, json=body, timeout=5.0, **kw)

    def status(self, auth: tuple[str, str] | None = None) -> dict[str, Any]:
        response = self.get("/v1/bootstrap", auth=auth)
        response.raise_for_status()
        document: dict[str, Any] = response.json()
        return document

    def wait_state(
        self, *states: str, auth: tuple[str, str] | None = None, timeout: float = 20.0
    ) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            status = self.status(auth)
            return status if status["bootstrap_status"]["state"] in states else None

        return eventually(reached, timeout=timeout, message=f"{self.addr} in {states}")

    def signal(self, sig: int) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def stop(self, timeout: float = 15.0) -> int:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"agent {self.addr} ignored SIGTERM for {timeout} s") from None

    def kill9(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait()

    def etcd_pids(self) -> list[int]:
        """Processes whose command line runs etcd with this agent's data dir."""
        return etcd_pids_under(self.data_dir)


class AgentFactory:
    """Makes agents for one test; cleans them up and keeps their dirs when the test failed."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.agents: list[Agent] = []

    def make(self, name: str | None = None, **kw: Any) -> Agent:
        addr = claim_address()
        agent = Agent(addr=addr, data_dir=self.base / (name or addr), **kw)
        self.agents.append(agent)
        return agent

    def start(self, name: str | None = None, **kw: Any) -> Agent:
        return self.make(name, **kw).start()

    def close(self, *, failed: bool, artefacts: Path) -> list[str]:
        reports = []
        # Stop every agent at once: one by one, each voter would wait for its lost quorum.
        running = [a for a in self.agents if a.process is not None and a.process.poll() is None]
        for agent in running:
            assert agent.process is not None
            agent.process.send_signal(signal.SIGTERM)
        for agent in running:
            with contextlib.suppress(AssertionError):
                agent.stop()
        for agent in self.agents:
            if agent.process is not None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(agent.process.pid, signal.SIGKILL)
            for pid in agent.etcd_pids():
                os.kill(pid, signal.SIGKILL)
            if REPORT_MARKER in agent.log():
                reports.append(f"{agent.addr}: {REPORT_MARKER!r} in its log")
            release_address(agent.addr)
        if failed or reports:
            artefacts.mkdir(parents=True, exist_ok=True)
            shutil.copytree(self.base, artefacts / self.base.name, dirs_exist_ok=True)
        return reports


def close_and_check(factory: AgentFactory, *, failed: bool, artefacts: Path) -> None:
    """Close `factory` (its dirs kept under `artefacts` when `failed`); fail the test when an
    agent's log holds the please-report marker."""
    reports = factory.close(failed=failed, artefacts=artefacts)
    if reports:
        pytest.fail("agent logs contain the please-report marker: " + "; ".join(reports))


@contextlib.contextmanager
def module_agent_factory(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, name: str
) -> Iterator[AgentFactory]:
    """The agent factory of a module-scoped fixture: `with module_agent_factory(...) as f:
    yield f`. Closed at the module's end (dirs kept under test-artifacts/`name` when a test of
    the module failed, or the set-up did), then checked for the please-report marker."""
    factory = AgentFactory(tmp_path_factory.mktemp(name))
    failed_before = request.session.testsfailed
    failed = True
    try:
        yield factory
        failed = request.session.testsfailed > failed_before
    finally:
        close_and_check(factory, failed=failed, artefacts=ARTEFACTS / name)
