"""A node's runtime after bootstrap on the in-memory store: it follows the voters' endpoints and
comes back from its local state after a restart, as on etcd, in milliseconds."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from cnm.cluster import model
from cnm.cluster.records import NodeRecord, StoreRole
from cnm.config import NodeConfig
from cnm.node.data_dir import DataDir
from cnm.node.local_state import LocalState
from cnm.store.memory import MemoryStore
from harness.agents import basic
from harness.api_node import bootstrapped_node, memory_backend, node_config, running_node
from harness.bodies import ADMIN, create_body


async def test_a_new_voter_becomes_a_store_endpoint_saved_in_local_state(tmp_path: Path) -> None:
    config = node_config(tmp_path)
    async with bootstrapped_node(config) as node:
        runtime = node.manager.runtime
        assert runtime is not None and isinstance(runtime.store, MemoryStore)
        own = runtime.local.store_endpoints
        other = "https://127.0.0.9:2379"
        record = NodeRecord(
            uid=2, addr="127.0.0.9", store_role=StoreRole.VOTER, store_client_url=other
        )
        await runtime.store.put(model.node_key(2), record.encode())
        deadline = time.monotonic() + 5
        while runtime.store.endpoints != [*own, other]:
            assert time.monotonic() < deadline, runtime.store.endpoints
            await asyncio.sleep(0.01)
        saved = LocalState.load(config.data_dir)
        assert saved is not None and saved.store_endpoints == (*own, other)


async def _create_and_stop(config: NodeConfig, store: MemoryStore) -> None:
    """A node of `config` creates cluster c1.example.com on `store`, then stops."""
    async with running_node(config, backend=memory_backend(store)) as node:
        created = await node.client.post("/v1/bootstrap/create_cluster", json=create_body())
        assert created.status_code == 200, created.text
        await node.wait_state("completed", headers=basic(*ADMIN))


async def test_a_restarted_node_resumes_its_cluster_from_local_state(tmp_path: Path) -> None:
    config = node_config(tmp_path)
    store = MemoryStore()
    await _create_and_stop(config, store)
    # The same data directory and the same store, as an agent restarted on its host.
    async with running_node(config, backend=memory_backend(store)) as node:
        assert node.manager.runtime is None
        decision = await node.manager.restore()
        assert decision == "rejoining cluster c1.example.com as node 1"
        assert node.manager.runtime is not None and node.manager.runtime.member is not None
        assert node.manager.runtime.member.running
        cluster = await node.client.get("/v1/cluster", headers=basic(*ADMIN))
        assert cluster.status_code == 200 and cluster.json()["name"] == "c1.example.com"


async def test_a_torn_status_file_with_local_state_resumes_the_cluster(tmp_path: Path) -> None:
    config = node_config(tmp_path)
    store = MemoryStore()
    await _create_and_stop(config, store)
    status_file = DataDir(config.data_dir).status_file
    status_file.write_bytes(b"")  # what a rename that reached the disk before the data leaves
    async with running_node(config, backend=memory_backend(store)) as node:
        decision = await node.manager.restore()
        assert decision == "rejoining cluster c1.example.com as node 1"
        status = await node.bootstrap_status(headers=basic(*ADMIN))
        assert status["state"] == "completed", status
        cluster = await node.client.get("/v1/cluster", headers=basic(*ADMIN))
        assert cluster.status_code == 200 and cluster.json()["name"] == "c1.example.com"
    # Recorded again, durable; the unreadable one kept aside for a look.
    assert json.loads(status_file.read_bytes())["state"] == "completed"
    assert status_file.with_name(status_file.name + ".unreadable").read_bytes() == b""


async def test_a_torn_status_file_without_local_state_is_an_error_and_a_new_post_works(
    tmp_path: Path,
) -> None:
    config = node_config(tmp_path)
    status_file = DataDir(config.data_dir).status_file
    status_file.parent.mkdir(parents=True)
    status_file.write_bytes(b'{"state": "joining_cluster", "act')
    async with running_node(config, backend=memory_backend()) as node:
        decision = await node.manager.restore()
        assert decision == "unreadable status without local state marked as error"
        status = await node.bootstrap_status()
        assert status["state"] == "error" and status["error_code"] == "internal_error"
        message = status["error_details"]["message"]
        assert "outcome of the last bootstrap request is unknown" in message, message
        assert f"{status_file.name}.unreadable" in message, message
        created = await node.client.post("/v1/bootstrap/create_cluster", json=create_body())
        assert created.status_code == 200, created.text
        await node.wait_state("completed", headers=basic(*ADMIN))
