"""What the parts of bench_join share: driving agents through a join, reading their logs'
events, stopping a cluster, and CPU accounting from /proc.

A join is timed from sending POST /v1/bootstrap/join_cluster until the first GET /v1/bootstrap
(Basic auth) that shows `completed` or `error`; the agents' JSON log events (millisecond stamps)
place the steps in between.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from agent_logs import bootstrap_state, event_times, is_event
from common import (
    Agent,
    AgentFactory,
    RunFailed,
    basic,
    cpu_seconds,
    machine_busy_seconds,
    now,
)

ADMIN = ("admin@example.com", "bench-pass-1")
LOG_JSON = ["--log-format", "json"]
POLL_INTERVAL = 0.010  # one joining agent, polled while it joins
STOP_TIMEOUT = 10.0  # an agent gets this long to exit after SIGTERM

# Log events (JSON log format, millisecond timestamps) of the joiner that mark the steps of a
# join; the member's is `join_admission` with the joiner's address.
JOINER_EVENTS = {
    "joining": bootstrap_state("joining_cluster"),
    "trusted": is_event("ca_trusted"),
    "joined": is_event("joined"),
    "completed_log": bootstrap_state("completed"),
}


@dataclass
class JoinRun:
    addr: str
    state: str  # completed | error
    seconds: float  # POST sent -> first poll showing `state`
    start: float  # now() when the POST was sent
    wall_start: float  # time.time() then, to place log timestamps
    events: dict[str, float] = field(default_factory=dict)
    error_code: str | None = None
    error_message: str | None = None
    size: int = 0
    roles_at_post: str = ""
    floor: float | None = None
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds used during the join


# --- helpers on agents --------------------------------------------------------------------------


def create(agent: Agent, timeout: float) -> None:
    body = {
        "action": "create_cluster",
        "cluster": {"name": "bench.example.com"},
        "credentials": {"username": ADMIN[0], "password": ADMIN[1]},
    }
    response = agent.post("/v1/bootstrap/create_cluster", body)
    if response.status_code != 200:
        raise RunFailed(f"create_cluster answered {response.status_code}: {response.text}")
    try:
        status = agent.wait_state("completed", "error", auth=ADMIN, timeout=timeout)
    except AssertionError as exc:
        raise RunFailed(f"create_cluster: {exc}") from None
    if status["bootstrap_status"]["state"] != "completed":
        raise RunFailed(f"create_cluster failed: {status['bootstrap_status']}")


def join_body(members: Sequence[str]) -> dict[str, Any]:
    return {
        "action": "join_cluster",
        "cluster": {"nodes": list(members)},
        "credentials": {"username": ADMIN[0], "password": ADMIN[1]},
    }


def post_join(
    agent: Agent,
    members: Sequence[str],
    *,
    poll: float,
    timeout: float,
    before_post: Callable[[], object] | None = None,
) -> JoinRun:
    """POST join_cluster and poll until completed or error. Raises `RunFailed` when there is no
    outcome (HTTP failure, timeout); an `error` state is an outcome, returned."""
    url = agent.http_url
    auth = basic(*ADMIN)
    try:
        with httpx.Client(timeout=5.0) as client:
            # Untimed: opens the connection the timed requests reuse, checks the starting state.
            idle = client.get(url + "/v1/bootstrap").json()["bootstrap_status"]
            if idle["state"] != "idle":
                raise RunFailed(f"{agent.addr}: fresh agent is not idle: {idle}")
            if before_post is not None:
                before_post()
            wall_start = time.time()
            start = now()
            response = client.post(url + "/v1/bootstrap/join_cluster", json=join_body(members))
            events = {"post_answered": now() - start}
            if response.status_code != 200:
                raise RunFailed(
                    f"{agent.addr}: POST answered {response.status_code}: {response.text}"
                )
            while True:
                status = client.get(url + "/v1/bootstrap", headers=auth)
                seen = now() - start
                if status.status_code != 200:
                    raise RunFailed(
                        f"{agent.addr}: GET /v1/bootstrap answered {status.status_code}: "
                        f"{status.text}"
                    )
                bootstrap = status.json()["bootstrap_status"]
                state = bootstrap["state"]
                events.setdefault(f"poll_{bootstrap.get('phase') or state}", seen)
                if state in ("completed", "error"):
                    events[state] = seen
                    details = bootstrap.get("error_details") or {}
                    return JoinRun(
                        agent.addr,
                        state,
                        seen,
                        start,
                        wall_start,
                        events,
                        bootstrap.get("error_code"),
                        details.get("message") if isinstance(details, dict) else str(details),
                    )
                if seen > timeout:
                    raise RunFailed(
                        f"{agent.addr}: join not done within {timeout:g} s (state {state}, "
                        f"phase {bootstrap.get('phase')})"
                    )
                time.sleep(poll)
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        raise RunFailed(f"{agent.addr}: {type(exc).__name__}: {exc}") from None


def add_log_events(run: JoinRun, joiner: Agent, member: Agent) -> None:
    """The joiner's and the member's log events, in seconds after the POST."""
    for name, stamp in event_times(joiner.log_file, JOINER_EVENTS).items():
        run.events[name] = stamp - run.wall_start
    admitted = event_times(
        member.log_file,
        {"admitted": is_event("join_admission", joiner_addr=run.addr, outcome="admitted")},
    )
    if "admitted" in admitted:
        run.events["admitted"] = admitted["admitted"] - run.wall_start


def nodes_of(agent: Agent) -> list[dict[str, Any]]:
    response = agent.get("/v1/nodes", auth=ADMIN)
    if response.status_code != 200:
        raise RunFailed(f"GET /v1/nodes on {agent.addr} answered {response.status_code}")
    nodes: list[dict[str, Any]] = response.json()
    return nodes


def roles_text(nodes: list[dict[str, Any]]) -> str:
    roles = Counter(str(node.get("store_role") or "client") for node in nodes)
    parts = [f"{roles[role]} {role}" for role in ("voter", "learner") if roles[role]]
    return " + ".join(parts) or "none"


def voter_endpoints(nodes: list[dict[str, Any]]) -> tuple[str, ...]:
    return tuple(
        str(node["store_client_url"])
        for node in nodes
        if node.get("store_role") == "voter" and node.get("store_client_url")
    )


def _terminate(agents: Sequence[Agent], label: str) -> list[str]:
    """SIGTERM the agents together and wait for them with one deadline; an agent still running
    then is reported and killed (the harness would give each 15 s more, one after the other)."""
    problems = []
    for agent in agents:
        assert agent.process is not None
        agent.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    for agent in agents:
        assert agent.process is not None
        try:
            code = agent.process.wait(max(deadline - time.monotonic(), 0.01))
        except subprocess.TimeoutExpired:
            problems.append(
                f"{label}: agent {agent.addr} still running {STOP_TIMEOUT:g} s after SIGTERM "
                f"(killed; its log ends with: {_last_message(agent)})"
            )
            agent.process.kill()
            agent.process.wait()
            continue
        if code != 0:
            problems.append(f"{label}: agent {agent.addr} exited with {code} after SIGTERM")
    return problems


def _last_message(agent: Agent) -> str:
    lines = agent.log().strip().splitlines()
    try:
        return str(json.loads(lines[-1]).get("message"))
    except (IndexError, ValueError, AttributeError):
        return lines[-1] if lines else "(empty log)"


def stop_cluster(factory: AgentFactory, label: str, artefacts: Path) -> list[str]:
    """Stop a cluster's agents, check exit codes and leftover etcd processes, release the
    addresses; returns the problems. The agents without a store member go first, all at once,
    then the voters one at a time: stopped together, a voter's etcd tries to hand its leadership
    to members that are going away and its agent kills it after 3 s."""
    running = [a for a in factory.agents if a.process is not None and a.process.poll() is None]
    voters = [a for a in running if a.etcd_pids()]
    problems = _terminate([a for a in running if a not in voters], label)
    for voter in voters:
        problems += _terminate([voter], label)
    deadline = time.monotonic() + 2.0
    left = [a for a in factory.agents if a.etcd_pids()]
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = [a for a in left if a.etcd_pids()]
    problems += [f"{label}: etcd of {a.addr} still running after its agent exited" for a in left]
    problems += [
        f"{label}: {report}" for report in factory.close(failed=False, artefacts=artefacts)
    ]
    return problems


# --- CPU accounting: whether a join waits or computes, and who else used the machine -----------


def cpu_watch(joiner: Agent, member: Agent, etcd: Sequence[int]) -> dict[str, list[int]]:
    assert joiner.process is not None and member.process is not None
    return {"joiner": [joiner.process.pid], "member": [member.process.pid], "etcd": list(etcd)}


def cpu_read(watched: dict[str, list[int]]) -> dict[str, float]:
    """CPU seconds so far of each group of processes, and of the whole machine (busy time)."""
    found = {name: sum(cpu_seconds(pid) for pid in pids) for name, pids in watched.items()}
    found["machine"] = machine_busy_seconds()
    return found


def cpu_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """The CPU each group used between two readings, and `others`: what the rest of the machine
    used (other agents, this benchmark, anything else running on it)."""
    used = {name: after[name] - before[name] for name in after}
    # /proc counts in clock ticks (10 ms) per process: a few ticks of rounding, never below 0.
    used["others"] = max(0.0, used["machine"] - sum(v for k, v in used.items() if k != "machine"))
    return used
