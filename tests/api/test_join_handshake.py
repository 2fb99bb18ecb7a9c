"""The join handshake in-process: a joiner's API app joins a member's API app (memory store).

One test per error code the member (or the joiner's own checks) can answer a join with, beside
the real-process versions in tests/cluster/test_join_errors.py, plus a successful admission
whose bytes on the wire pin the handshake's field names (they must not change between versions).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from cnm import SOFTWARE_VERSION
from cnm.api.responses import CompactJSONResponse
from cnm.clock import utc_now
from cnm.cluster import model
from cnm.cluster.handshake import JoinGrant, JoinRefusal, JoinRequest, TimeReply, WireMessage
from cnm.cluster.records import NodeRecord, StoreRole, trial_license
from cnm.node.data_dir import DataDir
from cnm.node.local_state import LocalState
from cnm.security import key_files
from cnm.store.base import Compare, KeyValue, Op, Put, TxnResult
from harness.api_node import memory_backend, node_config, running_node
from harness.bodies import ADMIN, join_body
from harness.inprocess import MEMBER_ADDR, Member, TransportWrapper, member_node, wiring_to

# The field names of the wire format as of the first version; adding is allowed, renaming never.
REQUEST_FIELDS = {
    "node_key",
    "addr",
    "external_addr",
    "rack_id",
    "second_rack_id",
    "node_settings",
    "software_version",
    "required_version",
    "csr_pem",
    "clock",
    "record",
    # Added for repair (cluster/repair.py); older members ignore them.
    "replace_uid",
    "override_repair",
    "total_memory",
    "flash_size",
}
GRANT_FIELDS = {
    "uid",
    "cert_pem",
    "ca_pem",
    "ca_fingerprint",
    "store_endpoints",
    "cluster_name",
    "cluster_uuid",
    "store_password",
    "store_cert_pem",
    "store_key_pem",
    # Added with member-made node keys (the request's csr_pem then null).
    "key_pem",
    # Added with the member's record write and liveness lease handed to the joiner.
    "record",
    "record_revision",
    "liveness_lease",
}


def pki_subject(cert_pem: str) -> str:
    from cryptography import x509

    return x509.load_pem_x509_certificate(cert_pem.encode()).subject.rfc4514_string()


def httpx_json(document: Any) -> bytes:
    """How the joiner's httpx client encodes a JSON body."""
    return json.dumps(document, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def compact_json(document: Any) -> bytes:
    """How the member's API encodes an answer."""
    return CompactJSONResponse(document).body


class Recorder(httpx.AsyncBaseTransport):
    """Passes every exchange through and keeps the bytes of both directions."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.exchanges: list[tuple[str, bytes, int, bytes]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        sent = await request.aread()
        response = await self.inner.handle_async_request(request)
        received = await response.aread()
        self.exchanges.append((request.url.path, sent, response.status_code, received))
        return httpx.Response(response.status_code, headers=response.headers, content=received)

    async def aclose(self) -> None:
        await self.inner.aclose()


def recording() -> tuple[list[Recorder], TransportWrapper]:
    """A transport wrapper that records, and the recorders it made (one per client)."""
    recorders: list[Recorder] = []

    def record(inner: httpx.AsyncBaseTransport) -> httpx.AsyncBaseTransport:
        recorders.append(Recorder(inner))
        return recorders[-1]

    return recorders, record


class SkewedMember(httpx.AsyncBaseTransport):
    """The member's clock `seconds` off: its clock-exchange readings shifted on the way back."""

    def __init__(self, inner: httpx.AsyncBaseTransport, seconds: float) -> None:
        self.inner = inner
        self.seconds = seconds

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.url.path != "/v1/join/time" or response.status_code != 200:
            return response
        reply = json.loads(await response.aread())
        reply["t2"] += self.seconds
        reply["t3"] += self.seconds
        return httpx.Response(200, json=reply)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def join(
    tmp_path: Path,
    member: Member,
    *,
    transport: TransportWrapper | None = None,
    config: dict[str, Any] | None = None,
    **body: Any,
) -> dict[str, Any]:
    """Join `member` from a fresh in-process node; the joiner's final bootstrap_status."""
    directory = tmp_path / "joiner"
    directory.mkdir()
    request = join_body([MEMBER_ADDR], **body)
    joiner_config = node_config(directory, **(config or {}))
    wiring = wiring_to(member, transport)
    backend = memory_backend(member.store)
    async with running_node(joiner_config, join_wiring=wiring, backend=backend) as joiner:
        response = await joiner.client.post("/v1/bootstrap/join_cluster", json=request)
        assert response.status_code == 200, response.text
        return await joiner.wait_state("completed", "error", auth=ADMIN)


async def join_and_fail(tmp_path: Path, member: Member, **kw: Any) -> dict[str, Any]:
    status = await join(tmp_path, member, **kw)
    assert status["state"] == "error", status
    return status


RACK_B = {"node": {"identity": {"rack_id": "rack-b"}}}


async def test_a_good_join_is_admitted_and_its_bytes_round_trip(tmp_path: Path) -> None:
    recorders, record = recording()
    async with member_node(tmp_path) as member:
        read: list[str] = []
        real_get = member.store.get

        async def recorded_get(key: str) -> KeyValue | None:
            read.append(key)
            return await real_get(key)

        leases: list[int] = []
        real_txn = member.store.txn

        async def recorded_txn(
            compares: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op] = ()
        ) -> TxnResult:
            leases.extend(
                op.lease
                for op in success
                if isinstance(op, Put) and op.key == model.liveness_key(2)
            )
            return await real_txn(compares, success, failure)

        member.store.get = recorded_get  # type: ignore[method-assign]
        member.store.txn = recorded_txn  # type: ignore[method-assign]
        status = await join(tmp_path, member, transport=record)
        assert status["state"] == "completed", status
        stored = await real_get(model.node_key(2))
    assert stored is not None
    # Neither side read a key it had just learned: the member the uid counter (its snapshot
    # has it), the joiner its record (the grant carries the member's write of it).
    assert model.NODE_UID_COUNTER not in read and model.node_key(2) not in read
    node = NodeRecord.decode(stored.value)
    assert node.addr == "127.0.0.1" and node.store_role is StoreRole.CLIENT
    assert not node.has("joining")  # the joiner completed the record the member wrote
    assert status["member"].endswith(f"{MEMBER_ADDR}:9443")

    exchanges = [e for r in recorders for e in r.exchanges]
    [(_, sent, code, received)] = [e for e in exchanges if e[0] == "/v1/join/node"]
    assert code == 200
    request = JoinRequest.model_validate_json(sent)
    assert set(json.loads(sent)) == REQUEST_FIELDS
    assert httpx_json(request.to_wire()) == sent
    assert request.software_version == SOFTWARE_VERSION and request.addr == "127.0.0.1"
    assert request.csr_pem is None  # the member makes the node's key
    grant = JoinGrant.model_validate_json(received)
    assert set(json.loads(received)) == GRANT_FIELDS
    assert compact_json(grant.to_wire()) == received
    assert grant.uid == 2 and grant.cluster_name == "inprocess.example.com"
    # The node's store access: its own password, and a client certificate without a common
    # name (etcd's gateway refuses named ones once auth is on), kept by the joiner 0600.
    assert grant.store_password and len(grant.store_password) >= 43
    assert grant.store_cert_pem and "CN=" not in pki_subject(grant.store_cert_pem)
    assert grant.key_pem and "PRIVATE KEY" in grant.key_pem
    assert pki_subject(grant.cert_pem) == "CN=node:2"
    # The joiner completed the very record of the grant (created then, written once since) and
    # put its liveness key on the lease the member granted.
    assert grant.record is not None and grant.record["joining"] is True
    assert stored.create_revision == grant.record_revision and stored.version == 2
    assert grant.liveness_lease and leases == [grant.liveness_lease]
    clock = [e for e in exchanges if e[0] == "/v1/join/time"]
    assert clock and all(code == 200 for _, _, code, _ in clock)
    for _, _, _, answer in clock:
        assert compact_json(TimeReply.model_validate_json(answer).to_wire()) == answer


async def test_wrong_password_is_access_denied(tmp_path: Path) -> None:
    async with member_node(tmp_path) as member:
        status = await join_and_fail(
            tmp_path, member, credentials={"username": ADMIN[0], "password": "wrong-password"}
        )
    assert status["error_code"] == "access_denied"
    assert ADMIN[0] in status["error_details"]["message"]
    assert status["error_details"]["retryable"] is False


async def test_a_cluster_at_its_nodes_limit_refuses_with_invalid_license(tmp_path: Path) -> None:
    now = utc_now()
    trial = trial_license(cluster_name="inprocess.example.com", activated=now)
    license = trial.changed(nodes_limit=1)
    async with member_node(tmp_path, license=license) as member:
        status = await join_and_fail(tmp_path, member)
    assert status["error_code"] == "invalid_license"
    assert status["error_details"]["violation"] == "nodes_limit_exceeded"


async def test_an_expired_license_refuses_with_invalid_license(tmp_path: Path) -> None:
    activated = utc_now() - timedelta(days=60)
    license = trial_license(cluster_name="inprocess.example.com", activated=activated)
    async with member_node(tmp_path, license=license) as member:
        status = await join_and_fail(tmp_path, member)
    assert status["error_code"] == "invalid_license"
    assert status["error_details"]["violation"] == "expired"


async def test_rack_aware_cluster_requires_a_rack_id(tmp_path: Path) -> None:
    async with member_node(tmp_path, rack_aware=True) as member:
        status = await join_and_fail(tmp_path, member)
    assert status["error_code"] == "rack_id_required"
    assert status["error_details"]["current_rack_ids"] == ["rack-a"]


async def test_malformed_rack_id_is_a_config_error(tmp_path: Path) -> None:
    async with member_node(tmp_path, rack_aware=True) as member:
        status = await join_and_fail(tmp_path, member, node={"identity": {"rack_id": "-bad rack"}})
    assert status["error_code"] == "config_error"
    assert "node.identity.rack_id" in status["error_details"]["message"]


async def test_required_version_newer_than_the_cluster_is_a_config_error(tmp_path: Path) -> None:
    async with member_node(tmp_path) as member:
        status = await join_and_fail(tmp_path, member, required_version="99.0.0")
    assert status["error_code"] == "config_error"
    assert "required_version" in status["error_details"]["message"]
    assert status["error_details"]["fields"] == ["required_version"]


async def test_a_value_beyond_the_handshakes_limits_is_the_joiners_config_error(
    tmp_path: Path,
) -> None:
    recorders, record = recording()
    async with member_node(tmp_path) as member:
        status = await join_and_fail(
            tmp_path, member, transport=record, required_version="1." * 40 + "0"
        )
    assert status["error_code"] == "config_error"
    assert status["error_details"]["fields"] == ["required_version"]
    # Refused before asking the member: nothing reached /v1/join/node.
    assert not [e for r in recorders for e in r.exchanges if e[0] == "/v1/join/node"]


async def test_different_socket_dir_is_a_socket_directory_mismatch(tmp_path: Path) -> None:
    async with member_node(tmp_path) as member:
        status = await join_and_fail(
            tmp_path, member, config={"socket_dir": Path("/var/run/elsewhere")}
        )
    assert status["error_code"] == "socket_directory_mismatch"
    assert status["error_details"]["mismatches"] == [
        {
            "field": "socket_dir",
            "cluster_value": str(member.node.config.socket_dir),
            "node_value": "/var/run/elsewhere",
        }
    ]


async def test_different_os_user_is_a_node_config_mismatch(tmp_path: Path) -> None:
    async with member_node(tmp_path) as member:
        status = await join_and_fail(tmp_path, member, config={"os_user": "someone"})
    assert status["error_code"] == "node_config_mismatch"
    [mismatch] = status["error_details"]["mismatches"]
    assert mismatch["field"] == "os_user" and mismatch["node_value"] == "someone"


async def test_a_clock_ten_minutes_ahead_is_time_not_sync(tmp_path: Path) -> None:
    def behind(inner: httpx.AsyncBaseTransport) -> httpx.AsyncBaseTransport:
        return SkewedMember(inner, -600.0)  # the member is behind: the joiner is ahead

    async with member_node(tmp_path) as member:
        status = await join_and_fail(tmp_path, member, transport=behind)
    assert status["error_code"] == "time_not_sync"
    details = status["error_details"]
    assert 599_000 < details["offset_ms"] < 601_000, details
    assert details["max_offset_ms"] == 1000
    assert details["uncertainty_ms"] >= 0
    assert details["member"] == MEMBER_ADDR
    assert details["retryable"] is True  # from the joiner's own class, found by error_code


async def test_a_refusal_on_the_wire_round_trips_its_bytes(tmp_path: Path) -> None:
    recorders, record = recording()
    async with member_node(tmp_path, rack_aware=True) as member:
        await join_and_fail(tmp_path, member, transport=record)
    [(_, _, code, received)] = [
        e for r in recorders for e in r.exchanges if e[0] == "/v1/join/node"
    ]
    assert code == 406
    refusal = JoinRefusal.model_validate_json(received)
    assert set(json.loads(received)) == {"description", "error_code", "error_details"}
    assert compact_json(refusal.to_wire()) == received
    assert refusal.error_code == "rack_id_required"


MESSAGES: list[tuple[type[WireMessage], Callable[[Any], bytes], dict[str, Any]]] = [
    (
        JoinRefusal,
        compact_json,
        {
            "description": "d",
            "error_code": "time_not_sync",
            "error_details": {"message": "d", "offset_ms": 1.5, "member": "10.0.0.1"},
        },
    ),
    (TimeReply, compact_json, {"t1": 1.25, "t2": 2.5, "t3": 3.75}),
]


@pytest.mark.parametrize(("kind", "encode", "document"), MESSAGES)
def test_messages_decode_and_encode_to_the_same_bytes(
    kind: type[WireMessage], encode: Callable[[Any], bytes], document: dict[str, Any]
) -> None:
    raw = encode(document)
    assert encode(kind.model_validate_json(raw).to_wire()) == raw


def test_a_newer_peer_may_add_fields() -> None:
    raw = compact_json({"t1": 1.0, "t2": 2.0, "t3": 3.0, "from_the_future": True})
    assert TimeReply.model_validate_json(raw) == TimeReply(t1=1.0, t2=2.0, t3=3.0)


async def test_the_granted_files_are_durable_before_the_local_state_names_the_cluster(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The join writes its certificates, keys and store credentials without waiting on the disk
    and syncs them while it reaches the store: a restart relies on them only once the local
    state exists, so they must be on disk first."""
    order: list[tuple[str, ...]] = []
    real_durable, real_save = key_files.make_durable, LocalState.save

    def durable(paths: Iterable[Path]) -> None:
        paths = list(paths)
        order.append(("durable", *sorted(p.name for p in paths)))
        real_durable(paths)

    def save(self: LocalState, data_dir: Path) -> None:
        order.append(("save",))
        real_save(self, data_dir)

    async with member_node(tmp_path) as member:
        monkeypatch.setattr(key_files, "make_durable", durable)
        monkeypatch.setattr(LocalState, "save", save)
        status = await join(tmp_path, member)
    assert status["state"] == "completed", status
    tls = DataDir(tmp_path / "joiner").cluster_tls
    granted = [
        tls.ca_file,
        tls.cert_file,
        tls.key_file,
        tls.store_cert_file,
        tls.store_key_file,
        tls.store_credentials_file,
    ]
    assert order[:2] == [("durable", *sorted(p.name for p in granted)), ("save",)]
