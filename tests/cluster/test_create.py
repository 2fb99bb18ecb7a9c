"""create_cluster on real agents with real etcd: the whole flow, auth, restart, crash."""

from __future__ import annotations

import signal
import ssl
from pathlib import Path

import httpx

from harness.agents import AgentFactory, basic
from harness.bodies import ADMIN, create_body
from harness.polling import eventually


def test_create_cluster_completes_and_requires_auth_after(agents: AgentFactory) -> None:
    agent = agents.start()
    before = agent.get("/v1/bootstrap", headers=basic("whoever", "whatever"))
    assert before.status_code == 200
    assert before.json()["bootstrap_status"] == {"state": "idle"}

    response = agent.post("/v1/bootstrap/create_cluster", create_body())
    assert response.status_code == 200
    assert response.content == b""

    status = agent.wait_state("completed", "error", auth=ADMIN)
    assert status["bootstrap_status"]["state"] == "completed", status
    assert status["local_node_info"]["uid"] == "1"
    assert status["bootstrap_status"]["start_time"].endswith("Z")
    assert status["bootstrap_status"]["end_time"].endswith("Z")

    anonymous = agent.get("/v1/bootstrap")
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"] == 'Basic realm="cnm"'
    assert anonymous.json()["error_code"] == "unauthorized"
    wrong = agent.get("/v1/bootstrap", auth=(ADMIN[0], "wrong-password"))
    assert wrong.status_code == 401

    cluster = agent.get("/v1/cluster", auth=ADMIN)
    assert cluster.status_code == 200
    assert b'"name":"c1.example.com"' in cluster.content


def test_https_switches_to_a_certificate_of_the_cluster_ca(agents: AgentFactory) -> None:
    agent = agents.start()
    # Before bootstrap: the self-signed certificate, not verifiable against any CA.
    try:
        httpx.get(agent.https_url + "/v1/bootstrap", timeout=5)
        raise AssertionError("the self-signed certificate must not verify")
    except httpx.ConnectError:
        pass
    assert httpx.get(agent.https_url + "/v1/bootstrap", verify=False).status_code == 200
    agent.post("/v1/bootstrap/create_cluster", create_body())
    agent.wait_state("completed", auth=ADMIN)

    def verified() -> bool:
        response = httpx.get(
            agent.https_url + "/v1/bootstrap",
            verify=ssl.create_default_context(cafile=str(agent.ca_file)),
            headers=basic(*ADMIN),
            timeout=5,
        )
        return response.status_code == 200

    eventually(verified, message="HTTPS verified by the cluster CA")


def test_second_post_is_409(agents: AgentFactory) -> None:
    agent = agents.start()
    assert agent.post("/v1/bootstrap/create_cluster", create_body()).status_code == 200
    again = agent.post("/v1/bootstrap/create_cluster", create_body())
    assert again.status_code == 409
    agent.wait_state("completed", auth=ADMIN)
    done = httpx.post(
        agent.http_url + "/v1/bootstrap/create_cluster", json=create_body(), headers=basic(*ADMIN)
    )
    assert done.status_code == 409
    assert done.json()["error_code"] == "already_bootstrapped"


def test_restart_after_completed_serves_the_cluster(agents: AgentFactory) -> None:
    agent = agents.start()
    agent.post("/v1/bootstrap/create_cluster", create_body())
    agent.wait_state("completed", auth=ADMIN)
    assert agent.stop() == 0
    assert agent.etcd_pids() == []
    agent.start(wait=False)
    # What this proves is that the node comes back to its cluster by itself; how fast is a
    # benchmark's business (bench/bench_restart.py), not a test's: on a loaded 2-core machine
    # Python's imports alone took 4-12 s.
    status = agent.wait_state("completed", auth=ADMIN, timeout=30.0)
    assert status["local_node_info"]["uid"] == "1"
    assert agent.get("/v1/bootstrap").status_code == 401


def test_a_restart_over_a_torn_status_file_resumes_the_cluster(agents: AgentFactory) -> None:
    agent = agents.start()
    agent.post("/v1/bootstrap/create_cluster", create_body())
    agent.wait_state("completed", auth=ADMIN)
    assert agent.stop() == 0
    status_file = agent.layout.status_file
    status_file.write_bytes(b"")  # what a machine crash may leave of a replaced file
    agent.start(wait=False)
    status = agent.wait_state("completed", auth=ADMIN, timeout=30.0)
    assert status["local_node_info"]["uid"] == "1"
    assert agent.get("/v1/cluster", auth=ADMIN).status_code == 200
    assert status_file.with_name(status_file.name + ".unreadable").exists()
    assert "is unreadable (JSONDecodeError" in agent.log()


def test_sigterm_stops_agent_and_etcd(agents: AgentFactory) -> None:
    agent = agents.start()
    agent.post("/v1/bootstrap/create_cluster", create_body())
    agent.wait_state("completed", auth=ADMIN)
    pids = agent.etcd_pids()
    assert pids
    # etcd runs one Go scheduler thread (store/etcd_process.py: idle cost).
    environment = Path(f"/proc/{pids[0]}/environ").read_bytes().split(b"\0")
    assert b"GOMAXPROCS=1" in environment
    agent.signal(signal.SIGTERM)
    assert agent.process is not None
    assert agent.process.wait(10) == 0
    assert agent.etcd_pids() == []


def test_kill9_of_agent_kills_its_etcd(agents: AgentFactory) -> None:
    agent = agents.start()
    agent.post("/v1/bootstrap/create_cluster", create_body())
    agent.wait_state("completed", auth=ADMIN)
    assert agent.etcd_pids()
    agent.kill9()
    eventually(lambda: agent.etcd_pids() == [], timeout=5, message="etcd gone")
