"""The voter plan and the admission checks, on the in-memory store (logic only)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from cnm.cluster import model
from cnm.cluster.handshake import ClockReading, JoinRequest
from cnm.cluster.membership import check_admission
from cnm.cluster.snapshot import ClusterSnapshot
from cnm.cluster.voters import next_voter, target_voters, voter_endpoints
from cnm.errors import (
    ConfigError,
    NodeConfigMismatch,
    RackIdRequired,
    SocketDirectoryMismatch,
    TimeNotSync,
)
from cnm.store.memory import MemoryStore


def raw(document: dict[str, Any]) -> bytes:
    """A document as another writer (or version) may have stored it."""
    return json.dumps(document).encode()


SETTINGS = {"socket_dir": "/s", "conf_dir": "/c", "install_dir": "/i", "os_user": "u"}


async def snapshot_of(
    nodes: list[dict[str, Any]], *, alive: set[int], cluster: dict[str, Any] | None = None
) -> ClusterSnapshot:
    store = MemoryStore()
    record = {"name": "c", "node_settings": SETTINGS, **(cluster or {})}
    await store.put(model.CLUSTER_KEY, raw(record))
    for node in nodes:
        await store.put(model.node_key(node["uid"]), raw(node))
        if node["uid"] in alive:
            await store.put(model.liveness_key(node["uid"]), raw({"uid": node["uid"]}))
    snapshot = ClusterSnapshot(store)
    await snapshot.load()
    return snapshot


def node(uid: int, role: str = "client", rack: str = "", **extra: Any) -> dict[str, Any]:
    return {"uid": uid, "store_role": role, "rack_id": rack, **extra}


@pytest.mark.parametrize(
    ("nodes", "cap", "wanted"),
    [(1, 5, 1), (2, 5, 1), (3, 5, 3), (4, 5, 3), (5, 5, 5), (30, 5, 5), (7, 3, 3), (9, 1, 1)],
)
def test_target_voters(nodes: int, cap: int, wanted: int) -> None:
    assert target_voters(nodes, cap) == wanted


async def test_no_voter_wanted_below_three_nodes() -> None:
    snapshot = await snapshot_of([node(1, "voter"), node(2)], alive={1, 2})
    assert next_voter(snapshot) is None


async def test_lowest_uid_live_client_is_next() -> None:
    nodes = [node(1, "voter"), node(2), node(3), node(4)]
    assert next_voter(await snapshot_of(nodes, alive={1, 2, 3, 4})) == 2
    assert next_voter(await snapshot_of(nodes, alive={1, 3, 4})) == 3


async def test_candidates_spread_across_racks() -> None:
    nodes = [node(1, "voter", "a"), node(2, rack="a"), node(3, rack="b"), node(4, rack="a")]
    assert next_voter(await snapshot_of(nodes, alive={1, 2, 3, 4})) == 3


async def test_joining_nodes_are_not_candidates() -> None:
    nodes = [node(1, "voter"), node(2, joining=True), node(3), node(4)]
    assert next_voter(await snapshot_of(nodes, alive={1, 2, 3, 4})) == 3


async def test_a_dead_learner_does_not_count() -> None:
    nodes = [node(1, "voter"), node(2, "voter"), node(3, "learner"), node(4)]
    assert next_voter(await snapshot_of(nodes, alive={1, 2, 3, 4})) is None
    assert next_voter(await snapshot_of(nodes, alive={1, 2, 4})) == 4


async def test_the_store_voters_setting_caps_the_plan() -> None:
    nodes = [node(1, "voter"), node(2, "voter"), node(3, "voter"), node(4), node(5)]
    snapshot = await snapshot_of(nodes, alive={1, 2, 3, 4, 5}, cluster={"store_voters": 3})
    assert next_voter(snapshot) is None


async def test_voter_endpoints_put_the_own_member_first() -> None:
    nodes = [
        node(1, "voter", store_client_url="https://a:2379"),
        node(2, "client"),
        node(3, "voter", store_client_url="https://c:2379"),
    ]
    snapshot = await snapshot_of(nodes, alive={1, 2, 3})
    assert voter_endpoints(snapshot, 3) == ["https://c:2379", "https://a:2379"]
    assert voter_endpoints(snapshot, 2) == ["https://a:2379", "https://c:2379"]
    # Store clients spread over the voters: uid 5 starts at the second one.
    assert voter_endpoints(snapshot, 5) == ["https://c:2379", "https://a:2379"]


def request(**changes: Any) -> JoinRequest:
    fields: dict[str, Any] = {
        "node_key": "0" * 32,
        "addr": "127.0.0.9",
        "node_settings": SETTINGS,
        "software_version": "7.22.0",
        "csr_pem": "-",
        "clock": ClockReading(offset_ms=3.0, uncertainty_ms=1.0),
    }
    fields.update(changes)
    return JoinRequest(**fields)


NOW = datetime(2026, 11, 29, tzinfo=UTC)


async def test_a_matching_joiner_is_admitted() -> None:
    snapshot = await snapshot_of([node(1, "voter")], alive={1})
    check_admission(snapshot, request(), member_addr="m", now=NOW)


async def test_rack_aware_cluster_lists_the_racks_in_use() -> None:
    nodes = [node(1, "voter", "r2"), node(2, rack="r1"), node(3, rack="r2")]
    # All alive: a degraded cluster would answer repair_required first (cluster/repair.py).
    snapshot = await snapshot_of(nodes, alive={1, 2, 3}, cluster={"rack_aware": True})
    with pytest.raises(RackIdRequired) as caught:
        check_admission(snapshot, request(), member_addr="m", now=NOW)
    assert caught.value.details["current_rack_ids"] == ["r1", "r2"]
    check_admission(snapshot, request(rack_id="r3"), member_addr="m", now=NOW)


async def test_socket_dir_wins_over_other_mismatches() -> None:
    snapshot = await snapshot_of([node(1, "voter")], alive={1})
    settings = {**SETTINGS, "socket_dir": "/x", "os_user": "v"}
    with pytest.raises(SocketDirectoryMismatch) as caught:
        check_admission(snapshot, request(node_settings=settings), member_addr="m", now=NOW)
    fields = [m["field"] for m in caught.value.details["mismatches"]]
    assert fields == ["socket_dir", "os_user"]
    with pytest.raises(NodeConfigMismatch):
        settings = {**SETTINGS, "install_dir": "/elsewhere"}
        check_admission(snapshot, request(node_settings=settings), member_addr="m", now=NOW)


@pytest.mark.parametrize(
    ("offset", "uncertainty", "fails"),
    [(999.0, 0.0, False), (1001.0, 0.0, True), (1400.0, 500.0, False), (-2500.0, 100.0, True)],
)
async def test_clock_limit_allows_for_the_measurement_error(
    offset: float, uncertainty: float, fails: bool
) -> None:
    snapshot = await snapshot_of([node(1, "voter")], alive={1})
    reading = ClockReading(offset_ms=offset, uncertainty_ms=uncertainty)
    if fails:
        with pytest.raises(TimeNotSync) as caught:
            check_admission(snapshot, request(clock=reading), member_addr="m", now=NOW)
        assert caught.value.details["offset_ms"] == offset
        assert caught.value.details["max_offset_ms"] == 1000
    else:
        check_admission(snapshot, request(clock=reading), member_addr="m", now=NOW)


async def test_required_version_newer_than_the_cluster_is_a_config_error() -> None:
    snapshot = await snapshot_of([node(1, "voter")], alive={1})
    with pytest.raises(ConfigError, match="required_version"):
        check_admission(snapshot, request(required_version="99.1"), member_addr="m", now=NOW)
    check_admission(snapshot, request(required_version="6.0"), member_addr="m", now=NOW)


async def test_uids_are_distinct_under_concurrency_and_stable_per_node_key() -> None:
    import asyncio

    from cnm.cluster.membership import Admissions
    from cnm.security import pki

    store = MemoryStore()
    ca = pki.make_ca("c")
    await store.put(model.CLUSTER_KEY, raw({"name": "c", "node_settings": SETTINGS}))
    await store.put(
        model.CA_KEY,
        raw({"cert_pem": ca.cert_pem.decode(), "key_pem": ca.key_pem.decode()}),
    )
    await store.put(model.NODE_UID_COUNTER, raw({"last": 1}))
    members = []
    for _ in range(2):  # two members admitting at once, each with its own snapshot
        snapshot = ClusterSnapshot(store)
        await snapshot.load()
        members.append(Admissions(store, snapshot))
    csr, _ = pki.make_csr("joiner", ["127.0.0.9"])

    async def admit(index: int) -> int:
        joiner = request(node_key=f"{index:032x}", csr_pem=csr.decode())
        grant = await members[index % 2].admit(joiner, member_addr="m")
        assert pki.verify_chain(grant.cert_pem.encode(), ca.cert_pem)
        return grant.uid

    uids = await asyncio.gather(*(admit(i) for i in range(20)))
    assert sorted(uids) == list(range(2, 22))
    again = await asyncio.gather(*(admit(i) for i in range(20)))
    assert again == uids
    items, _ = await store.get_prefix(model.NODES_PREFIX)
    assert len(items) == 20


async def test_an_address_that_is_a_live_node_under_another_key_is_refused() -> None:
    nodes = [node(1, "voter", addr="127.0.0.9"), node(2, addr="127.0.0.8")]
    snapshot = await snapshot_of(nodes, alive={1})
    with pytest.raises(ConfigError, match=r"127\.0\.0\.9 is already node 1"):
        check_admission(snapshot, request(addr="127.0.0.9"), member_addr="m", now=NOW)
    # A dead node keeps its address (its certificate names it) until removed or replaced: a
    # node that knowingly joins a degraded cluster as a new node may not take it...
    with pytest.raises(ConfigError, match=r"127\.0\.0\.8 is already node 2 .*not alive"):
        check_admission(
            snapshot, request(addr="127.0.0.8", override_repair=True), member_addr="m", now=NOW
        )
    # ... the dead node's replacement may.
    check_admission(snapshot, request(addr="127.0.0.8", replace_uid=2), member_addr="m", now=NOW)
    # Nor may an external address be another node's.
    with pytest.raises(ConfigError, match=r"127\.0\.0\.9 is already node 1"):
        check_admission(
            snapshot,
            request(addr="127.0.0.7", external_addr=["127.0.0.9"], override_repair=True),
            member_addr="m",
            now=NOW,
        )
    check_admission(
        snapshot, request(addr="127.0.0.7", override_repair=True), member_addr="m", now=NOW
    )
