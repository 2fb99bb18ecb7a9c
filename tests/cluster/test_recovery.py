"""Full restarts on real agents: every agent killed with SIGKILL and started again re-forms the
cluster by itself; a minority of voters back answers 503 naming the missing voters."""

from __future__ import annotations

import base64
import json
import os
import shutil
import stat
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from cnm.cluster.backup import list_snapshots
from cnm.node.data_dir import default_ccs_path
from harness import bodies
from harness.agents import Agent, AgentFactory, basic
from harness.bodies import ADMIN, create_body
from harness.polling import eventually

EXTRA_USER = ("viewer@example.com", "viewer-pass-1")


def three_node_cluster(agents: AgentFactory) -> tuple[Agent, Agent, Agent]:
    first, second, third = agents.start(), agents.start(), agents.start()
    assert (
        first.post("/v1/bootstrap/create_cluster", create_body("restart.example.com")).status_code
        == 200
    )
    assert (
        first.wait_state("completed", "error", auth=ADMIN)["bootstrap_status"]["state"]
        == "completed"
    )
    for joiner in (second, third):
        body = bodies.join_body([first.addr])
        assert joiner.post("/v1/bootstrap/join_cluster", body).status_code == 200
        status = joiner.wait_state("completed", "error", auth=ADMIN, timeout=60)
        assert status["bootstrap_status"]["state"] == "completed", status

    def three_voters() -> bool:
        nodes = first.get("/v1/nodes", auth=ADMIN).json()
        return [n.get("store_role") for n in nodes] == ["voter"] * 3

    eventually(three_voters, timeout=60, message="three voters")
    return first, second, third


def add_user_and_settings(agent: Agent) -> None:
    user = {
        "email": EXTRA_USER[0],
        "password": EXTRA_USER[1],
        "role": "cluster_viewer",
        "name": "viewer",
    }
    assert agent.post("/v1/users", user, headers=bodies_auth()).status_code == 200
    policy = agent.get("/v1/cluster/policy", auth=ADMIN).json()
    response = agent_put(agent, "/v1/cluster/policy", {"default_shards_placement": "sparse"})
    assert response.status_code == 200, (response.text, policy)


def bodies_auth() -> dict[str, str]:
    return basic(*ADMIN)


def agent_put(agent: Agent, path: str, body: Any) -> Any:
    return httpx.put(agent.http_url + path, json=body, headers=bodies_auth(), timeout=5.0)


def snapshot_then_lose_every_node(trio: tuple[Agent, Agent, Agent], tmp_path: Path) -> Path:
    """A snapshot taken now (POST /v1/cluster/backup on the first node) and kept outside every
    data dir; then each agent killed with SIGKILL and its data dir deleted: the kept file is all
    that is left of the cluster. Returns its path."""
    first = trio[0]
    taken = httpx.post(first.http_url + "/v1/cluster/backup", headers=basic(*ADMIN), timeout=10)
    assert taken.status_code == 200, taken.text
    kept = tmp_path / "kept-snapshot.json"
    shutil.copyfile(taken.json()["file"], kept)
    for agent in trio:
        agent.kill9()
        shutil.rmtree(agent.data_dir)
    return kept


def recover(agent: Agent, snapshot: Path) -> None:
    """recover_cluster from `snapshot` on `agent`, to `completed`."""
    body = {"action": "recover_cluster", "recovery_filename": str(snapshot)}
    assert agent.post("/v1/bootstrap/recover_cluster", body).status_code == 200
    status = agent.wait_state("completed", "error", auth=ADMIN, timeout=60)
    assert status["bootstrap_status"]["state"] == "completed", status


def test_all_agents_killed_and_restarted_reform_the_cluster(agents: AgentFactory) -> None:
    trio = three_node_cluster(agents)
    add_user_and_settings(trio[0])
    for agent in trio:
        agent.kill9()
    for agent in trio:
        agent.start(wait=False)
    last_started = time.monotonic()

    def all_active() -> bool:
        for agent in trio:
            nodes = agent.get("/v1/nodes", auth=ADMIN).json()
            if [n["status"] for n in nodes] != ["active"] * 3:
                return False
        return True

    eventually(all_active, timeout=60, message="all nodes active after kill -9 of every agent")
    print(f"all active {time.monotonic() - last_started:.1f} s after the last agent started")
    for agent in trio:
        assert agent.status(auth=ADMIN)["bootstrap_status"]["state"] == "completed"
        assert agent.get("/v1/cluster", auth=EXTRA_USER).status_code == 200
        assert (
            agent.get("/v1/cluster/policy", auth=ADMIN).json()["default_shards_placement"]
            == "sparse"
        )
        assert agent.get("/v1/license", auth=ADMIN).status_code == 200


def test_recover_on_a_fresh_agent_from_a_snapshot_after_every_data_dir_is_lost(
    agents: AgentFactory, tmp_path: Path
) -> None:
    trio = three_node_cluster(agents)
    first = trio[0]
    # Every voter took a snapshot of its own when the voters changed, and the cluster says when.
    for agent in trio:
        eventually(
            lambda agent=agent: list_snapshots(default_ccs_path(agent.persistent_path)),
            timeout=30,
            message=f"a snapshot on {agent.addr} after the voters changed",
        )
    assert first.get("/v1/cluster", auth=ADMIN).json()["last_backup_time"]
    add_user_and_settings(first)
    before = {
        path: first.get(path, auth=ADMIN).json()
        for path in ("/v1/cluster", "/v1/license", "/v1/users")
    }
    kept = snapshot_then_lose_every_node(trio, tmp_path)

    fresh = agents.start()
    validate = {"action": "recover_cluster", "recovery_filename": str(kept)}
    assert fresh.post("/v1/bootstrap/validate/recover_cluster", validate).status_code == 200
    recover(fresh, kept)

    cluster = fresh.get("/v1/cluster", auth=ADMIN).json()
    for field in ("name", "uuid", "ca_fingerprint", "created_time"):
        assert cluster[field] == before["/v1/cluster"][field]
    assert fresh.get("/v1/license", auth=ADMIN).json() == before["/v1/license"]
    assert fresh.get("/v1/users", auth=ADMIN).json() == before["/v1/users"]
    assert fresh.get("/v1/cluster", auth=EXTRA_USER).status_code == 200
    policy = fresh.get("/v1/cluster/policy", auth=ADMIN).json()
    assert policy["default_shards_placement"] == "sparse"
    nodes = {n["uid"]: n for n in fresh.get("/v1/nodes", auth=ADMIN).json()}
    assert nodes[1]["addr"] == fresh.addr
    assert (nodes[1]["status"], nodes[1]["store_role"]) == ("active", "voter")
    for uid in (2, 3):
        assert (nodes[uid]["status"], nodes[uid]["store_role"]) == ("down", "client")
    # The recovered node serves the cluster CA of the snapshot: clients keep their ca.pem.
    assert fresh.ca_file.read_bytes() == kept_ca(kept)

    # And it survives its own restart, as any node.
    fresh.kill9()
    fresh.start(wait=False)
    fresh.wait_state("completed", auth=ADMIN, timeout=60)
    eventually(
        lambda: fresh.get("/v1/nodes/1", auth=ADMIN).json()["status"] == "active",
        timeout=60,
        message="the recovered node active after its restart",
    )


def kept_ca(snapshot_file: Path) -> bytes:
    document = json.loads(snapshot_file.read_bytes())
    secret = json.loads(base64.b64decode(document["keys"]["/cnm/secrets/ca"]))
    return str(secret["cert_pem"]).encode()


def test_two_fresh_agents_replace_the_lost_nodes_of_a_recovered_cluster(
    agents: AgentFactory, tmp_path: Path
) -> None:
    """The whole story: every machine's data lost but one snapshot; a fresh agent recovers the
    cluster from it, two more fresh agents take the lost nodes' places (the repair flow), and
    the cluster is whole again: three active voters, its users and settings."""
    trio = three_node_cluster(agents)
    first = trio[0]
    add_user_and_settings(first)
    kept = snapshot_then_lose_every_node(trio, tmp_path)

    recovered = agents.start()
    recover(recovered, kept)

    # A plain join is told which nodes to replace; joins naming them take their places.
    plain = agents.start()
    assert (
        plain.post("/v1/bootstrap/join_cluster", bodies.join_body([recovered.addr])).status_code
        == 200
    )
    refused = plain.wait_state("completed", "error", auth=ADMIN, timeout=60)["bootstrap_status"]
    assert refused["error_code"] == "repair_required", refused
    assert {n["uid"] for n in refused["error_details"]["failed_nodes"]} == {2, 3}
    replacements = {2: plain, 3: agents.start()}
    for uid, agent in replacements.items():
        join = bodies.join_body([recovered.addr], node={"identity": {"uid": uid}})
        assert agent.post("/v1/bootstrap/join_cluster", join).status_code == 200
        done = agent.wait_state("completed", "error", auth=ADMIN, timeout=90)["bootstrap_status"]
        assert done["state"] == "completed", done

    def whole() -> bool:
        nodes = recovered.get("/v1/nodes", auth=ADMIN).json()
        return [(n["uid"], n["status"], n["store_role"]) for n in nodes] == [
            (1, "active", "voter"),
            (2, "active", "voter"),
            (3, "active", "voter"),
        ]

    eventually(whole, timeout=90, message="three active voters after the replacements")
    nodes = {n["uid"]: n["addr"] for n in recovered.get("/v1/nodes", auth=ADMIN).json()}
    assert nodes == {1: recovered.addr, 2: replacements[2].addr, 3: replacements[3].addr}
    check = recovered.get("/v1/cluster/check", auth=ADMIN).json()
    assert check["cluster_test_result"] is True and not check["degraded"], check
    for agent in replacements.values():
        # Users and settings of the lost cluster, served by the machines that replaced it.
        assert agent.get("/v1/cluster", auth=EXTRA_USER).status_code == 200
        policy = agent.get("/v1/cluster/policy", auth=ADMIN).json()
        assert policy["default_shards_placement"] == "sparse"


def test_a_minority_of_voters_back_says_what_is_missing_and_heals_when_the_rest_return(
    agents: AgentFactory,
) -> None:
    trio = three_node_cluster(agents)
    first = trio[0]
    add_user_and_settings(first)
    users_file = first.data_dir / "users.json"
    eventually(
        lambda: EXTRA_USER[0] in users_file.read_text(), timeout=30, message="local users copy"
    )
    assert stat.S_IMODE(users_file.stat().st_mode) == 0o600
    assert ADMIN[1] not in users_file.read_text() and EXTRA_USER[1] not in users_file.read_text()
    for agent in trio:
        agent.kill9()
    first.start()

    def answers_503() -> dict[str, Any] | None:
        response = first.get("/v1/nodes", auth=ADMIN)
        body: dict[str, Any] = response.json()
        return body if response.status_code == 503 and "voters" in body else None

    body = eventually(answers_503, timeout=30, message="503 naming the missing voters")
    assert body["error_code"] == "store_unavailable"
    assert "2 of 3 voters are missing" in body["description"]
    assert "recover_cluster" in body["description"]
    assert (body["voters"], body["quorum"], len(body["missing_voters"])) == (3, 2, 2)
    # The node's own status stays readable with the last users it knew, and only with them.
    for user in (ADMIN, EXTRA_USER):
        status = first.status(auth=user)
        assert status["bootstrap_status"]["state"] == "completed"
        assert status["local_node_info"]["uid"] == "1"
    assert first.get("/v1/bootstrap", auth=(ADMIN[0], "wrong-password")).status_code == 401
    assert first.get("/v1/bootstrap").status_code == 401

    for agent in trio[1:]:
        agent.start(wait=False)

    def all_active() -> bool:
        nodes = first.get("/v1/nodes", auth=ADMIN).json()
        return [n["status"] for n in nodes] == ["active"] * 3

    eventually(all_active, timeout=60, message="healed once the other voters came back")


def test_a_data_dir_that_cannot_be_written_is_an_error_state_not_a_500(
    agents: AgentFactory,
) -> None:
    if os.geteuid() != 0 or shutil.which("chattr") is None:
        pytest.skip("needs root and chattr to make the data dir immutable")
    first, second = agents.start(), agents.start()
    assert (
        first.post("/v1/bootstrap/create_cluster", create_body("rw.example.com")).status_code == 200
    )
    first.wait_state("completed", auth=ADMIN)
    subprocess.run(["chattr", "+i", str(second.data_dir)], check=True)
    try:
        response = second.post("/v1/bootstrap/join_cluster", bodies.join_body([first.addr]))
        assert response.status_code == 200, response.text
        status = second.wait_state("error", "completed")["bootstrap_status"]
        assert status["state"] == "error" and status["error_code"] == "path_error", status
        assert str(second.data_dir) in status["error_details"]["message"]
        assert "cannot be written" in status["error_details"]["message"]
    finally:
        subprocess.run(["chattr", "-i", str(second.data_dir)], check=True)
    assert "Traceback" not in second.log()
    # Made writable again, the same request succeeds.
    assert (
        second.post("/v1/bootstrap/join_cluster", bodies.join_body([first.addr])).status_code == 200
    )
    assert (
        second.wait_state("completed", "error", auth=ADMIN, timeout=60)["bootstrap_status"]["state"]
        == "completed"
    )
