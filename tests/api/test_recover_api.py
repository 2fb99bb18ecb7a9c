"""Backups and recover_cluster on the in-memory store: the snapshot file, its checks, the
recovered cluster's identity and seats; foreign store data refused, and clobbered on request."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import httpx

from cnm import SOFTWARE_VERSION
from cnm.cluster import model
from cnm.cluster.backup import list_snapshots
from cnm.cluster.records import NodeRecord, StoreRole
from cnm.node.data_dir import default_ccs_path, etcd_member_dir
from cnm.node.local_state import marker_path
from harness.agents import basic
from harness.api_node import Node, bootstrapped_node, memory_backend, node_config, running_node
from harness.bodies import ADMIN, create_body, join_body

AUTH = basic(*ADMIN)
RECOVER = "/v1/bootstrap/recover_cluster"
VALIDATE_RECOVER = "/v1/bootstrap/validate/recover_cluster"
VIEWER = {"email": "viewer@example.com", "password": "viewer-pass-1", "role": "cluster_viewer"}


def fresh_config(tmp_path: Path, name: str) -> Any:
    (tmp_path / name).mkdir()
    return node_config(tmp_path / name)


def recover_body(filename: str, **extra: Any) -> dict[str, Any]:
    return {"action": "recover_cluster", "recovery_filename": filename, **extra}


def failure_406(response: httpx.Response, code: str) -> dict[str, Any]:
    assert response.status_code == 406, response.text
    body: dict[str, Any] = response.json()
    assert body["error_code"] == code, body
    return body


async def backup(node: Node) -> dict[str, Any]:
    response = await node.client.post("/v1/cluster/backup", headers=AUTH)
    assert response.status_code == 200, response.text
    document: dict[str, Any] = response.json()
    return document


async def source_snapshot(tmp_path: Path) -> tuple[str, dict[str, Any]]:
    """A cluster with an extra user, a policy change and a second voter (node 2, a record
    only), backed up; (the snapshot file, GET /v1/cluster of the source)."""
    async with bootstrapped_node(fresh_config(tmp_path, "source"), name="rec.example.com") as node:
        assert (await node.client.post("/v1/users", json=VIEWER, headers=AUTH)).status_code == 200
        put = await node.client.put(
            "/v1/cluster/policy", json={"default_shards_placement": "sparse"}, headers=AUTH
        )
        assert put.status_code == 200, put.text
        runtime = node.manager.runtime
        assert runtime is not None
        other = NodeRecord(
            uid=2,
            addr="127.0.0.9",
            store_role=StoreRole.VOTER,
            store_client_url="https://127.0.0.9:2379",
            store_peer_url="https://127.0.0.9:2380",
        )
        await runtime.store.put(model.node_key(2), other.encode())
        taken = await backup(node)
        cluster = (await node.client.get("/v1/cluster", headers=AUTH)).json()
        assert cluster["last_backup_time"] == taken["time"]
        return str(taken["file"]), cluster


async def test_a_backup_is_a_private_file_and_only_the_last_n_are_kept(tmp_path: Path) -> None:
    async with bootstrapped_node(node_config(tmp_path)) as node:
        cluster = (await node.client.get("/v1/cluster", headers=AUTH)).json()
        assert cluster["last_backup_time"] is None
        put = await node.client.put("/v1/cluster/policy", json={"backup_keep": 2}, headers=AUTH)
        assert put.status_code == 200 and put.json()["backup_keep"] == 2
        files = [Path((await backup(node))["file"]) for _ in range(3)]
        runtime = node.manager.runtime
        assert runtime is not None
        kept = list_snapshots(runtime.local.ccs_persistent_path)
        assert files[0] not in kept and files[-1] in kept and len(kept) == 2
        assert stat.S_IMODE(files[-1].stat().st_mode) == 0o600
        document = json.loads(files[-1].read_bytes())
        assert document["software_version"] == SOFTWARE_VERSION
        assert document["cluster_name"] == "c1.example.com"
        assert ADMIN[1] not in files[-1].read_text()  # verifiers only, never the password
        bad = await node.client.put("/v1/cluster/policy", json={"backup_interval": 1}, headers=AUTH)
        assert bad.status_code == 400 and "backup_interval" in bad.text


async def test_recover_brings_the_cluster_back_with_its_identity(tmp_path: Path) -> None:
    filename, source = await source_snapshot(tmp_path)
    async with running_node(fresh_config(tmp_path, "fresh"), backend=memory_backend()) as node:
        assert (
            await node.client.post(VALIDATE_RECOVER, json=recover_body(filename))
        ).status_code == 200
        response = await node.client.post(RECOVER, json=recover_body(filename))
        assert response.status_code == 200, response.text
        status = await node.wait_state("completed", "error", headers=AUTH)
        assert status["state"] == "completed", status
        on_disk = node.file_status()
        assert on_disk is not None and on_disk["action"] == "recover_cluster"
        cluster = (await node.client.get("/v1/cluster", headers=AUTH)).json()
        for field in ("name", "uuid", "ca_fingerprint", "created_time"):
            assert cluster[field] == source[field]
        policy = (await node.client.get("/v1/cluster/policy", headers=AUTH)).json()
        assert policy["default_shards_placement"] == "sparse"
        viewer = basic(VIEWER["email"], VIEWER["password"])
        assert (await node.client.get("/v1/cluster", headers=viewer)).status_code == 200
        assert (await node.client.get("/v1/license", headers=AUTH)).status_code == 200
        nodes = {n["uid"]: n for n in (await node.client.get("/v1/nodes", headers=AUTH)).json()}
        assert nodes[1]["store_role"] == "voter" and nodes[1]["status"] == "active"
        assert nodes[1]["addr"] == node.config.addr
        # The other voter lost its seat and shows down: a replacement joins as uid 2.
        assert nodes[2]["store_role"] == "client" and nodes[2]["status"] == "down"
        assert nodes[2]["store_client_url"] == ""


async def test_recover_takes_the_uid_asked_for(tmp_path: Path) -> None:
    filename, _ = await source_snapshot(tmp_path)
    async with running_node(fresh_config(tmp_path, "fresh"), backend=memory_backend()) as node:
        body = recover_body(filename, node={"identity": {"uid": 2}})
        assert (await node.client.post(RECOVER, json=body)).status_code == 200
        assert (await node.wait_state("completed", "error", headers=AUTH))["state"] == "completed"
        nodes = {n["uid"]: n for n in (await node.client.get("/v1/nodes", headers=AUTH)).json()}
        assert nodes[2]["addr"] == node.config.addr and nodes[2]["store_role"] == "voter"
        assert nodes[1]["status"] == "down" and nodes[1]["store_role"] == "client"
        assert node.manager.runtime is not None and node.manager.runtime.local.node_uid == 2


async def test_recover_refuses_a_missing_a_foreign_and_another_versions_file(
    tmp_path: Path,
) -> None:
    filename, _ = await source_snapshot(tmp_path)
    document = json.loads(Path(filename).read_bytes())  # noqa: ASYNC240 - a test's small file
    other_version = tmp_path / "other-version.json"
    other_version.write_text(json.dumps({**document, "software_version": "7.20.0-cnm.0.0.9"}))
    not_json = tmp_path / "dump.rdb"
    not_json.write_bytes(b"REDIS0011\xfa\x09redis-ver")
    not_ours = tmp_path / "other.json"
    not_ours.write_text(json.dumps({"format": "something-else", "keys": {}}))
    async with running_node(fresh_config(tmp_path, "fresh"), backend=memory_backend()) as node:

        async def validate(name: str, code: str) -> dict[str, Any]:
            response = await node.client.post(VALIDATE_RECOVER, json=recover_body(name))
            return failure_406(response, code)["error_details"]

        missing = await validate(str(tmp_path / "nowhere.json"), "path_error")
        assert missing["path"] == str(tmp_path / "nowhere.json")
        assert (await validate(str(tmp_path), "path_error"))["field"] == "recovery_filename"
        assert (
            "not a snapshot of a cnm cluster"
            in (await validate(str(not_json), "config_error"))["message"]
        )
        assert (await validate(str(not_ours), "config_error"))["reason"] == "not_a_snapshot"
        versions = await validate(str(other_version), "config_error")
        assert versions["snapshot_version"] == "7.20.0-cnm.0.0.9"
        assert versions["node_version"] == SOFTWARE_VERSION
        assert "7.20.0-cnm.0.0.9" in versions["message"] and SOFTWARE_VERSION in versions["message"]
        # The POST ends in the same error, with nothing left behind.
        assert (
            await node.client.post(RECOVER, json=recover_body(str(other_version)))
        ).status_code == 200
        status = await node.wait_state("error")
        assert status["error_code"] == "config_error"
        assert node.manager.runtime is None


def plant_foreign_data(config_persistent: Path) -> Path:
    ccs = default_ccs_path(config_persistent)
    member = etcd_member_dir(ccs) / "member"
    member.mkdir(parents=True)
    (member / "wal").write_bytes(b"not ours")
    marker_path(ccs).write_text(json.dumps({"name": "old.example.com", "uuid": "u-123"}))
    return etcd_member_dir(ccs)


async def test_foreign_store_data_is_refused_and_wiped_only_with_clobber(tmp_path: Path) -> None:
    config = node_config(tmp_path)
    planted = plant_foreign_data(config.persistent_path)
    async with running_node(config, backend=memory_backend()) as node:
        for action, body in (
            ("create_cluster", create_body()),
            ("join_cluster", join_body(["127.0.0.9"])),
        ):
            response = await node.client.post(f"/v1/bootstrap/validate/{action}", json=body)
            details = failure_406(response, "config_error")["error_details"]
            assert details["reason"] == "foreign_cluster_data"
            assert details["cluster_name"] == "old.example.com"
            assert details["cluster_uuid"] == "u-123"
        assert (
            await node.client.post("/v1/bootstrap/create_cluster", json=create_body())
        ).status_code == 200
        status = await node.wait_state("error")
        assert status["error_details"]["reason"] == "foreign_cluster_data"
        assert (planted / "member" / "wal").exists()  # never wiped without clobber

        clobber = create_body(cluster={"name": "c1.example.com", "clobber": True})
        assert (
            await node.client.post("/v1/bootstrap/validate/create_cluster", json=clobber)
        ).status_code == 200
        assert (planted / "member" / "wal").exists()  # validate changes nothing
        assert (
            await node.client.post("/v1/bootstrap/create_cluster", json=clobber)
        ).status_code == 200
        assert (await node.wait_state("completed", "error", headers=AUTH))["state"] == "completed"
        assert not (planted / "member" / "wal").exists()
        marker = json.loads(marker_path(default_ccs_path(config.persistent_path)).read_bytes())
        assert marker["name"] == "c1.example.com"
