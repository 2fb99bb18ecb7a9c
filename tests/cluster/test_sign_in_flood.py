"""A password flood against a real agent (issue 11 §4): 16 clients hammer wrong passwords while
a legitimate client polls; the legitimate client's median latency stays within 2x its unloaded
value, the attackers are locked out per (user, address), and the admin unlocks one of them with
`cnm user unlock`."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from harness.agents import Agent, AgentFactory
from harness.bodies import ADMIN, create_body

pytestmark = pytest.mark.cluster

FLOOD = Path(__file__).parents[1] / "harness" / "flood.py"
ATTACKERS = 16
LEGIT_ADDRESS = "127.0.201.1"


def poll_latencies(
    client: httpx.Client,
    url: str,
    count: int,
    *,
    while_running: subprocess.Popen[str] | None = None,
) -> list[float]:
    """`count` polls, or more while the process `while_running` runs."""
    latencies: list[float] = []
    while len(latencies) < count or (while_running and while_running.poll() is None):
        started = time.perf_counter()
        response = client.get(f"{url}/v1/cluster", auth=ADMIN)
        latencies.append(time.perf_counter() - started)
        assert response.status_code == 200, response.text
    return latencies


def test_a_flood_does_not_starve_the_legitimate_client(agents: AgentFactory) -> None:
    agent: Agent = agents.start()
    assert agent.post("/v1/bootstrap/create_cluster", create_body()).status_code == 200
    assert agent.wait_state("completed", "error", auth=ADMIN)["bootstrap_status"]["state"] == (
        "completed"
    )
    # Three failures instead of the default five: fewer argon2 runs before every attacker is
    # locked keeps the test short on a loaded machine (the count is the same code either way).
    policy = httpx.put(
        f"{agent.http_url}/v1/cluster/policy", auth=ADMIN, json={"lockout_threshold": 3}
    )
    assert policy.status_code == 200, policy.text
    transport = httpx.HTTPTransport(local_address=LEGIT_ADDRESS)
    with httpx.Client(transport=transport, timeout=30) as client:
        poll_latencies(client, agent.http_url, 20)  # warm: connection, auth cache
        unloaded = statistics.median(poll_latencies(client, agent.http_url, 100))
        flood = subprocess.Popen(
            [sys.executable, str(FLOOD), agent.http_url, ADMIN[0], str(ATTACKERS), "90"],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert flood.stdout is not None
            assert flood.stdout.readline().strip() == "started"
            loaded_latencies = poll_latencies(client, agent.http_url, 100, while_running=flood)
            out, _ = flood.communicate(timeout=60)
        finally:
            if flood.poll() is None:
                flood.kill()
        loaded = statistics.median(loaded_latencies)
        report = json.loads(out.strip().splitlines()[-1])
        print(
            f"\nlegitimate p50: unloaded {unloaded * 1000:.2f} ms, under a {ATTACKERS}-client "
            f"flood {loaded * 1000:.2f} ms ({len(loaded_latencies)} polls); attackers saw {report}"
        )
        assert loaded <= 2 * unloaded, (unloaded, loaded)
        statuses = report["statuses"]
        assert set(statuses) <= {"401", "429"}, statuses  # never a 500, never a success
        # Every attacking address got locked (the lockout counts in the store)...
        assert report["codes"].get("sign_in_locked", 0) == 3 * ATTACKERS
        # ...and only those addresses: the admin still signs in from its own.
        assert client.get(f"{agent.http_url}/v1/cluster", auth=ADMIN).status_code == 200
        failures = client.get(f"{agent.http_url}/v1/users/1/sign_in_failures", auth=ADMIN).json()
        locked = {pair["client"] for pair in failures if pair["locked"]}
        assert locked == {f"127.0.200.{n}" for n in range(1, ATTACKERS + 1)}
    # The admin unlocks one attacker address with the CLI.
    unlock = subprocess.run(
        [
            sys.executable,
            "-m",
            "cnm",
            "user",
            "unlock",
            "1",
            "--client",
            "127.0.200.1",
            "--node",
            agent.http_url,
            "-u",
            ADMIN[0],
            "--output",
            "json",
        ],
        env={**os.environ, "CNM_PASSWORD": ADMIN[1]},
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert unlock.returncode == 0, unlock.stderr
    assert json.loads(unlock.stdout) == {"unlocked": ["127.0.200.1"]}
    again = agent.get("/v1/users/1/sign_in_failures", auth=ADMIN).json()
    assert "127.0.200.1" not in {pair["client"] for pair in again}
