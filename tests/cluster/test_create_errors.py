"""create_cluster on real agents when things go wrong: a crash mid-create, an etcd that will not
start, bad paths; and two agents side by side, local_node_info against the machine, bad input
over real HTTP. Every status record read from disk must parse (it is written atomically).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import socket
import stat
from pathlib import Path
from typing import Any

import httpx

from harness.agents import Agent, AgentFactory, basic
from harness.bodies import ADMIN, create_body
from harness.polling import eventually

CREATE = "/v1/bootstrap/create_cluster"
STATE_ORDER = ["idle", "initiated", "creating_cluster", "completed"]


def record(agent: Agent) -> dict[str, Any] | None:
    """The status record on disk. It must parse whenever it is read: a torn write would not."""
    try:
        raw = agent.layout.status_file.read_bytes()
    except FileNotFoundError:
        return None
    document: dict[str, Any] = json.loads(raw)
    return document


def processes_using(path: Path) -> list[int]:
    """Processes whose command line mentions `path` (the agent, its etcd, a wrapper)."""
    found = []
    needle = str(path).encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if needle in cmdline:
            found.append(int(entry.name))
    return found


def slow_etcd(tmp_path: Path, seconds: int = 5) -> Path:
    """An etcd that takes `seconds` to start: widens the creating_cluster window. The test kills
    the agent as soon as it sees the state, so the width costs no time; it only keeps a slow
    poll on a busy machine from missing the window."""
    etcd = shutil.which("etcd")
    assert etcd is not None
    script = tmp_path / "slow-etcd.sh"
    script.write_text(f'#!/bin/sh\nsleep {seconds}\nexec {etcd} "$@"\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def wait_recorded(agent: Agent, *states: str, auth: tuple[str, str] | None = None) -> list[str]:
    """Poll the API until a state in `states`, parsing the status file at every poll; returns
    the distinct states the file showed, in the order seen."""
    seen: list[str] = []

    def reached() -> bool:
        on_disk = record(agent)
        if on_disk is not None and (not seen or seen[-1] != on_disk["state"]):
            seen.append(on_disk["state"])
        return agent.status(auth)["bootstrap_status"]["state"] in states

    eventually(reached, timeout=20, interval=0.005, message=f"{agent.addr} in {states}")
    final = record(agent)
    assert final is not None
    if seen[-1] != final["state"]:
        seen.append(final["state"])
    return seen


def test_kill9_while_creating_then_restart_is_error_interrupted(
    agents: AgentFactory, tmp_path: Path
) -> None:
    agent = agents.start(extra_args=["--etcd-binary", str(slow_etcd(tmp_path))])
    assert agent.post(CREATE, create_body()).status_code == 200
    agent.wait_state("creating_cluster", timeout=10)
    agent.kill9()
    # Its children die with it (parent-death signal): no etcd, no wrapper left on the data dir.
    eventually(lambda: processes_using(agent.data_dir) == [], timeout=5, message="children gone")
    on_disk = record(agent)
    assert on_disk is not None and on_disk["state"] == "creating_cluster"

    agent.extra_args = []  # restart with the real etcd
    agent.start()
    status = agent.status()["bootstrap_status"]
    assert status["state"] == "error", status
    assert status["error_code"] == "internal_error"
    details = status["error_details"]
    assert "interrupted" in details["message"]
    assert "creating_cluster" in details["message"]
    assert details["retryable"] is True
    assert status["start_time"].endswith("Z") and status["end_time"].endswith("Z")
    on_disk = record(agent)
    assert on_disk is not None and on_disk["state"] == "error"

    assert agent.post(CREATE, create_body()).status_code == 200
    seen = wait_recorded(agent, "completed", "error", auth=ADMIN)
    assert seen[-1] == "completed", agent.status(ADMIN)
    assert agent.get("/v1/cluster", auth=ADMIN).status_code == 200


def test_etcd_that_exits_at_once_is_an_error_and_a_retry_after_restart_completes(
    agents: AgentFactory,
) -> None:
    agent = agents.start(extra_args=["--etcd-binary", "/bin/false"])
    assert agent.post(CREATE, create_body()).status_code == 200
    status = agent.wait_state("completed", "error")["bootstrap_status"]
    assert status["state"] == "error"
    message = status["error_details"]["message"]
    assert "etcd exited with code 1 while starting" in message, message
    assert status["error_details"]["phase"] == "store"
    on_disk = record(agent)
    assert on_disk is not None and on_disk["state"] == "error"
    failed_ca = agent.ca_file.read_bytes()  # what the failed attempt left

    assert agent.stop() == 0
    agent.extra_args = []
    agent.start()
    # A restart keeps the error on show (a retry must not hide it) until a new request.
    after_restart = agent.status()["bootstrap_status"]
    assert after_restart["state"] == "error"
    assert after_restart["error_details"]["message"] == message

    assert agent.post(CREATE, create_body()).status_code == 200
    status = agent.wait_state("completed", "error", auth=ADMIN)["bootstrap_status"]
    assert status["state"] == "completed", status
    # The failed attempt's certificates were removed and made anew, not reused.
    assert agent.ca_file.read_bytes() != failed_ca


def test_post_from_error_after_path_error_succeeds(agents: AgentFactory) -> None:
    agent = agents.start()
    missing = agent.data_dir / "no-such-dir"
    body = create_body(node={"paths": {"persistent_path": str(missing)}})
    assert agent.post(CREATE, body).status_code == 200
    status = agent.wait_state("completed", "error")["bootstrap_status"]
    assert status["error_code"] == "path_error"
    assert str(missing) in status["error_details"]["message"]
    assert status["error_details"]["path"] == str(missing)
    on_disk = record(agent)
    assert on_disk is not None and on_disk["error_code"] == "path_error"

    assert agent.post(CREATE, create_body()).status_code == 200
    seen = wait_recorded(agent, "completed", "error", auth=ADMIN)
    assert seen[-1] == "completed"
    assert agent.status(ADMIN)["local_node_info"]["persistent_storage_path"] == str(
        agent.persistent_path
    )


def test_two_agents_side_by_side_create_two_clusters(agents: AgentFactory) -> None:
    one, two = agents.start("one"), agents.start("two")
    admins = {one.addr: ("one@example.com", "password-one"), two.addr: ADMIN}
    names = {one.addr: "one.example.com", two.addr: "two.example.com"}
    for agent in (one, two):
        body = create_body(names[agent.addr], admins[agent.addr])
        assert agent.post(CREATE, body).status_code == 200
    uuids = set()
    for agent in (one, two):
        auth = admins[agent.addr]
        seen = wait_recorded(agent, "completed", "error", auth=auth)
        # Each state the file showed is a step of the machine, in order, ending in completed.
        assert seen[-1] == "completed", agent.status(auth)
        assert [STATE_ORDER.index(state) for state in seen] == sorted(
            STATE_ORDER.index(state) for state in seen
        )
        status = agent.status(auth)
        assert status["local_node_info"]["uid"] == "1"
        assert status["local_node_info"]["available_addresses"][0]["address"] == agent.addr
        cluster = agent.get("/v1/cluster", auth=auth)
        assert cluster.status_code == 200
        assert cluster.json()["name"] == names[agent.addr]
        uuids.add(cluster.json()["uuid"])
    assert len(uuids) == 2
    # Each agent runs its own etcd, and each cluster knows only its own admin.
    assert one.etcd_pids() and two.etcd_pids() and set(one.etcd_pids()) != set(two.etcd_pids())
    assert one.get("/v1/bootstrap", auth=admins[two.addr]).status_code == 401
    assert two.get("/v1/bootstrap", auth=admins[one.addr]).status_code == 401


def _meminfo_total() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no MemTotal in /proc/meminfo")


def test_local_node_info_matches_the_machine(agents: AgentFactory) -> None:
    agent = agents.start()
    info = agent.status()["local_node_info"]
    assert info["uid"] == ""
    assert info["cores"] == os.cpu_count()
    assert info["total_memory"] == _meminfo_total()
    assert info["short_hostname"] == socket.gethostname().split(".")[0]
    assert info["architecture"] == platform.machine()
    proc_uptime = float(Path("/proc/uptime").read_text().split()[0])
    assert abs(info["uptime"] - proc_uptime) <= 5
    assert info["available_addresses"][0] == {
        "address": agent.addr,
        "format": "ipv4",
        "if_name": "lo",
        "private": True,
    }
    assert info["available_addrs"] == info["available_addresses"]
    assert info["persistent_storage_path"] == str(agent.persistent_path)
    assert info["ephemeral_storage_path"] == str(agent.ephemeral_path)
    st = os.statvfs(agent.persistent_path)
    assert info["persistent_storage_size"] == float(st.f_blocks * st.f_frsize)
    assert record(agent) is None  # nothing is written before a request


def test_bad_input_over_real_http(agents: AgentFactory) -> None:
    agent = agents.start()
    url = agent.http_url + CREATE
    with httpx.Client(timeout=10) as client:
        too_big = client.post(url, content=b"{" + b" " * (2 * 1024 * 1024) + b"}")
        assert too_big.status_code == 413
        assert too_big.json()["error_code"] == "payload_too_large"

        broken = client.post(url, content=b'{\n  "action": "create_cluster"\n  "cluster": {}\n}')
        assert broken.status_code == 400
        assert broken.json()["line"] == 3 and broken.json()["column"] == 3

        unknown = client.post(agent.http_url + "/v1/bootstrap/frobnicate", json=create_body())
        assert unknown.status_code == 404 and unknown.json()["error_code"] == "not_found"

        # Over HTTPS too (the self-signed certificate before bootstrap).
        with httpx.Client(timeout=10, verify=False) as insecure:
            deep = insecure.post(agent.https_url + CREATE, content=b"[" * 10_000)
        assert deep.status_code == 400 and deep.json()["error_code"] == "invalid_schema"
    assert agent.status()["bootstrap_status"] == {"state": "idle"}
    assert record(agent) is None
    assert "Traceback" not in agent.log()


def test_restart_after_error_keeps_the_error_and_auth_stays_off(agents: AgentFactory) -> None:
    agent = agents.start()
    assert agent.post(CREATE, create_body(name="bad_name")).status_code == 200
    before = agent.wait_state("error")["bootstrap_status"]
    assert agent.stop() == 0
    agent.start()
    # Still not in a cluster: no auth needed, any Authorization ignored, the same error shown.
    response = agent.get("/v1/bootstrap", headers=basic("who", "ever"))
    assert response.status_code == 200
    assert response.json()["bootstrap_status"] == before
