"""The typed store records: stored bytes, forward compatibility, the snapshot's typed view, and
the one compare-and-set loop (contention is a 409, not an outage)."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pytest

from cnm.api.errors import error_body
from cnm.cluster import model
from cnm.cluster.records import (
    CaSecret,
    ClusterRecord,
    JwtSecret,
    LicenseRecord,
    LivenessRecord,
    NodeClockRecord,
    NodeKeyIndex,
    NodeRecord,
    NodeStatus,
    Record,
    StoreChangeLock,
    StoreRole,
    UidCounter,
    UserLoginIndex,
    UserRecord,
    admin_user_record,
    cluster_record,
    decode_at,
    kind_of,
    trial_license,
)
from cnm.cluster.settings import update_cluster
from cnm.cluster.snapshot import ClusterSnapshot
from cnm.cluster.writes import UidClaim, allocate_uid, update_record
from cnm.errors import StoreContention, StoreError
from cnm.store.base import Compare, Get, KeyValue, Op, Put, TxnResult
from cnm.store.memory import MemoryStore

NOW = datetime(2025, 6, 1, tzinfo=UTC)


def stored(document: dict[str, Any]) -> bytes:
    """The bytes the store held before records were typed (compact, sorted keys)."""
    return json.dumps(document, separators=(",", ":"), sort_keys=True).encode()


SETTINGS = {"socket_dir": "/s", "conf_dir": "/c", "install_dir": "/i", "os_user": "u"}
NODE = {
    "uid": 2,
    "addr": "10.0.0.2",
    "external_addr": [],
    "rack_id": "",
    "second_rack_id": "",
    "accept_servers": True,
    "max_listeners": 100,
    "max_redis_servers": 100,
    "bigstore_enabled": False,
    "bigstore_driver": "",
    "shard_count": 0,
    "ccs_persistent_path": "/var/opt/redislabs/persist",
    "node_settings": SETTINGS,
    "cores": 2,
    "total_memory": 4_000_000_000,
    "boot_time": 1_700_000_000,
    "architecture": "x86_64",
    "os_family": "debian",
    "os_name": "debian",
    "os_semantic_version": "12",
    "os_version": "Debian GNU/Linux 12 (bookworm)",
    "short_hostname": "n2",
    "persistent_storage_path": "/var/opt/redislabs/persist",
    "persistent_storage_size": 1.5e10,
    "ephemeral_storage_path": "/var/opt/redislabs/tmp",
    "ephemeral_storage_size": 1.5e10,
    "bigredis_storage_path": "",
    "software_version": "7.4.0-1",
    "store_role": "voter",
    "store_client_url": "https://10.0.0.2:2379",
    "store_peer_url": "https://10.0.0.2:2380",
}

# One document of every kind as this version writes it, by key.
DOCUMENTS: dict[str, dict[str, Any]] = {
    model.CLUSTER_KEY: {
        "name": "c1.example.com",
        "uuid": "0b8e",
        "created_time": "2025-06-01T00:00:00Z",
        "rack_aware": False,
        "policy": {"default_shards_placement": "dense", "rack_aware": False},
        "wait_command": True,
        "cnm_http_port": 8080,
        "cnm_https_port": 9443,
        "http_support": True,
        "upgrade_in_progress": False,
        "password_min_length": 8,
        "password_complexity": False,
        "node_settings": {
            "socket_dir": "/s",
            "conf_dir": "/c",
            "install_dir": "/i",
            "os_user": "u",
        },
        "ca_fingerprint": "ab:cd",
    },
    model.node_key(2): NODE,
    model.node_key(3): {**NODE, "uid": 3, "store_role": "client", "joining": True},
    model.user_key(2): {
        "uid": 2,
        "name": "ann",
        "email": "ann@example.com",
        "role": "db_viewer",
        "role_uids": [5],
        "status": "active",
        "auth_method": "regular",
        "email_alerts": False,
        "password_hash": "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA",
        "password_issue_date": "2025-06-01T00:00:00Z",
    },
    model.LICENSE_KEY: {
        "license": "",
        "key": "",
        "owner": "",
        "cluster_name": "c1.example.com",
        "activation_date": "2025-06-01T00:00:00Z",
        "expiration_date": "2025-07-01T00:00:00Z",
        "shards_limit": 4,
        "nodes_limit": 0,
        "features": ["trial"],
        "trial": True,
    },
    model.liveness_key(2): {"uid": 2, "addr": "10.0.0.2"},
    model.node_clock_key(2): {"uid": 2, "wall": 1_700_000_123.25},
    model.node_key_index("ab" * 16): {"uid": 2},
    model.login_key("ann@example.com"): {"uid": 2},
    model.NODE_UID_COUNTER: {"last": 3},
    model.USER_UID_COUNTER: {"last": 2},
    model.STORE_CHANGE_LOCK: {"uid": 2, "since": 1_700_000_000.5},
    model.CA_KEY: {"cert_pem": "CERT", "key_pem": "KEY"},
    model.JWT_SECRET_KEY: {"secret": "c2VjcmV0"},
}

KINDS: dict[str, type[Record]] = {
    model.CLUSTER_KEY: ClusterRecord,
    model.node_key(2): NodeRecord,
    model.node_key(3): NodeRecord,
    model.user_key(2): UserRecord,
    model.LICENSE_KEY: LicenseRecord,
    model.liveness_key(2): LivenessRecord,
    model.node_clock_key(2): NodeClockRecord,
    model.node_key_index("ab" * 16): NodeKeyIndex,
    model.login_key("ann@example.com"): UserLoginIndex,
    model.NODE_UID_COUNTER: UidCounter,
    model.USER_UID_COUNTER: UidCounter,
    model.STORE_CHANGE_LOCK: StoreChangeLock,
    model.CA_KEY: CaSecret,
    model.JWT_SECRET_KEY: JwtSecret,
}


@pytest.mark.parametrize("key", sorted(DOCUMENTS))
def test_every_kind_decodes_to_its_type_and_encodes_to_the_same_bytes(key: str) -> None:
    raw = stored(DOCUMENTS[key])
    record = decode_at(key, raw)
    assert type(record) is KINDS[key] is kind_of(key)
    assert record.encode() == raw
    assert type(record).decode(record.encode()) == record


def test_builders_write_what_was_written_before() -> None:
    cluster = cluster_record(
        name="c1.example.com",
        uuid="0b8e",
        created=NOW,
        rack_aware=False,
        policy={"default_shards_placement": "dense", "rack_aware": False},
        wait_command=True,
        http_port=8080,
        https_port=9443,
        node_settings=SETTINGS,
        ca_fingerprint="ab:cd",
    )
    assert cluster.encode() == stored(DOCUMENTS[model.CLUSTER_KEY])
    assert trial_license(cluster_name="c1.example.com", activated=NOW).encode() == stored(
        DOCUMENTS[model.LICENSE_KEY]
    )
    admin = admin_user_record(email="a@example.com", password_hash="h", created=NOW)
    assert admin.encode() == stored(
        {
            "uid": 1,
            "name": "Administrator",
            "email": "a@example.com",
            "role": "admin",
            "role_uids": [1],
            "status": "active",
            "auth_method": "regular",
            "password_hash": "h",
            "password_issue_date": "2025-06-01T00:00:00Z",
        }
    )
    # An absent field reads as its default and is not written back.
    assert admin.email_alerts is True and b"email_alerts" not in admin.encode()


def test_typed_reads() -> None:
    node = NodeRecord.decode(stored(NODE))
    assert node.store_role is StoreRole.VOTER and node.uid == 2
    assert node.node_settings.values()["socket_dir"] == "/s"
    assert NodeRecord(uid=9).store_role is StoreRole.CLIENT
    assert [r.value for r in StoreRole] == ["voter", "learner", "client"]
    assert [s.value for s in NodeStatus] == ["active", "down"]
    cluster = ClusterRecord.decode(b'{"name":"c"}')
    assert (cluster.store_voters, cluster.max_clock_offset) == (5, 1.0)
    assert cluster.password_min_length == model.DEFAULT_PASSWORD_MIN_LENGTH
    # Settings this version only reads keep the number as written.
    raw = b'{"max_clock_offset":2,"name":"c","store_voters":3}'
    assert ClusterRecord.decode(raw).encode() == raw


def test_secrets_stay_out_of_repr() -> None:
    for record in (
        CaSecret(cert_pem="CERT", key_pem="THE-KEY"),
        JwtSecret(secret="THE-KEY"),
        UserRecord(uid=1, password_hash="THE-KEY"),
        LicenseRecord(license="THE-KEY", key="THE-KEY"),
    ):
        assert "THE-KEY" not in repr(record)


@pytest.mark.parametrize(
    ("kind", "raw"),
    [
        (NodeRecord, b"[1, 2]"),
        (NodeRecord, b'{"uid": "two"}'),
        (NodeRecord, b'{"addr": "10.0.0.2"}'),
        (NodeRecord, b'{"uid": 2, "store_role": "leader"}'),
        (UserRecord, b"not json"),
        (CaSecret, b'{"cert_pem": "C"}'),
    ],
)
def test_a_record_of_the_wrong_shape_does_not_decode(kind: type[Record], raw: bytes) -> None:
    with pytest.raises(ValueError):
        kind.decode(raw)


# --- forward compatibility --------------------------------------------------------------------


def test_unknown_fields_survive_a_change() -> None:
    newer = {**NODE, "future": {"nested": [1, 2]}, "node_settings": {"socket_dir": "/s", "x": 1}}
    record = NodeRecord.decode(stored(newer))
    changed = record.changed(store_role=StoreRole.LEARNER)
    assert json.loads(changed.encode()) == {**newer, "store_role": "learner"}


async def test_unknown_fields_survive_read_modify_write_in_the_store() -> None:
    store = MemoryStore()
    newer_cluster = {
        **DOCUMENTS[model.CLUSTER_KEY],
        "future_setting": "on",
        "policy": {"default_shards_placement": "dense", "future_policy": 7},
    }
    newer_node = {**NODE, "future": {"a": None}}
    await store.put(model.CLUSTER_KEY, stored(newer_cluster))
    await store.put(model.node_key(2), stored(newer_node))

    def demote(node: NodeRecord) -> NodeRecord:
        return node.changed(store_role=StoreRole.CLIENT)

    await update_record(store, model.node_key(2), NodeRecord, demote)
    await update_cluster(store, {"password_min_length": 12}, policy=False)
    await update_cluster(store, {"shards_overbooking": True}, policy=True)

    node = await store.get(model.node_key(2))
    cluster = await store.get(model.CLUSTER_KEY)
    assert node is not None and cluster is not None
    assert node.value == stored({**newer_node, "store_role": "client"})
    assert cluster.value == stored(
        {
            **newer_cluster,
            "password_min_length": 12,
            "policy": {
                "default_shards_placement": "dense",
                "future_policy": 7,
                "shards_overbooking": True,
            },
        }
    )


# --- the snapshot -----------------------------------------------------------------------------


async def test_snapshot_serves_typed_records_and_skips_undecodable_ones(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = MemoryStore()
    for key, document in DOCUMENTS.items():
        await store.put(key, stored(document))
    await store.put(model.node_key(7), b'{"uid": "seven", "password": "hunter2"}')
    await store.put("/cnm/somewhere/new", b'{"a": 1}')
    snapshot = ClusterSnapshot(store)
    with caplog.at_level(logging.ERROR):
        await snapshot.load()
    assert "/cnm/nodes/7" in caplog.text and "uid" in caplog.text
    assert "hunter2" not in caplog.text and "seven" not in caplog.text

    cluster = snapshot.cluster()
    assert cluster is not None and cluster.name == "c1.example.com"
    assert [n.uid for n in snapshot.nodes()] == [2, 3]
    assert snapshot.node(7) is None
    node = snapshot.node(3)
    assert node is not None and node.joining
    assert snapshot.is_alive(2) and not snapshot.is_alive(3)
    liveness = snapshot.liveness(2)
    assert liveness is not None and liveness.addr == "10.0.0.2"
    assert snapshot.node_uid_for_key("ab" * 16) == 2
    assert snapshot.node_uid_for_key("cd" * 16) is None
    user = snapshot.user(2)
    assert user is not None and [u.uid for u in snapshot.users()] == [2]
    assert snapshot.user_by_login("ANN@example.com") == user
    assert snapshot.user_by_login("ann") == user  # by name, though names are not indexed here
    assert snapshot.user_by_login("bob") is None
    license = snapshot.license()
    assert license is not None and license.trial
    ca, secret = snapshot.ca(), snapshot.jwt_secret()
    assert ca is not None and ca.key_pem == "KEY"
    assert secret is not None and secret.secret == "c2VjcmV0"
    assert snapshot.record("/cnm/somewhere/new") == Record.decode(b'{"a": 1}')


# --- compare-and-set ------------------------------------------------------------------------------


class RacingStore(MemoryStore):
    """Every transaction on `key` loses: another writer changes it just before."""

    def __init__(self, key: str) -> None:
        super().__init__()
        self.key = key
        self.attempts = 0

    async def txn(
        self, compares: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op] = ()
    ) -> TxnResult:
        if any(c.key == self.key for c in compares):
            self.attempts += 1
            current = await self.get(self.key)
            await self.put(self.key, current.value if current else b"{}")
        return await super().txn(compares, success, failure)


async def test_losing_every_race_is_contention_not_an_outage() -> None:
    store = RacingStore(model.CLUSTER_KEY)
    await store.put(model.CLUSTER_KEY, stored(DOCUMENTS[model.CLUSTER_KEY]))
    with pytest.raises(StoreContention) as caught:
        await update_cluster(store, {"password_min_length": 12}, policy=False)
    error = caught.value
    assert (error.error_code, error.http_status) == ("store_contention", 409)
    assert "retry" in error.message
    assert store.attempts == 20
    assert error_body(error)["error_code"] == "store_contention"


async def test_update_record_tries_as_often_as_asked() -> None:
    store = RacingStore(model.node_key(2))
    await store.put(model.node_key(2), stored(NODE))
    with pytest.raises(StoreContention):
        await update_record(
            store, model.node_key(2), NodeRecord, lambda n: n.changed(cores=4), attempts=1
        )
    assert store.attempts == 1
    with pytest.raises(StoreError, match="does not exist"):
        await update_record(store, model.node_key(9), NodeRecord, lambda n: n)


async def test_update_record_writes_nothing_when_nothing_changed() -> None:
    store = MemoryStore()
    revision = await store.put(model.node_key(2), stored(NODE))
    record, written = await update_record(store, model.node_key(2), NodeRecord, lambda n: n)
    assert written == 0 and record.uid == 2
    current = await store.get(model.node_key(2))
    assert current is not None and current.mod_revision == revision


async def test_allocate_uid_advances_the_counter_and_finds_earlier_allocations() -> None:
    store = MemoryStore()
    index = model.node_key_index("ab" * 16)

    def claim(uid: int) -> UidClaim:
        return UidClaim(
            compares=[Compare.absent(index)],
            ops=[Put(index, NodeKeyIndex(uid=uid).encode())],
            reads=[Get(index)],
        )

    def lost(result: TxnResult) -> int | None:
        found = result.reads[0] if result.reads else []
        return NodeKeyIndex.decode(found[0].value).uid if found else None

    first = await allocate_uid(store, model.NODE_UID_COUNTER, claim, lost=lost, above=4, what="x")
    assert (first.uid, first.created) == (5, True)
    again = await allocate_uid(store, model.NODE_UID_COUNTER, claim, lost=lost, what="x")
    assert (again.uid, again.created) == (5, False)
    counter = await store.get(model.NODE_UID_COUNTER)
    assert counter is not None and UidCounter.decode(counter.value).last == 5


async def test_allocate_uid_under_endless_contention() -> None:
    store = RacingStore(model.USER_UID_COUNTER)
    await store.put(model.USER_UID_COUNTER, UidCounter(last=1).encode())
    with pytest.raises(StoreContention, match="the users"):
        await allocate_uid(
            store, model.USER_UID_COUNTER, lambda uid: UidClaim(), what="the users", attempts=3
        )
    assert store.attempts == 3


class ReadCountingStore(MemoryStore):
    """Counts the reads of single keys made outside transactions."""

    def __init__(self) -> None:
        super().__init__()
        self.gets: list[str] = []

    async def get(self, key: str) -> KeyValue | None:
        self.gets.append(key)
        return await super().get(key)


async def test_allocate_uid_from_the_counter_seen_reads_nothing_and_a_stale_one_costs_no_read() -> (
    None
):
    store = ReadCountingStore()
    await store.put(model.NODE_UID_COUNTER, UidCounter(last=3).encode())
    first = await allocate_uid(
        store, model.NODE_UID_COUNTER, lambda uid: UidClaim(), what="x", last_seen=3
    )
    assert (first.uid, first.created) == (4, True)
    assert store.gets == []
    # The snapshot lags (it still shows 3): the failed transaction read the counter itself, and
    # the next attempt allocates past it without a read of its own.
    second = await allocate_uid(
        store, model.NODE_UID_COUNTER, lambda uid: UidClaim(), what="x", last_seen=3
    )
    assert second.uid == 5 and store.gets == []
    counter = await store.get(model.NODE_UID_COUNTER)
    assert counter is not None and UidCounter.decode(counter.value).last == 5
    # A counter written in other bytes than the value guard expects: a lost compare, no harm.
    await store.put(model.NODE_UID_COUNTER, b'{ "last": 5 }')
    third = await allocate_uid(
        store, model.NODE_UID_COUNTER, lambda uid: UidClaim(), what="x", last_seen=5
    )
    assert third.uid == 6


async def test_update_record_from_a_known_record_reads_only_when_it_lost() -> None:
    store = ReadCountingStore()
    revision = await store.put(model.node_key(2), stored(NODE))
    known = (NodeRecord.decode(stored(NODE)), revision)
    record, written = await update_record(
        store, model.node_key(2), NodeRecord, lambda n: n.changed(cores=4), known=known
    )
    assert record.cores == 4 and written > revision and store.gets == []
    # The record changed since (`known` is stale): the guard fails and the retry reads it.
    record, _ = await update_record(
        store, model.node_key(2), NodeRecord, lambda n: n.changed(cores=8), known=known
    )
    assert record.cores == 8 and store.gets == [model.node_key(2)]
    current = await store.get(model.node_key(2))
    assert current is not None and NodeRecord.decode(current.value).cores == 8
