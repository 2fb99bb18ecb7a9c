"""Joins into a degraded cluster, in-process (memory store): repair_required and its details,
override_repair, replacement joins with `node.identity.uid` and each of their refusals, the
failed store member removed first, and what the cluster shows while degraded
(cluster/repair.py). The real-agent version is tests/cluster/test_repair.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cnm.cluster import model
from cnm.cluster.records import NodeKeyIndex, NodeRecord, UidCounter
from cnm.cluster.repair import mark_down_nodes, replacement_of
from cnm.cluster.snapshot import ClusterSnapshot
from cnm.store.memory import MemoryStore
from harness.bodies import ADMIN
from harness.inprocess import Member, join_member, member_node


async def join(tmp_path: Path, member: Member, **body: Any) -> dict[str, Any]:
    return await join_member(tmp_path, member, **body)


async def join_and_fail(tmp_path: Path, member: Member, **body: Any) -> dict[str, Any]:
    status = await join_member(tmp_path, member, **body)
    assert status["state"] == "error", status
    return status


HUGE = 10**15  # more memory or flash than any test machine has


def raw(document: dict[str, Any]) -> bytes:
    return json.dumps(document).encode()


async def add_nodes(member: Member, *nodes: dict[str, Any], alive: tuple[int, ...] = ()) -> None:
    """Nodes besides node 1 (down unless listed in `alive`), the uid counter past them, and the
    member's snapshot reloaded (its watch does not run in-process)."""
    for node in nodes:
        await member.store.put(model.node_key(node["uid"]), raw(node))
    for uid in alive:
        await member.store.put(model.liveness_key(uid), raw({"uid": uid}))
    last = max(node["uid"] for node in nodes)
    await member.store.put(model.NODE_UID_COUNTER, UidCounter(last=last).encode())
    runtime = member.node.manager.runtime
    assert runtime is not None
    await runtime.load()


async def stored_node(member: Member, uid: int) -> NodeRecord:
    found = await member.store.get(model.node_key(uid))
    assert found is not None
    return NodeRecord.decode(found.value)


async def counter(member: Member) -> int:
    found = await member.store.get(model.NODE_UID_COUNTER)
    assert found is not None
    return UidCounter.decode(found.value).last


def identity(**fields: Any) -> dict[str, Any]:
    return {"node": {"identity": fields}}


async def test_a_plain_join_into_a_degraded_cluster_is_repair_required(tmp_path: Path) -> None:
    async with member_node(tmp_path) as member:
        await add_nodes(
            member,
            {"uid": 2, "addr": "127.0.0.12", "down_since": "2026-12-01T10:00:05Z"},
            {"uid": 3, "addr": "127.0.0.13", "down_since": "2026-12-01T10:00:00Z"},
        )
        status = await join_and_fail(tmp_path, member)
        assert await counter(member) == 3  # nothing allocated
    assert status["error_code"] == "repair_required"
    details = status["error_details"]
    # Down longest first; no rack_id in a cluster without racks.
    assert details["failed_nodes"] == [{"uid": 3}, {"uid": 2}]
    assert details["replace_candidate"] == 3
    assert "node.identity.uid" in details["message"] and "override_repair" in details["message"]
    assert details["retryable"] is False


async def test_the_candidate_is_the_failed_node_in_the_joiners_rack(tmp_path: Path) -> None:
    async with member_node(tmp_path, rack_aware=True) as member:
        await add_nodes(
            member,
            {"uid": 2, "rack_id": "rack-b", "down_since": "2026-12-01T10:00:05Z"},
            {"uid": 3, "rack_id": "rack-c", "down_since": "2026-12-01T10:00:00Z"},
        )
        status = await join_and_fail(tmp_path, member, **identity(rack_id="rack-b"))
    assert status["error_code"] == "repair_required"
    assert status["error_details"]["failed_nodes"] == [
        {"uid": 3, "rack_id": "rack-c"},
        {"uid": 2, "rack_id": "rack-b"},
    ]
    assert status["error_details"]["replace_candidate"] == 2


async def test_override_repair_joins_as_a_new_node(tmp_path: Path) -> None:
    async with member_node(tmp_path) as member:
        await add_nodes(member, {"uid": 2, "addr": "127.0.0.12"})
        status = await join(tmp_path, member, override_repair=True)
        assert status["state"] == "completed", status
        assert await counter(member) == 3
        new = await stored_node(member, 3)
        assert new.addr == "127.0.0.1" and not new.replaced_at
        assert (await stored_node(member, 2)).addr == "127.0.0.12"  # the failed one stays


async def test_a_join_naming_a_failed_uid_takes_its_place(tmp_path: Path) -> None:
    async with member_node(tmp_path, rack_aware=True) as member:
        old_key = model.node_key_index("ab" * 16)
        await member.store.put(old_key, NodeKeyIndex(uid=2).encode())
        await add_nodes(
            member,
            {"uid": 2, "addr": "127.0.0.12", "rack_id": "rack-b", "total_memory": 1024},
            {"uid": 3, "addr": "127.0.0.13", "rack_id": "rack-c"},
            alive=(3,),
        )
        status = await join(tmp_path, member, **identity(uid=2))
        assert status["state"] == "completed", status
        node = await stored_node(member, 2)
        # The joiner's machine, the failed node's rack (the request gave none), no new uid.
        assert node.addr == "127.0.0.1" and node.rack_id == "rack-b"
        assert node.replaced_at.endswith("Z") and not node.joining
        assert node.total_memory > 1024
        assert await counter(member) == 3
        assert await member.store.get(model.node_key(4)) is None
        # The old machine's node key no longer maps to the uid; the joiner's does.
        assert await member.store.get(old_key) is None
        indexes, _ = await member.store.get_prefix(model.NODE_KEY_PREFIX)
        assert [NodeKeyIndex.decode(kv.value).uid for kv in indexes] == [2]
        # What the old machine reads when it comes back.
        replaced = await replacement_of(member.store, "ab" * 16, 2, "127.0.0.12")
        assert replaced is not None and replaced.addr == "127.0.0.1"
        assert await replacement_of(member.store, "ab" * 16, 3, "127.0.0.13") is None


async def test_a_rack_in_the_request_wins_over_the_failed_nodes(tmp_path: Path) -> None:
    async with member_node(tmp_path, rack_aware=True) as member:
        await add_nodes(member, {"uid": 2, "rack_id": "rack-b"})
        status = await join(tmp_path, member, **identity(uid=2, rack_id="rack-d"))
        assert status["state"] == "completed", status
        assert (await stored_node(member, 2)).rack_id == "rack-d"


async def test_a_replacement_with_less_memory_is_refused(tmp_path: Path) -> None:
    async with member_node(tmp_path) as member:
        await add_nodes(member, {"uid": 2, "total_memory": HUGE})
        status = await join_and_fail(tmp_path, member, **identity(uid=2))
        assert (await stored_node(member, 2)).total_memory == HUGE  # unchanged
    assert status["error_code"] == "insufficient_node_memory"
    assert status["error_details"]["required_memory"] == HUGE


async def test_the_reported_memory_setting_lowers_what_the_joiner_reports(
    tmp_path: Path, monkeypatch: Any
) -> None:
    from cnm.node import facts

    # TEST-ONLY agent setting, read by the machine-facts code (not a mock of the agent).
    monkeypatch.setenv(facts.REPORTED_MEMORY_ENV, "1000")
    facts._static_facts.cache_clear()
    try:
        async with member_node(tmp_path) as member:
            await add_nodes(member, {"uid": 2, "total_memory": 4096})
            status = await join_and_fail(tmp_path, member, **identity(uid=2))
    finally:
        monkeypatch.delenv(facts.REPORTED_MEMORY_ENV)
        facts._static_facts.cache_clear()
    assert status["error_code"] == "insufficient_node_memory"
    assert status["error_details"]["required_memory"] == 4096
    assert status["error_details"]["node_memory"] == 1000


async def test_a_replacement_without_the_failed_nodes_flash_is_refused(tmp_path: Path) -> None:
    async with member_node(tmp_path) as member:
        await add_nodes(member, {"uid": 2, "bigstore_enabled": True, "bigredis_storage_size": HUGE})
        status = await join_and_fail(tmp_path, member, **identity(uid=2))
    assert status["error_code"] == "insufficient_node_flash"
    assert status["error_details"]["required_flash"] == HUGE


async def test_replacing_an_alive_or_unknown_uid_is_a_config_error(tmp_path: Path) -> None:
    for uid, words in ((1, "is alive"), (9, "no node 9")):
        directory = tmp_path / str(uid)
        directory.mkdir()
        async with member_node(directory) as member:
            status = await join_and_fail(directory, member, **identity(uid=uid))
        assert status["error_code"] == "config_error"
        assert status["error_details"]["fields"] == ["node.identity.uid"]
        assert words in status["error_details"]["message"]


async def with_voters(member: Member, uids: tuple[int, ...]) -> None:
    """The store's members: one voter per uid, with the peer URL its node record names."""
    for uid in uids:
        await member.store.member_add([f"https://10.0.0.{uid}:2380"], learner=False)
    await member.store.member_remove(1)  # the memory store's own unnamed member


def voter(uid: int, **extra: Any) -> dict[str, Any]:
    url = f"https://10.0.0.{uid}"
    return {
        "uid": uid,
        "store_role": "voter",
        "store_peer_url": f"{url}:2380",
        "store_client_url": f"{url}:2379",
        **extra,
    }


async def test_a_failed_voters_member_is_removed_before_its_replacement(tmp_path: Path) -> None:
    async with member_node(tmp_path) as member:
        await with_voters(member, (1, 2, 3))
        # Node 1's record names its member too.
        await member.store.put(model.node_key(1), raw({**voter(1), "addr": member.addr}))
        await add_nodes(member, voter(2), voter(3), alive=(3,))
        status = await join(tmp_path, member, **identity(uid=2))
        assert status["state"] == "completed", status
        urls = {url for m in await member.store.member_list() for url in m.peer_urls}
        # The failed voter's member is gone, the others stay. (The replacement, next voter
        # of the plan, may have added its own learner already: the learner → promote path.)
        assert "https://10.0.0.2:2380" not in urls
        assert {"https://10.0.0.1:2380", "https://10.0.0.3:2380"} <= urls


async def test_a_replacement_that_would_cost_the_quorum_is_retryable(tmp_path: Path) -> None:
    async with member_node(tmp_path) as member:
        await with_voters(member, (1, 2))
        await member.store.put(model.node_key(1), raw({**voter(1), "addr": member.addr}))
        await add_nodes(member, voter(2))
        status = await join_and_fail(tmp_path, member, **identity(uid=2))
        assert len(await member.store.member_list()) == 2  # nothing removed
        assert (await stored_node(member, 2)).store_role == "voter"
    assert status["error_code"] == "internal_error"
    assert status["error_details"]["reason"] == "store_quorum_at_risk"
    assert status["error_details"]["retryable"] is True
    assert "two voters" in status["error_details"]["message"]


async def test_the_cluster_shows_which_nodes_are_down_and_since_when(tmp_path: Path) -> None:
    async with member_node(tmp_path, rack_aware=True) as member:
        await add_nodes(member, {"uid": 2, "rack_id": "rack-b"})
        runtime = member.node.manager.runtime
        assert runtime is not None
        await mark_down_nodes(member.store, runtime.snapshot)
        since = (await stored_node(member, 2)).down_since
        assert since.endswith("Z")
        assert (await stored_node(member, 1)).down_since == ""  # node 1 is up
        await runtime.load()
        client = member.node.client
        check = (await client.get("/v1/cluster/check", auth=ADMIN)).json()
        assert check["cluster_test_result"] is False and check["degraded"] is True
        assert check["failed_nodes"] == [{"uid": 2, "rack_id": "rack-b", "down_since": since}]
        [entry] = [n for n in check["nodes"] if n["node_uid"] == "2"]
        assert entry["result"] is False and since in entry["error"]
        nodes = {n["uid"]: n for n in (await client.get("/v1/nodes", auth=ADMIN)).json()}
        assert nodes[2]["status"] == "down" and nodes[2]["status_since"] == since
        assert nodes[1]["status"] == "active" and "down_since" not in nodes[2]


async def test_down_since_is_written_once(tmp_path: Path) -> None:
    store = MemoryStore()
    await store.put(model.node_key(2), raw({"uid": 2, "down_since": "2026-12-01T10:00:00Z"}))
    await store.put(model.node_key(3), raw({"uid": 3, "joining": True}))
    snapshot = ClusterSnapshot(store)
    await snapshot.load()
    await mark_down_nodes(store, snapshot)
    found = await store.get(model.node_key(2))
    assert found is not None
    assert NodeRecord.decode(found.value).down_since == "2026-12-01T10:00:00Z"
    ghost = await store.get(model.node_key(3))
    assert ghost is not None and not NodeRecord.decode(ghost.value).down_since
