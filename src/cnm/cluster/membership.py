"""Admission of a joining node, on the member that the joiner contacted.

The joiner sends its facts (a `JoinRequest`, cluster/handshake.py: addr, rack, node settings,
memory, software version, measured clock offset, a CSR and its node key). `admit` checks them in
the order an operator would want to fix them (license, version, rack, node settings, clock), each
failure with its documented error code and structured details, then allocates the node's uid and
signs its certificate (a `JoinGrant`).

Uids come from a counter in the store, advanced in a compare-and-set transaction that also writes
the node record and the node-key index, so a node is never half-added and a uid is never reused.
The index makes a retried join idempotent: the same node key gets the same uid and record. Joins
arriving at one member are allocated one at a time under an asyncio lock (no lost races among
themselves); joins through different members race in the store and the loser retries.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import ipaddress
import logging
import re
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pydantic import ValidationError

from cnm import SOFTWARE_VERSION
from cnm.cluster import model
from cnm.cluster.handshake import JoinGrant, JoinRequest, RenewGrant, RenewRequest
from cnm.cluster.license import check_license_for_join
from cnm.cluster.records import ClusterRecord, NodeKeyIndex, NodeRecord, StoreRole, UidCounter
from cnm.cluster.repair import plan_join, replace_node
from cnm.cluster.snapshot import ClusterSnapshot
from cnm.cluster.writes import UidClaim, allocate_uid
from cnm.errors import (
    ConfigError,
    InvalidSchema,
    NodeConfigMismatch,
    RackIdRequired,
    SocketDirectoryMismatch,
    StoreUnavailable,
    TimeNotSync,
    Unauthorized,
)
from cnm.failpoints import failpoint
from cnm.security import cert_facts, node_certs, signing
from cnm.store import etcd_auth
from cnm.store.base import Compare, Get, Put, Store, TxnResult

log = logging.getLogger(__name__)

ALLOCATION_ATTEMPTS = 50
SETTING_FIELDS = ("socket_dir", "conf_dir", "install_dir", "os_user")


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text.split("-", maxsplit=1)[0]))


def check_admission(
    snapshot: ClusterSnapshot,
    request: JoinRequest,
    *,
    member_addr: str,
    now: datetime,
    member_uid: int | None = None,
) -> NodeRecord | None:
    """Every check of a joiner against the cluster; raises the documented failure. Returns the
    failed node the joiner replaces (cluster/repair.py), None for a new node or a retry."""
    cluster = snapshot.cluster() or ClusterRecord()
    nodes = snapshot.nodes()
    known = snapshot.node_uid_for_key(request.node_key)
    # A retried join (known key) was decided already; a replacement adds no node.
    # An address that is another node's is wrong whatever the cluster's state: checked first.
    # The node a replacement names may keep its addresses (plan_join then checks that it may be
    # replaced at all).
    check_addresses(
        snapshot,
        request,
        admitted_as=known,
        replaces=request.replace_uid if known is None else None,
    )
    replaced = plan_join(snapshot, request, member_uid=member_uid) if known is None else None
    license = snapshot.license()
    if license is not None and known is None:
        check_license_for_join(license, len(nodes) - (replaced is not None), now)

    if request.required_version and _version_tuple(SOFTWARE_VERSION) < _version_tuple(
        request.required_version
    ):
        raise ConfigError(
            f"required_version: the cluster runs {SOFTWARE_VERSION}, older than the required "
            f"{request.required_version}; upgrade the cluster or lower required_version",
            fields=["required_version"],
        )

    if cluster.rack_aware and not request.rack_id and replaced is None:
        racks = sorted({n.rack_id for n in nodes if n.rack_id})
        raise RackIdRequired(
            "node.identity.rack_id: this cluster is rack-aware, so a joining node needs a "
            f"rack_id (racks in use: {', '.join(racks) or 'none'})",
            current_rack_ids=racks,
        )

    expected = cluster.node_settings.values()
    mismatches = [
        {
            "field": field,
            "cluster_value": expected[field],
            "node_value": request.node_settings.get(field),
        }
        for field in SETTING_FIELDS
        if field in expected and request.node_settings.get(field) != expected[field]
    ]
    if mismatches:
        listed = "; ".join(
            f"{m['field']}: cluster has {m['cluster_value']!r}, node has {m['node_value']!r}"
            for m in mismatches
        )
        error = (
            SocketDirectoryMismatch
            if any(m["field"] == "socket_dir" for m in mismatches)
            else NodeConfigMismatch
        )
        raise error(
            f"node settings differ from the cluster's ({listed}); start the agent with the "
            "cluster's values",
            mismatches=mismatches,
        )

    max_offset = cluster.max_clock_offset
    offset, uncertainty = request.clock.offset_ms, request.clock.uncertainty_ms
    # Only a clock that is off by more than the limit even at the measurement's most favourable
    # reading fails: the measurement error must not fail a synchronised node.
    if abs(offset) - uncertainty > max_offset * 1000:
        raise TimeNotSync(
            f"the joining node's clock is {offset:+.0f} ms off the cluster's (±{uncertainty:.0f} "
            f"ms, measured against {member_addr}); the limit is {max_offset * 1000:.0f} ms: "
            "synchronise the node's clock (NTP) and retry",
            offset_ms=round(offset, 1),
            uncertainty_ms=round(uncertainty, 1),
            max_offset_ms=round(max_offset * 1000, 1),
            member=member_addr,
        )
    return replaced


def certificate_names(request: JoinRequest) -> list[str]:
    """The SANs a member puts in a joiner's certificate: its addresses as the cluster records
    them (node_certs.node_cert_sans), never what its CSR asks for. Only IP addresses: a DNS name
    (or a wildcard) is nothing a member can check."""
    for field, values in (("addr", [request.addr]), ("external_addr", request.external_addr)):
        for value in values:
            try:
                ipaddress.ip_address(value)
            except ValueError:
                raise ConfigError(
                    f"node.identity.{field}: {value[:80]!r} is not an IP address; a node "
                    "certificate names the node's IP addresses only",
                    fields=[f"node.identity.{field}"],
                ) from None
    return node_certs.node_cert_sans(request.addr, request.external_addr)


def check_addresses(
    snapshot: ClusterSnapshot,
    request: JoinRequest,
    *,
    admitted_as: int | None,
    replaces: int | None = None,
) -> None:
    """No address the joiner claims may be another node's: its certificate would carry it and
    let it impersonate that node (HTTPS, etcd peer links). The node's own earlier admission
    (`admitted_as`, a retried join) and the node a repair join replaces (`replaces`) do not
    count. Alive or not: a dead node keeps its address until it is removed or replaced.
    (127.0.0.1, which every loopback node's certificate also carries for etcd, is not claimed.)
    """
    claimed = {request.addr, *request.external_addr}
    certificate_names(request)
    for node in snapshot.nodes():
        if node.uid in (admitted_as, replaces):
            continue
        taken = claimed & {node.addr, *node.external_addr}
        if taken:
            state = "alive" if snapshot.is_alive(node.uid) else "not alive"
            raise ConfigError(
                f"node.identity.addr: {', '.join(sorted(taken))} is already node {node.uid} of "
                f"this cluster ({state}) under another identity: a certificate for it would "
                "impersonate that node; give this node another address, or remove node "
                f"{node.uid} (or replace it) first",
                fields=["node.identity.addr"],
            )


class Admissions:
    """Allocates uids for joins arriving at this member, one at a time."""

    def __init__(
        self,
        store: Store,
        snapshot: ClusterSnapshot,
        *,
        uid: int = 0,
        cert_lifetime: timedelta | None = None,
    ) -> None:
        self._store = store
        self._snapshot = snapshot
        # This member's uid: it holds the store-change lock under it during a replacement.
        self._uid = uid
        self._cert_lifetime = (
            node_certs.NODE_CERT_LIFETIME if cert_lifetime is None else cert_lifetime
        )
        self._lock = asyncio.Lock()
        # The last node uid this member allocated (0: none yet).
        self._allocated = 0

    async def renew(self, request: RenewRequest) -> RenewGrant:
        """A node's certificate renewal (`renew_certificate`) with this member's lifetime."""
        self._snapshot.require_fresh()
        return await renew_certificate(self._snapshot, request, lifetime=self._cert_lifetime)

    async def admit(self, request: JoinRequest, *, member_addr: str) -> JoinGrant:
        """Check the joiner, allocate (or find again) its uid and sign its certificate."""
        self._snapshot.require_fresh()
        replaced = check_admission(
            self._snapshot,
            request,
            member_addr=member_addr,
            now=datetime.now(UTC),
            member_uid=self._uid or None,
        )
        ca_record = self._snapshot.ca()
        if ca_record is None:
            raise StoreUnavailable("the cluster CA is not in this node's snapshot yet; retry")
        ca = node_certs.CertKey(ca_record.cert_pem.encode(), ca_record.key_pem.encode())
        if request.csr_pem is not None:
            # Only the CSR's key is used, but a bad CSR is refused before a uid is spent on it.
            await signing.check_csr(request.csr_pem.encode())
        else:
            # Likewise a signer that cannot work: refused before anything is written.
            await signing.ready()
        async with self._lock:
            written: _Written | None = None
            if replaced is not None:
                await replace_node(self._store, self._snapshot, request, replaced, holder=self._uid)
                uid, created = replaced.uid, True
            else:
                uid, created, written = await self._allocate(request)
        failpoint("member.after_uid_allocated")
        # The node's own etcd user, with a fresh password: for a retried join or a replacement
        # the old password stops opening anything here. Its liveness lease in the same round
        # trip: the joiner then has one store write fewer to make before it is complete.
        store_password = etcd_auth.new_password()
        lease = await _together(
            self._store.put_store_user(etcd_auth.node_user(uid), store_password),
            self._store.lease_grant(model.LIVENESS_TTL),
        )
        store_cert = await signing.issue_store_client_cert(ca, uid)
        node_key_pem: bytes | None = None
        if request.csr_pem is not None:
            certificate = await signing.sign_node_csr(
                ca,
                request.csr_pem.encode(),
                uid=uid,
                sans=certificate_names(request),
                lifetime=self._cert_lifetime,
            )
        else:
            # The key is made here and sent over the admission's authenticated channel, like the
            # store client's: this member holds the CA key, so it could certify any key anyway.
            issued = await signing.issue_node_cert(
                ca, uid, certificate_names(request), lifetime=self._cert_lifetime
            )
            certificate, node_key_pem = issued.cert_pem, issued.key_pem
        # The decision's info line is the admission route's (cnm.ops.metrics.admission).
        log.debug(
            "%s node %d at %s (node key %s…)",
            "admitted" if created else "re-admitted",
            uid,
            request.addr,
            request.node_key[:8],
        )
        cluster = self._snapshot.cluster()
        grant = JoinGrant(
            uid=uid,
            cert_pem=certificate.decode(),
            key_pem=node_key_pem.decode() if node_key_pem is not None else None,
            ca_pem=ca.cert_pem.decode(),
            ca_fingerprint=cert_facts.fingerprint_sha256(ca.cert_pem),
            # Not the replaced voter's (this snapshot may not show its new record yet).
            store_endpoints=[
                url
                for url in self.store_endpoints()
                if replaced is None or url != replaced.store_client_url
            ],
            cluster_name=cluster.name if cluster else None,
            cluster_uuid=cluster.uuid if cluster else None,
            store_password=store_password,
            store_cert_pem=store_cert.cert_pem.decode(),
            store_key_pem=store_cert.key_pem.decode(),
            record=written.record.document() if written else None,
            record_revision=written.revision if written else 0,
            liveness_lease=lease,
        )
        failpoint("member.before_answer")
        return grant

    def store_endpoints(self) -> list[str]:
        """Client URLs of the store's voters, from the node records."""
        return [
            node.store_client_url
            for node in self._snapshot.nodes()
            if node.store_role is StoreRole.VOTER and node.store_client_url
        ]

    async def _allocate(self, request: JoinRequest) -> tuple[int, bool, _Written | None]:
        """(uid, created, the record written and its revision: None for a re-admission)."""
        index_key = model.node_key_index(request.node_key)
        claimed: dict[int, NodeRecord] = {}

        def claim(uid: int) -> UidClaim:
            record = NodeRecord.model_validate(
                {
                    **request.record,
                    "uid": uid,
                    "addr": request.addr,
                    "external_addr": request.external_addr,
                    "rack_id": request.rack_id or "",
                    "second_rack_id": request.second_rack_id or "",
                    "node_settings": request.node_settings,
                    "software_version": request.software_version,
                    "store_role": StoreRole.CLIENT,
                    "joining": True,
                }
            )
            claimed[uid] = record
            return UidClaim(
                compares=[Compare.absent(index_key)],
                ops=[
                    Put(index_key, NodeKeyIndex(uid=uid).encode()),
                    Put(model.node_key(uid), record.encode()),
                ],
                reads=[Get(index_key)],
            )

        def lost(result: TxnResult) -> int | None:
            # The same node key was admitted already (a retried join): its uid, not a new one.
            found = result.reads[0] if result.reads else []
            return NodeKeyIndex.decode(found[0].value).uid if found else None

        # The counter as last known: the snapshot's, or this member's own last allocation when
        # the watch has not brought that back yet (admissions here come one at a time).
        counter = self._snapshot.record(model.NODE_UID_COUNTER)
        seen = counter.last if isinstance(counter, UidCounter) else None
        if seen is not None and self._allocated > seen:
            seen = self._allocated
        try:
            allocated = await allocate_uid(
                self._store,
                model.NODE_UID_COUNTER,
                claim,
                lost=lost,
                what="the node uid counter",
                attempts=ALLOCATION_ATTEMPTS,
                last_seen=seen,
            )
        except ValidationError:
            raise InvalidSchema("invalid join request: record", fields=["record"]) from None
        if not allocated.created:
            return allocated.uid, False, None
        self._allocated = allocated.uid
        return (
            allocated.uid,
            True,
            _Written(claimed[allocated.uid], allocated.revision),
        )


@dataclass(frozen=True)
class _Written:
    """A node record this member wrote at admission, and the store revision of that write."""

    record: NodeRecord
    revision: int


async def _together(user: Awaitable[None], lease: Awaitable[int]) -> int:
    """Await both store calls at once; the first failure is raised once both ended (a lease
    granted for an admission that then fails expires unused)."""
    results = await asyncio.gather(user, lease, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    granted = results[1]
    assert isinstance(granted, int)
    return granted


async def renew_certificate(
    snapshot: ClusterSnapshot, request: RenewRequest, *, lifetime: timedelta
) -> RenewGrant:
    """A new certificate for a node that proves it holds its current one: the current
    certificate chains to the cluster CA and is valid now, names a node still in the cluster
    (`node:<uid>`; a removed node renews nothing), and its key signed the new CSR. The names
    come from the node's record, like at admission."""
    ca_record = snapshot.ca()
    if ca_record is None:
        raise StoreUnavailable("the cluster CA is not in this node's snapshot yet; retry")
    ca = node_certs.CertKey(ca_record.cert_pem.encode(), ca_record.key_pem.encode())
    current = request.cert_pem.encode()
    uid = cert_facts.certificate_uid(current)
    node = snapshot.node(uid) if uid is not None else None
    try:
        signature = base64.b64decode(request.signature, validate=True)
    except (binascii.Error, ValueError):
        signature = b""
    if (
        uid is None
        or node is None
        or not await signing.verify_chain(current, ca.cert_pem)
        or not await signing.verify_data(current, request.csr_pem.encode(), signature)
    ):
        raise Unauthorized(
            "certificate renewal refused: the certificate is not a valid node certificate of "
            "this cluster for a node still in it, or the CSR was not signed with its key"
        )
    sans = node_certs.node_cert_sans(node.addr, node.external_addr)
    cert = await signing.sign_node_csr(
        ca, request.csr_pem.encode(), uid=uid, sans=sans, lifetime=lifetime
    )
    return RenewGrant(cert_pem=cert.decode())
