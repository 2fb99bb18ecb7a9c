"""Each join error code on the real condition that it names, against one shared cluster."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harness.agents import Agent, AgentFactory
from harness.bodies import ADMIN, create_body, join_body


@pytest.fixture(scope="module")
def member(module_agents: AgentFactory) -> Agent:
    """A one-node rack-aware cluster."""
    agent = module_agents.start("member")
    body = create_body(
        "errors.example.com",
        policy={"rack_aware": True},
        node={"identity": {"rack_id": "rack-a"}},
    )
    assert agent.post("/v1/bootstrap/create_cluster", body).status_code == 200
    assert agent.wait_state("completed", "error", auth=ADMIN)["bootstrap_status"]["state"] == (
        "completed"
    )
    return agent


def join_and_fail(joiner: Agent, body: dict[str, Any]) -> dict[str, Any]:
    assert joiner.post("/v1/bootstrap/join_cluster", body).status_code == 200
    status = joiner.wait_state("completed", "error", timeout=30)["bootstrap_status"]
    assert status["state"] == "error", status
    return status


def body_for(member: Agent, **changes: Any) -> dict[str, Any]:
    return join_body([member.addr], **{"node": {"identity": {"rack_id": "rack-b"}}, **changes})


def test_unreachable_addresses_list_each_address_and_why(agents: AgentFactory) -> None:
    joiner = agents.start()
    body = body_for(
        joiner,
        cluster={"nodes": ["127.0.0.254:1", "no-such-host.invalid"]},
        max_retries=2,
        retry_time=0,
    )
    status = join_and_fail(joiner, body)
    assert status["error_code"] == "connect_error"
    message = status["error_details"]["message"]
    assert "127.0.0.254:1: connection refused" in message
    assert "no-such-host.invalid:9443: the name does not resolve" in message
    assert "after 2 attempt(s)" in message


def test_wrong_password_is_access_denied_at_once(member: Agent, agents: AgentFactory) -> None:
    joiner = agents.start()
    body = body_for(member, credentials={"username": ADMIN[0], "password": "wrong-password"})
    status = join_and_fail(joiner, body)
    assert status["error_code"] == "access_denied"
    assert ADMIN[0] in status["error_details"]["message"]


def test_wrong_fingerprint_refuses_before_sending_credentials(
    member: Agent, agents: AgentFactory
) -> None:
    joiner = agents.start()
    body = body_for(member, cluster={"nodes": [member.addr], "ca_fingerprint": "ab" * 32})
    status = join_and_fail(joiner, body)
    assert status["error_code"] == "connect_error"
    assert "fingerprint mismatch" in status["error_details"]["message"]
    real = member.get("/v1/cluster", auth=ADMIN).json()["ca_fingerprint"]
    assert status["error_details"]["ca_fingerprint"] == real


def test_rack_aware_cluster_requires_a_rack_id(member: Agent, agents: AgentFactory) -> None:
    joiner = agents.start()
    status = join_and_fail(joiner, body_for(member, node={"identity": {}}))
    assert status["error_code"] == "rack_id_required"
    assert status["error_details"]["current_rack_ids"] == ["rack-a"]


def test_malformed_rack_id_is_a_config_error(member: Agent, agents: AgentFactory) -> None:
    joiner = agents.start()
    status = join_and_fail(joiner, body_for(member, node={"identity": {"rack_id": "-bad rack"}}))
    assert status["error_code"] == "config_error"
    assert "node.identity.rack_id" in status["error_details"]["message"]


def test_different_socket_dir_is_a_socket_directory_mismatch(
    member: Agent, agents: AgentFactory
) -> None:
    joiner = agents.start(extra_args=["--socket-dir", "/var/run/elsewhere"])
    status = join_and_fail(joiner, body_for(member))
    assert status["error_code"] == "socket_directory_mismatch"
    assert status["error_details"]["mismatches"] == [
        {
            "field": "socket_dir",
            "cluster_value": "/var/opt/redislabs/run",
            "node_value": "/var/run/elsewhere",
        }
    ]


def test_different_os_user_is_a_node_config_mismatch(member: Agent, agents: AgentFactory) -> None:
    joiner = agents.start(extra_args=["--os-user", "someone"])
    status = join_and_fail(joiner, body_for(member))
    assert status["error_code"] == "node_config_mismatch"
    assert status["error_details"]["mismatches"][0]["field"] == "os_user"


LIBFAKETIME = next(Path("/usr/lib").glob("*/faketime/libfaketime.so.1"), None)


@pytest.mark.skipif(LIBFAKETIME is None, reason="libfaketime missing (Debian: faketime)")
def test_clock_off_by_ten_minutes_is_time_not_sync(member: Agent, agents: AgentFactory) -> None:
    # Preloaded into the agent itself (the `faketime` wrapper would fork it as a child that a
    # SIGTERM to the wrapper does not reach).
    joiner = agents.start(env={"LD_PRELOAD": str(LIBFAKETIME), "FAKETIME": "+600s"})
    status = join_and_fail(joiner, body_for(member))
    assert status["error_code"] == "time_not_sync"
    details = status["error_details"]
    assert 590_000 < details["offset_ms"] < 610_000, details
    assert details["max_offset_ms"] == 1000
    assert details["uncertainty_ms"] >= 0
    assert details["member"] == member.addr


def test_required_version_newer_than_the_cluster(member: Agent, agents: AgentFactory) -> None:
    joiner = agents.start()
    status = join_and_fail(joiner, body_for(member, required_version="99.0.0"))
    assert status["error_code"] == "config_error"
    assert "required_version" in status["error_details"]["message"]


def test_a_good_join_after_the_errors_and_409_on_a_second_join(
    member: Agent, agents: AgentFactory
) -> None:
    joiner = agents.start()
    body = body_for(member)
    assert joiner.post("/v1/bootstrap/join_cluster", body).status_code == 200
    status = joiner.wait_state("completed", "error", auth=ADMIN, timeout=30)
    assert status["bootstrap_status"]["state"] == "completed", status
    # The joiner trusted the CA on first use and shows what it trusted.
    real = member.get("/v1/cluster", auth=ADMIN).json()["ca_fingerprint"]
    assert status["bootstrap_status"]["ca_fingerprint"] == real
    again = joiner.post("/v1/bootstrap/join_cluster", body, auth=ADMIN)
    assert again.status_code == 409
    assert again.json()["error_code"] == "already_bootstrapped"
