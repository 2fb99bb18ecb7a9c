"""Supervision of the local etcd member that an agent runs as its child.

The agent starts etcd with mutual TLS on its own address, waits until the member serves
linearizable reads, and stops it in order on shutdown. etcd must never outlive the agent, also
when the agent is killed with SIGKILL: the child gets a parent-death signal (`setpriv
--pdeathsig`, from util-linux, which every Debian has; `prctl` from a pre-exec hook otherwise).
The child is spawned from the event-loop thread, which lives as long as the process, because
Linux delivers the parent-death signal when the spawning *thread* exits. The signal only
covers a death after it was set: an agent that dies in the instant between the spawn and the
child's `prctl` (a crash right after starting its member) would leave etcd running, so once the
signal is set the child checks that its parent is still the agent and exits (70) if not.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import shutil
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from cnm.config import url_host
from cnm.errors import StoreError, StoreUnavailable
from cnm.logs import event
from cnm.node.data_dir import private_log
from cnm.store.base import Store
from cnm.store.member import MemberExit

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
# The agent's environment variable that turns on etcd's Go profiler (`EtcdMemberSpec.pprof`).
PPROF_ENV = "CNM_ETCD_PPROF"
# What etcd logs (then exits) when it learns that the cluster removed it (etcd's ErrMemberRemoved,
# "the member has been permanently removed from the cluster").
_REMOVED_MARKERS = ("permanently removed from the cluster", "member has been permanently removed")


@dataclass(frozen=True)
class EtcdMemberSpec:
    """How to run one etcd member. Paths are absolute; URLs use the node's address."""

    name: str
    data_dir: Path
    addr: str
    client_port: int
    peer_port: int
    ca_file: Path
    cert_file: Path
    key_file: Path
    initial_cluster: str
    initial_state: Literal["new", "existing"]
    cluster_token: str
    log_file: Path
    # Idle cost: the leader sends every follower a heartbeat each `heartbeat_ms` (a TLS
    # message and an answer), which is most of an idle member's CPU; 100 ms is half what
    # 50 ms cost. Speed: a fresh member waits a random 1..(election/heartbeat) ticks before it
    # elects itself, so a new cluster takes 0.1-0.5 s to have a leader (create), and a dead
    # leader is replaced after 0.5-1 s. etcd wants election >= 5 heartbeats; 500 ms leaves a
    # loaded 2-core machine running five members on loopback without flapping.
    heartbeat_ms: int = 100
    election_ms: int = 500
    # etcd's strict reconfiguration check refuses any member add until every voter has been
    # connected for 5 s, which paced a new voter to one per 5 s. cnm keeps quorum by its own
    # rules instead (cluster/store_members.py): it adds only learners, promotes one only when
    # the voters after the promotion have a live majority, and removes a voter only when the
    # rest keep one; etcd still refuses to promote a learner that is not in sync.
    strict_reconfig_check: bool = False
    # Go's scheduler threads: 1 unless the agent's environment sets GOMAXPROCS (which means
    # nothing to the agent itself, so it is taken as meant for etcd). With one per core, every
    # raft tick and keep-alive wakes idle threads that spin looking for work; measured with
    # bench/keepalive_paths.py (5 members, 100 leases kept alive): the leader 2.9-3.2 % of a
    # core -> 2.0-2.1 %, the followers 1.8-2.0 % -> 1.2-1.3 %. cnm's store carries the
    # cluster's metadata at a few writes a second, well within one core; None: Go's default.
    go_max_procs: int | None = 1
    # Go's profiler (`--enable-pprof`: /debug/pprof on the client port, behind the same mutual
    # TLS), for finding where an etcd member's CPU goes (bench/bench_idle.py). Off unless the
    # agent's environment sets CNM_ETCD_PPROF=1: a profile being read costs the member CPU.
    pprof: bool = field(default_factory=lambda: os.environ.get(PPROF_ENV) == "1")

    @property
    def client_url(self) -> str:
        return f"https://{url_host(self.addr)}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"https://{url_host(self.addr)}:{self.peer_port}"


def etcd_arguments(binary: str, spec: EtcdMemberSpec) -> list[str]:
    return [
        binary,
        f"--name={spec.name}",
        f"--data-dir={spec.data_dir}",
        f"--listen-client-urls={spec.client_url}",
        f"--advertise-client-urls={spec.client_url}",
        f"--listen-peer-urls={spec.peer_url}",
        f"--initial-advertise-peer-urls={spec.peer_url}",
        f"--initial-cluster={spec.initial_cluster}",
        f"--initial-cluster-state={spec.initial_state}",
        f"--initial-cluster-token={spec.cluster_token}",
        f"--cert-file={spec.cert_file}",
        f"--key-file={spec.key_file}",
        f"--trusted-ca-file={spec.ca_file}",
        "--client-cert-auth=true",
        f"--peer-cert-file={spec.cert_file}",
        f"--peer-key-file={spec.key_file}",
        f"--peer-trusted-ca-file={spec.ca_file}",
        "--peer-client-cert-auth=true",
        f"--heartbeat-interval={spec.heartbeat_ms}",
        f"--election-timeout={spec.election_ms}",
        f"--strict-reconfig-check={'true' if spec.strict_reconfig_check else 'false'}",
        "--logger=zap",
        "--log-level=warn",
        # Keep an hour of history (watches resume within it); without compaction the database
        # grows with every write until etcd's space quota stops the cluster.
        "--auto-compaction-mode=periodic",
        "--auto-compaction-retention=1h",
        # Authentication (store/etcd_auth.py): simple tokens, 300 s after their last use. The
        # passwords are 256 random bits, which no offline guessing finds at any bcrypt cost, so
        # the lowest cost keeps each authenticate (and thus each join) cheap.
        "--auth-token=simple",
        "--bcrypt-cost=4",
        *(["--enable-pprof"] if spec.pprof else []),
    ]


def etcd_environment(spec: EtcdMemberSpec) -> dict[str, str]:
    """The environment etcd runs with: the agent's, with `spec.go_max_procs` unless the agent's
    environment sets GOMAXPROCS itself."""
    environment = dict(os.environ)
    if spec.go_max_procs is not None and "GOMAXPROCS" not in environment:
        environment["GOMAXPROCS"] = str(spec.go_max_procs)
    return environment


# Exit status of a child that found its agent gone before etcd could start.
ORPHANED_EXIT = 70
# Run by /bin/sh once setpriv set the death signal: $1 is the agent's pid, then etcd's argv.
_PARENT_CHECK = 'test "$PPID" = "$1" || exit 70; shift; exec "$@"'


def _parent_death_signal(parent: int) -> Callable[[], None]:
    def set_signal() -> None:  # pragma: no cover - runs in the child
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:
            os._exit(ORPHANED_EXIT)

    return set_signal


def death_signal_wrapper(parent: int) -> tuple[list[str], Callable[[], None] | None]:
    """(argv prefix, pre-exec hook) that make a child die with process `parent` (the agent),
    including when `parent` is already gone by the time the signal is set."""
    setpriv, shell = shutil.which("setpriv"), shutil.which("sh")
    if setpriv and shell:
        check = [shell, "-c", _PARENT_CHECK, "cnm-etcd", str(parent)]
        return [setpriv, "--pdeathsig", "KILL", "--", *check], None
    return [], _parent_death_signal(parent)


class EtcdProcess:
    """One etcd child process, the etcd `StoreMember`. Not restartable: `again()` makes the next."""

    def __init__(self, binary: str, spec: EtcdMemberSpec) -> None:
        self.binary = binary
        self.spec = spec
        self._process: asyncio.subprocess.Process | None = None
        # Where this run's lines start in the log file (earlier runs append to the same file).
        self._log_start = 0

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.returncode is None

    async def start(self) -> None:
        self.spec.data_dir.parent.mkdir(parents=True, exist_ok=True)
        self.spec.log_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        prefix, preexec = death_signal_wrapper(os.getpid())
        argv = prefix + etcd_arguments(self.binary, self.spec)
        with private_log(self.spec.log_file) as log_out:
            self._log_start = log_out.tell()
            self._process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log_out,
                stderr=log_out,
                env=etcd_environment(self.spec),
                preexec_fn=preexec,
                start_new_session=True,  # a Ctrl-C to the agent's group must not kill etcd first
            )
        log.info(
            "etcd member %s started, pid %s",
            self.spec.name,
            self._process.pid,
            extra=event("store_member_started", name=self.spec.name, pid=self._process.pid),
        )

    def again(self) -> EtcdProcess:
        return EtcdProcess(self.binary, self.spec)

    async def wait_ready(self, store: Store, *, timeout: float = 15.0) -> None:
        """Poll until the member serves linearizable reads (it has a leader). Raises
        `StoreError` when etcd exits first, with the end of its log."""
        deadline = time.monotonic() + timeout
        while True:
            if not self.running:
                raise StoreError(
                    f"etcd exited with code {self.returncode()} while starting: {self.log_tail()}"
                )
            try:
                await store.get("/cnm/ready-probe")
                return
            except StoreUnavailable:
                if time.monotonic() > deadline:
                    raise StoreUnavailable(
                        f"etcd member {self.spec.name} did not serve within {timeout:.0f} s: "
                        f"{self.log_tail()}"
                    ) from None
            await asyncio.sleep(0.01)

    def returncode(self) -> int | None:
        return self._process.returncode if self._process else None

    def exit_condition(self) -> MemberExit:
        """REMOVED when this run's log says the cluster removed the member, else FAILED."""
        try:
            with open(self.spec.log_file, "rb") as log_in:
                log_in.seek(self._log_start)
                text = log_in.read().decode(errors="replace")
        except OSError:
            return MemberExit.FAILED
        if any(marker in text for marker in _REMOVED_MARKERS):
            return MemberExit.REMOVED
        return MemberExit.FAILED

    def log_tail(self, lines: int = 5) -> str:
        try:
            text = self.spec.log_file.read_text(errors="replace")
        except OSError:
            return "(no etcd log)"
        tail = [line for line in text.splitlines() if line.strip()][-lines:]
        return " | ".join(tail) or "(etcd log is empty)"

    async def stop(self, *, timeout: float = 3.0) -> None:
        process = self._process
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(timeout):
                await process.wait()
        except TimeoutError:
            log.warning("etcd %s ignored SIGTERM for %.0f s, killing it", self.spec.name, timeout)
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
        log.info("etcd member %s stopped", self.spec.name)

    async def wait(self) -> int:
        if self._process is None:
            raise RuntimeError("etcd was never started")
        return await self._process.wait()


def remove_member_data(data_dir: Path) -> None:
    """Delete a member's data directory (after a failed create)."""
    if data_dir.exists():
        shutil.rmtree(data_dir)


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
