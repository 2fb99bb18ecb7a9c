"""join_cluster: the joining node's side.

Phases: `contacting` (reach a member, establish trust in the cluster CA), `handshake` (clock
measurement, then admission: the member checks the node, allocates its uid and signs its CSR),
`store` (install the certificate, become a client of the cluster store, write the node's own
record). The node joins as a store client, which takes well under a second; whether it later
runs an etcd voter is the cluster's decision (cluster/voters.py), made in the background.

The node key (a random id kept in the data dir across attempts) makes a retry idempotent: the
member answers a known key with the same uid.

The handshake's messages are the types of cluster/handshake.py. How the joiner reaches the member
(HTTP transport) and the store (store opener) is a `JoinWiring`: the network and etcd in the
agent, an in-process ASGI app and a memory store in unit tests.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from pydantic import ValidationError

from cnm import SOFTWARE_VERSION
from cnm.bootstrap.member_link import (
    MemberLink,
    MemberUnavailable,
    PeerCertificate,
    TransportFactory,
    connect,
    network_transport,
    tls_peer_certificate,
)
from cnm.bootstrap.node_setup import (
    Progress,
    check_node_paths,
    node_record,
    node_settings,
    storage_paths,
)
from cnm.bootstrap.schema import BootstrapRequest
from cnm.bootstrap.store_data import check_store_data, clobber_store_data
from cnm.cluster import model
from cnm.cluster.handshake import ClockReading, JoinGrant, JoinRequest
from cnm.cluster.health import heartbeat_put
from cnm.cluster.records import NodeRecord
from cnm.cluster.runtime import ETCD_BACKEND, ClusterRuntime, StoreBackend
from cnm.cluster.writes import update_record
from cnm.config import NodeConfig
from cnm.errors import ConfigError
from cnm.failpoints import failpoint
from cnm.logs import event
from cnm.node.data_dir import DataDir
from cnm.node.local_state import LocalState, atomic_write_bytes
from cnm.security import key_files
from cnm.store import etcd_auth
from cnm.store.base import Put

log = logging.getLogger(__name__)

DEFAULT_ATTEMPTS = 3
DEFAULT_RETRY_TIME = 2.0


@dataclass(frozen=True)
class JoinWiring:
    """How a join reaches the member it asks (the store it then joins comes from the
    `StoreBackend`)."""

    transport: TransportFactory = network_transport
    # The member's certificate as this node saw it (the password proof's channel binding).
    peer_certificate: PeerCertificate = tls_peer_certificate


# The agent's wiring: the network.
NETWORK_WIRING = JoinWiring()


def node_key(data_dir: Path) -> str:
    """This node's join identity, made once and kept (a retry must present the same key)."""
    path = DataDir(data_dir).node_key_file
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        key = secrets.token_hex(16)
        atomic_write_bytes(path, key.encode())
        return key


def check_join_request(
    config: NodeConfig, req: BootstrapRequest, *, leftovers: tuple[str, ...] = ()
) -> None:
    """The checks of join that need no cluster."""
    paths = storage_paths(config, req)
    check_node_paths(paths, req)
    check_store_data(paths, req, leftovers=leftovers)
    if req.credentials.client_cert or req.credentials.client_key:
        raise ConfigError(
            "credentials: joining with a client certificate is not supported by this version "
            "of cnm; give the username and password of a cluster admin",
            fields=["credentials.client_cert"],
        )


async def join_cluster(
    config: NodeConfig,
    req: BootstrapRequest,
    progress: Progress,
    wiring: JoinWiring = NETWORK_WIRING,
    *,
    backend: StoreBackend = ETCD_BACKEND,
) -> ClusterRuntime:
    check_join_request(config, req)
    paths = storage_paths(config, req)
    clobber_store_data(paths, req)
    auth = (req.credentials.username or "", req.credentials.password or "")
    identity = req.node.identity
    attempts = req.max_retries if req.max_retries is not None else DEFAULT_ATTEMPTS
    retry_time = float(req.retry_time if req.retry_time is not None else DEFAULT_RETRY_TIME)

    progress.phase("contacting")
    link = await connect(
        list(req.cluster.nodes),
        default_port=req.cnm_https_port or config.https_port,
        pinned_fingerprint=req.cluster.ca_fingerprint,
        local_address=config.addr,
        attempts=attempts,
        retry_time=retry_time,
        transport_factory=wiring.transport,
        peer_certificate=wiring.peer_certificate,
    )
    try:
        # The member proves itself before its CA is trusted or shown; no password is sent.
        await link.prove(auth[0], auth[1], pinned=bool(req.cluster.ca_fingerprint))
        if not req.cluster.ca_fingerprint:
            log.warning(
                "trusting the cluster CA of %s, which proved it knows the admin password: "
                "SHA-256 %s (pin it with cluster.ca_fingerprint)",
                link.url,
                link.fingerprint,
                extra=event("ca_trusted", member=link.url, fingerprint=link.fingerprint),
            )
        progress.note(ca_fingerprint=link.fingerprint, member=link.url)
        failpoint("join.after_ca_trusted")

        progress.phase("handshake")
        offset_ms, uncertainty_ms = await link.measure_clock(auth)
        # No CSR: the member makes the node's key with its certificate (and decides its names).
        record = node_record(config, req, paths, 0)
        try:
            request = JoinRequest(
                node_key=node_key(config.data_dir),
                addr=config.addr,
                external_addr=list(identity.external_addr),
                rack_id=identity.rack_id or None,
                second_rack_id=identity.second_rack_id or None,
                node_settings=node_settings(config),
                software_version=SOFTWARE_VERSION,
                required_version=req.required_version,
                clock=ClockReading(offset_ms=offset_ms, uncertainty_ms=uncertainty_ms),
                record=record,
                replace_uid=identity.uid,
                override_repair=bool(req.override_repair),
                total_memory=_int_fact(record, "total_memory"),
                flash_size=(
                    _int_fact(record, "bigredis_storage_size")
                    if req.node.bigstore_enabled
                    else None
                ),
            )
        except ValidationError as exc:
            raise _out_of_limits(exc) from None
        grant = await admitted(link, request, auth, attempts=attempts, retry_time=retry_time)
        failpoint("join.after_admission")
    finally:
        await link.close()

    progress.phase("store")
    uid = grant.uid
    tls = DataDir(config.data_dir).cluster_tls
    progress.created(tls.directory)
    tls.directory.mkdir(parents=True, exist_ok=True)
    # Written now (the store client reads them), made durable while the store is reached: only
    # the local state, saved after that, makes a restart rely on them.
    written = [tls.ca_file, tls.cert_file, tls.key_file]
    # The CA this node trusted on the link (grant checked against it), not the grant's bytes.
    key_files.write_public(tls.ca_file, link.ca_pem, durable=False)
    key_files.write_public(tls.cert_file, grant.cert_pem.encode(), durable=False)
    assert grant.key_pem is not None  # link.check_grant
    key_files.write_private(tls.key_file, grant.key_pem.encode(), durable=False)
    link.check_issued(tls.cert_file, tls.key_file)
    if grant.store_password and grant.store_cert_pem and grant.store_key_pem:
        key_files.write_public(tls.store_cert_file, grant.store_cert_pem.encode(), durable=False)
        key_files.write_private(tls.store_key_file, grant.store_key_pem.encode(), durable=False)
        credentials = etcd_auth.StoreCredentials(etcd_auth.node_user(uid), grant.store_password)
        etcd_auth.save_credentials(tls.store_credentials_file, credentials, durable=False)
        written += [tls.store_cert_file, tls.store_key_file, tls.store_credentials_file]
    failpoint("join.after_certs_written")
    local = LocalState(
        cluster_uuid=str(grant.cluster_uuid),
        cluster_name=str(grant.cluster_name),
        node_uid=uid,
        store_endpoints=tuple(grant.store_endpoints),
        runs_store_member=False,
        member_name=f"node-{uid}",
        initial_cluster="",
        initial_cluster_state="existing",
        cluster_token=str(grant.cluster_uuid),
        persistent_path=paths.persistent_path,
        ephemeral_path=paths.ephemeral_path,
        bigstore_path=paths.bigstore_path,
        ccs_persistent_path=paths.ccs_persistent_path,
    )
    store = backend.open_store(local.store_endpoints, tls)
    syncing = asyncio.create_task(asyncio.to_thread(key_files.make_durable, written))
    try:
        runtime = ClusterRuntime(config, local, store, None, backend=backend)
        complete = partial(_complete_record, uid, record)

        known = _admitted_record(grant)

        async def complete_with(liveness: Put) -> int:
            also = [liveness, heartbeat_put(uid)]
            _, revision = await update_record(
                store, model.node_key(uid), NodeRecord, complete, also=also, known=known
            )
            return revision

        # Alive when complete, in one transaction: the record must never read as a failed
        # node (cluster/repair.py). The first heartbeat too: every node of the cluster gets
        # one change for the three instead of three (cluster/health.py). The record as the
        # member wrote it and the lease it granted spare two store round trips.
        await runtime.take_liveness(complete_with, granted=grant.liveness_lease)
        failpoint("join.after_record_completed")
        await syncing
        local.save(config.data_dir)
        await runtime.load()
    except BaseException:
        # Waited for without raising: a cancellation of this task must not be swallowed here.
        syncing.cancel()
        await asyncio.wait([syncing])
        if not syncing.cancelled():
            syncing.exception()  # retrieved: a failed sync is moot once the join failed
        await store.close()
        raise
    log.info(
        "joined cluster %s as node %d through %s",
        local.cluster_name,
        uid,
        link.url,
        extra=event("joined", uid=uid, member=link.url),
    )
    return runtime


async def admitted(
    link: MemberLink,
    request: JoinRequest,
    auth: tuple[str, str],
    *,
    attempts: int,
    retry_time: float,
) -> JoinGrant:
    """The member's grant, asked for again `retry_time` seconds apart (`attempts` times in all,
    the join's `max_retries`) while the member answers 503: its store is electing a leader or
    its signer failed, which a moment cures. Asking again is safe: the node key makes the
    member find the uid it may already have allocated (cluster/membership.py)."""
    for attempt in range(1, attempts):
        try:
            return await link.admit(request, auth)
        except MemberUnavailable as exc:
            log.info(
                "%s (attempt %d of %d); asking again in %.1f s",
                exc.message,
                attempt,
                attempts,
                retry_time,
                extra=event("admission_retry", member=link.url, attempt=attempt),
            )
            await asyncio.sleep(retry_time)
    return await link.admit(request, auth)  # the last attempt: its failure is the join's


def _out_of_limits(exc: ValidationError) -> ConfigError:
    """The request is checked here against the limits the member applies: a value out of them
    is this node's configuration error, named by its field, not a refusal to decode."""
    names = sorted({str(e["loc"][0]) for e in exc.errors() if e["loc"]})
    return ConfigError(
        f"the join request cannot carry {', '.join(names)}: out of the limits of the join "
        "handshake",
        fields=names,
    )


def _admitted_record(grant: JoinGrant) -> tuple[NodeRecord, int] | None:
    """The node record the member wrote at admission and its revision, when the grant has
    them (a record that does not decode is read from the store instead)."""
    if grant.record is None or grant.record_revision <= 0:
        return None
    try:
        return NodeRecord.model_validate(grant.record), grant.record_revision
    except ValidationError:
        return None


def _int_fact(record: dict[str, object], name: str) -> int | None:
    value = record.get(name)
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _complete_record(uid: int, facts: dict[str, object], record: NodeRecord) -> NodeRecord:
    """Complete the record the member wrote at admission with this node's own facts. The rack
    is the member's to decide (a replacement keeps the failed node's unless it gave one)."""
    facts = {k: v for k, v in facts.items() if k not in ("rack_id", "second_rack_id")}
    document = {**record.document(), **facts, "uid": uid}
    document.pop("joining", None)
    return NodeRecord.model_validate(document)
