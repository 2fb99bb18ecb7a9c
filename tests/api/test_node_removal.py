"""POST /v1/nodes/{uid}/actions/remove on a node's ASGI app over the in-memory store: who may
remove, 404, the 409 rules (last node, store quorum), what is removed and in which order, and
the removed node itself going back to idle with its cluster data wiped.

The other nodes of these clusters are records (and store members) written straight into the
memory store: the removal's logic only reads the store, so it needs no other agent. Removal
between real agents is tests/cluster/test_node_removal.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx
import pytest

from cnm.cluster import model
from cnm.cluster.records import (
    LivenessRecord,
    NodeClockRecord,
    NodeKeyIndex,
    NodeRecord,
    RemovedNode,
    StoreRole,
)
from cnm.cluster.runtime import ClusterRuntime
from cnm.node.data_dir import DataDir, etcd_member_dir
from cnm.store.base import Store
from harness.agents import basic
from harness.api_node import Node, bootstrapped_node, node_config
from harness.bodies import ADMIN

REMOVE = "/v1/nodes/{}/actions/remove"


@pytest.fixture
async def node(tmp_path: Any) -> AsyncIterator[Node]:
    async with bootstrapped_node(node_config(tmp_path)) as made:
        yield made


def runtime_of(node: Node) -> ClusterRuntime:
    runtime = node.manager.runtime
    assert runtime is not None
    return runtime


async def eventually(check: Any, *, timeout: float = 10.0) -> Any:
    """Poll `check()` until it returns something true (deadline, no fixed wait)."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if asyncio.iscoroutine(found):
            found = await found
        if found:
            return found
        assert time.monotonic() < deadline, f"not true within {timeout} s"
        await asyncio.sleep(0.02)


def peer(uid: int) -> str:
    return f"https://127.0.1.{uid}:2380"


async def add_node(
    node: Node, uid: int, role: StoreRole = StoreRole.CLIENT, *, alive: bool = True
) -> None:
    """Node `uid` as an admitted node writes it: record, node-key index, liveness, clock."""
    store = runtime_of(node).store
    record = NodeRecord(uid=uid, addr=f"127.0.1.{uid}", store_role=role)
    if role is not StoreRole.CLIENT:
        record = record.changed(store_peer_url=peer(uid), store_client_url=peer(uid))
    await store.put(model.node_key(uid), record.encode())
    await store.put(model.node_key_index(f"key-of-{uid}"), NodeKeyIndex(uid=uid).encode())
    await store.put(model.node_clock_key(uid), NodeClockRecord(uid=uid, wall=time.time()).encode())
    if alive:
        await store.put(model.liveness_key(uid), LivenessRecord(uid=uid).encode())
    counter = model.NODE_UID_COUNTER
    await store.put(counter, f'{{"last":{uid}}}'.encode())
    snapshot = runtime_of(node).snapshot
    await eventually(lambda: snapshot.node(uid) is not None)


async def set_members(store: Store, voters: dict[int, str], learners: Sequence[int] = ()) -> None:
    """The store's members: one voter per entry of `voters` (uid -> peer URL), then learners."""
    old = [member.id for member in await store.member_list()]
    for url in voters.values():
        await store.member_add([url], learner=False)
    for uid in learners:
        await store.member_add([peer(uid)], learner=True)
    for member_id in old:
        await store.member_remove(member_id)


async def three_voters(node: Node, *, third_alive: bool = True) -> None:
    """Node 1 (this node) and nodes 2, 3 voters; node 4 a client."""
    own = runtime_of(node).snapshot.node(1)
    assert own is not None and own.store_peer_url
    await add_node(node, 2, StoreRole.VOTER)
    await add_node(node, 3, StoreRole.VOTER, alive=third_alive)
    await add_node(node, 4)
    await set_members(runtime_of(node).store, {1: own.store_peer_url, 2: peer(2), 3: peer(3)})


async def remove(node: Node, uid: object, auth: tuple[str, str] = ADMIN) -> httpx.Response:
    return await node.client.post(REMOVE.format(uid), headers=basic(*auth))


async def stored(node: Node, key: str) -> bool:
    return await runtime_of(node).store.get(key) is not None


async def test_only_an_admin_may_remove_a_node(node: Node) -> None:
    await add_node(node, 2)
    for role in ("cluster_member", "cluster_viewer", "user_manager", "db_member", "none"):
        email, password = f"{role}@example.com", f"{role}-password"
        body = {"email": email, "password": password, "role": role, "name": role}
        made = await node.client.post("/v1/users", json=body, headers=basic(*ADMIN))
        assert made.status_code == 200, made.text
        response = await remove(node, 2, (email, password))
        assert response.status_code == 403, (role, response.text)
        assert response.json()["error_code"] == "insufficient_permissions"
    wrong = await remove(node, 2, (ADMIN[0], "not-the-password"))
    assert wrong.status_code == 401
    assert await stored(node, model.node_key(2))


async def test_an_unknown_node_is_404_node_not_found(node: Node) -> None:
    for uid in ("99", "abc", "-1", "1" * 20):
        response = await remove(node, uid)
        assert response.status_code == 404, (uid, response.text)
        assert response.json()["error_code"] == "node_not_found"
        assert uid in response.json()["description"]


async def test_the_last_node_is_never_removed(node: Node) -> None:
    response = await remove(node, 1)
    assert response.status_code == 409, response.text
    assert response.json()["error_code"] == "last_node_removal_not_allowed"
    assert await stored(node, model.node_key(1))
    assert node.manager.runtime is not None


async def test_a_client_node_is_removed_with_all_its_records(node: Node) -> None:
    await add_node(node, 2)
    store = runtime_of(node).store
    members_before = await store.member_list()

    response = await remove(node, 2)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["action"] == "remove" and body["node_uid"] == 2
    assert body["addr"] == "127.0.1.2" and body["store_role"] == "client"
    assert body["store_member_removed"] is None
    assert body["records_removed"] == ["node", "node_key", "liveness", "clock"]
    assert "node 2" in body["description"]

    for key in (
        model.node_key(2),
        model.node_key_index("key-of-2"),
        model.liveness_key(2),
        model.node_clock_key(2),
    ):
        assert not await stored(node, key), key
    marker = await store.get(model.removed_node_key(2))
    assert marker is not None and RemovedNode.decode(marker.value).uid == 2
    assert await store.member_list() == members_before
    # Read-your-writes: this node's view no longer has it.
    listed = await node.client.get("/v1/nodes", headers=basic(*ADMIN))
    assert [n["uid"] for n in listed.json()] == [1]
    again = await remove(node, 2)
    assert again.status_code == 404 and again.json()["error_code"] == "node_not_found"


async def test_a_voter_leaves_the_store_before_its_records_go(node: Node) -> None:
    await three_voters(node)
    store = runtime_of(node).store
    response = await remove(node, 3)
    assert response.status_code == 200, response.text
    assert response.json()["store_member_removed"] == "voter"
    assert response.json()["store_role"] == "voter"
    urls = [url for m in await store.member_list() for url in m.peer_urls]
    assert peer(3) not in urls and len(urls) == 2
    assert not await stored(node, model.node_key(3))


async def test_a_learner_can_always_go(node: Node) -> None:
    own = runtime_of(node).snapshot.node(1)
    assert own is not None
    await add_node(node, 2, StoreRole.LEARNER, alive=False)
    await set_members(runtime_of(node).store, {1: own.store_peer_url}, learners=[2])
    response = await remove(node, 2)
    assert response.status_code == 200, response.text
    assert response.json()["store_member_removed"] == "learner"
    assert len(await runtime_of(node).store.member_list()) == 1


async def test_a_removal_that_would_cost_the_quorum_is_refused(node: Node) -> None:
    # Voters 1, 2, 3 with 3 down: removing 2 leaves 1 alive of 2, no majority.
    await three_voters(node, third_alive=False)
    store = runtime_of(node).store
    before = await store.member_list()
    response = await remove(node, 2)
    assert response.status_code == 409, response.text
    assert response.json()["error_code"] == "store_quorum_at_risk"
    assert "quorum" in response.json()["description"]
    assert await store.member_list() == before
    assert await stored(node, model.node_key(2))
    assert await stored(node, model.liveness_key(2))
    assert not await stored(node, model.removed_node_key(2))


async def test_the_last_voter_and_a_store_of_two_are_refused(node: Node) -> None:
    own = runtime_of(node).snapshot.node(1)
    assert own is not None
    await add_node(node, 2)
    store = runtime_of(node).store
    await set_members(store, {1: own.store_peer_url})
    last = await remove(node, 1)
    assert last.status_code == 409 and last.json()["error_code"] == "store_quorum_at_risk"
    assert "last voter" in last.json()["description"]

    await add_node(node, 3, StoreRole.VOTER)
    await store.member_add([peer(3)], learner=False)
    two = await remove(node, 3)
    assert two.status_code == 409 and two.json()["error_code"] == "store_quorum_at_risk"
    assert "two voters" in two.json()["description"]
    assert len(await store.member_list()) == 2


async def test_the_node_removed_through_its_own_api_goes_back_to_idle(node: Node) -> None:
    await three_voters(node)
    runtime = runtime_of(node)
    local = runtime.local
    data = DataDir(node.config.data_dir)
    member_dir = etcd_member_dir(local.ccs_persistent_path)
    member_dir.mkdir(parents=True, exist_ok=True)
    data.node_key_file.write_text("old-key")
    assert data.cluster_tls.ca_file.exists() and data.local_state_file.exists()

    response = await remove(node, 1)
    assert response.status_code == 200, response.text
    assert response.json()["node_uid"] == 1

    async def idle() -> bool:
        # With the credentials: required until the node leaves, ignored after.
        answer = await node.client.get("/v1/bootstrap", headers=basic(*ADMIN))
        return bool(answer.json()["bootstrap_status"]["state"] == "idle")

    await eventually(idle)
    assert node.manager.runtime is None
    assert not data.local_state_file.exists()
    assert not data.cluster_tls.directory.exists()
    assert not data.node_key_file.exists()
    assert not member_dir.exists()
    assert not data.leaving_file.exists()  # the leave finished: no marker left
    status = node.file_status()
    assert status is not None and status["state"] == "idle"
    # The pre-bootstrap surface: no credentials needed, cluster routes say no_cluster.
    nodes = await node.client.get("/v1/nodes")
    assert nodes.status_code == 503 and nodes.json()["error_code"] == "no_cluster"
    # The rest of the cluster no longer has it, nor its liveness (the lease was let go).
    assert not await stored_in(runtime.store, model.node_key(1))
    assert not await stored_in(runtime.store, model.liveness_key(1))


async def stored_in(store: Store, key: str) -> bool:
    return await store.get(key) is not None


async def test_a_node_removed_while_it_was_stopped_leaves_at_its_next_start(node: Node) -> None:
    """The marker is in the snapshot loaded at resume: run() returns at once."""
    await add_node(node, 2)
    runtime = runtime_of(node)
    await runtime.store.put(
        model.removed_node_key(1), RemovedNode(uid=1, removed_at=time.time()).encode()
    )
    other = ClusterRuntime(node.config, runtime.local, runtime.store, None)
    await other.load()
    async with asyncio.timeout(10):
        await other.run()
    assert other.removed.is_set()
