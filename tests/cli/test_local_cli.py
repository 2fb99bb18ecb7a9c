"""`cnm local up|status|down`: real agents started by the CLI itself, and nothing left behind."""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from cli.clikit import JOIN_NOT_SERVED, assert_plain, cli_env, run_cnm
from cnm.node.data_dir import LocalClusterDir
from harness.addresses import claim_address, release_address


@pytest.fixture
def addresses() -> Iterator[list[str]]:
    claimed = [claim_address(), claim_address()]
    yield claimed
    for addr in claimed:
        release_address(addr)


def alive(pid: int) -> bool:
    """Running, not a zombie: the agents' parent exited, whoever adopted them reaps them."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def processes_using(directory: Path) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = process.info.get("cmdline") or []
        if any(str(directory) in part for part in cmdline):
            found.append(process)
    return found


def printed_commands(stdout: str) -> tuple[str, str]:
    """The command under "try:" and the one after "stop:" in `cnm local up`'s report."""
    lines = stdout.splitlines()
    try_line = lines[lines.index("try:") + 1].strip()
    stop_line = next(line for line in lines if line.startswith("stop: "))[len("stop: ") :]
    return try_line, stop_line


def run_shell(command: str) -> subprocess.CompletedProcess[str]:
    parts = os.environ.get("PATH", "").split(os.pathsep)
    path = os.pathsep.join(part for part in parts if not shutil.which("cnm", path=part))
    return subprocess.run(
        ["bash", "-c", command],
        capture_output=True,
        text=True,
        timeout=60,
        env=cli_env({"PATH": path}),
        check=False,
    )


@pytest.fixture
def local_dir(tmp_path: Path) -> Iterator[Path]:
    directory = tmp_path / "local"
    yield directory
    # Whatever a failed test left running is stopped here, by the CLI first.
    if LocalClusterDir(directory).state_file.exists():
        run_cnm("local", "down", "--dir", str(directory), "--timeout", "10")
    for process in processes_using(directory):
        process.kill()


def test_local_up_one_node_status_and_down(local_dir: Path, addresses: list[str]) -> None:
    up = run_cnm(
        "local", "up", "--dir", str(local_dir), "--addrs", addresses[0], "--name", "l1.local"
    )
    assert up.code == 0, up
    assert_plain(up)
    assert addresses[0] in up.stdout
    assert f"https://{addresses[0]}:9443" in up.stdout
    layout = LocalClusterDir(local_dir)
    assert str(layout.node("node1").agent_log) in up.stdout
    password_file = layout.password_file
    assert str(password_file) in up.stdout
    assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
    state = json.loads(layout.state_file.read_text())
    pids = [node["pid"] for node in state["nodes"]]
    assert all(alive(pid) for pid in pids)

    status = run_cnm("local", "status", "--dir", str(local_dir), "-o", "json")
    assert status.code == 0, status
    document = status.json()
    assert [a["state"] for a in document["agents"]] == ["completed"]
    assert [n["addr"] for n in document["nodes"]] == [addresses[0]]

    # The printed commands work as printed, in a shell whose PATH has no `cnm` (the README's
    # set-up leaves it in .venv/bin): the cluster CA verifies the node's HTTPS.
    try_line, stop_line = printed_commands(up.stdout)
    assert str(layout.node("node1").cluster_tls.ca_file) in try_line
    listed = run_shell(try_line)
    assert listed.returncode == 0, listed
    assert addresses[0] in listed.stdout

    down = run_shell(stop_line)
    assert down.returncode == 0, down
    assert "stopped" in down.stdout
    assert processes_using(local_dir) == []
    assert not any(alive(pid) for pid in pids)


def test_local_up_two_nodes_joins_the_second(local_dir: Path, addresses: list[str]) -> None:
    up = run_cnm("local", "up", "--dir", str(local_dir), "--addrs", ",".join(addresses))
    down = run_cnm("local", "down", "--dir", str(local_dir))
    assert down.code == 0, down
    assert processes_using(local_dir) == []
    if up.code == 1 and JOIN_NOT_SERVED in up.stderr:
        assert "did not join" in up.stderr
        pytest.skip("the agent does not serve join_cluster yet: " + up.stderr.strip())
    assert up.code == 0, up
    for addr in addresses:
        assert addr in up.stdout


def test_local_up_refuses_busy_ports(local_dir: Path, addresses: list[str]) -> None:
    with socket.socket() as listener:
        listener.bind((addresses[1], 9443))
        listener.listen()
        busy = run_cnm("local", "up", "--dir", str(local_dir), "--addrs", ",".join(addresses))
    assert busy.code == 1, busy
    assert f"{addresses[1]} ports 9443" in busy.stderr
    assert not LocalClusterDir(local_dir).state_file.exists()
    assert processes_using(local_dir) == []
