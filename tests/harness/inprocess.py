"""A one-node cluster on a memory store, served by an in-process ASGI node, for fast join tests.

`member_node` writes the records a create_cluster writes (cluster, node 1, counters, the admin
user, a license, the CA) into a `MemoryStore`, and gives an api_node `Node` a `ClusterRuntime`
on that store, as a completed bootstrap would. `wiring_to(member)` is the `JoinWiring` of a
joiner that reaches that member's app in-process (no sockets, no TLS);
`memory_backend(member.store)` makes it join the same store.
`transport` lets a test put a transport of its own between the two (e.g. a skewed clock).
"""

from __future__ import annotations

import contextlib
import functools
import json
import ssl
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from cnm.bootstrap.join import JoinWiring
from cnm.bootstrap.node_setup import node_settings
from cnm.clock import utc_now
from cnm.cluster import model, records
from cnm.cluster.join_auth import verifier_record
from cnm.cluster.runtime import ClusterRuntime
from cnm.node.data_dir import DataDir
from cnm.node.local_state import LocalState
from cnm.security import cert_facts, join_proof, key_files, node_certs, pki
from cnm.security.passwords import hash_password
from cnm.store.memory import MemoryStore
from harness.api_node import Node, node_config, running_node
from harness.bodies import ADMIN

MEMBER_ADDR = "127.0.0.2"


def _encode(document: dict[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":"), sort_keys=True).encode()


@functools.cache
def admin_hash() -> str:
    # Hashing costs ~0.4 s of CPU; every member of a test run can share the one hash.
    return hash_password(ADMIN[1])


@functools.cache
def admin_verifier() -> records.JoinVerifierRecord:
    # One argon2id run, shared like the hash.
    return verifier_record(join_proof.make_verifier(ADMIN[1]))


@dataclass
class Member:
    node: Node
    store: MemoryStore

    @property
    def addr(self) -> str:
        return self.node.config.addr


async def seed_cluster(
    store: MemoryStore,
    member: Node,
    *,
    rack_aware: bool = False,
    license: records.LicenseRecord | dict[str, Any] | None = None,
    verifier: bool = True,
) -> LocalState:
    """The records of a fresh one-node cluster whose node 1 is `member` (its admin without a
    join verifier, as made by an earlier version, when not `verifier`), and node 1's
    certificate in its data dir (what its HTTPS would serve: the proof's channel binding)."""
    config = member.config
    now = utc_now()
    ca = pki.make_ca("inprocess.example.com")
    tls = DataDir(config.data_dir).cluster_tls
    tls.directory.mkdir(parents=True, exist_ok=True)
    node_cert = pki.issue_node_cert(ca, 1, node_certs.node_cert_sans(config.addr, []))
    key_files.write_public(tls.ca_file, ca.cert_pem)
    key_files.write_public(tls.cert_file, node_cert.cert_pem)
    key_files.write_private(tls.key_file, node_cert.key_pem)
    cluster_uuid = str(uuid.uuid4())
    settings = node_settings(config)
    cluster = records.cluster_record(
        name="inprocess.example.com",
        uuid=cluster_uuid,
        created=now,
        rack_aware=rack_aware,
        policy={"rack_aware": rack_aware},
        wait_command=False,
        http_port=config.http_port,
        https_port=config.https_port,
        node_settings=settings,
        ca_fingerprint=cert_facts.fingerprint_sha256(ca.cert_pem),
    )
    node = {
        "uid": 1,
        "addr": config.addr,
        "rack_id": "rack-a" if rack_aware else "",
        "node_settings": settings,
        "store_role": "voter",
        "store_client_url": f"https://{config.addr}:{config.etcd_client_port}",
    }
    documents: dict[str, Any] = {
        model.CLUSTER_KEY: cluster,
        model.node_key(1): node,
        model.NODE_UID_COUNTER: {"last": 1},
        model.user_key(1): records.admin_user_record(
            email=ADMIN[0],
            password_hash=admin_hash(),
            created=now,
            join_verifier=admin_verifier() if verifier else None,
        ),
        model.login_key(ADMIN[0]): {"uid": 1},
        model.USER_UID_COUNTER: {"last": 1},
        model.LICENSE_KEY: license
        or records.trial_license(cluster_name="inprocess.example.com", activated=now),
        model.CA_KEY: {"cert_pem": ca.cert_pem.decode(), "key_pem": ca.key_pem.decode()},
        # Node 1 is up (no lease: the runtime's liveness loop does not run here), so the
        # cluster is not degraded (cluster/repair.py).
        model.liveness_key(1): {"uid": 1, "addr": config.addr},
    }
    for key, record in documents.items():
        raw = record.encode() if isinstance(record, records.Record) else _encode(record)
        await store.put(key, raw)
    return LocalState(
        cluster_uuid=cluster_uuid,
        cluster_name="inprocess.example.com",
        node_uid=1,
        store_endpoints=(str(node["store_client_url"]),),
        runs_store_member=False,
        member_name="node-1",
        initial_cluster="",
        initial_cluster_state="existing",
        cluster_token=cluster_uuid,
        persistent_path=str(config.persistent_path),
        ephemeral_path=str(config.ephemeral_path),
        bigstore_path=str(config.bigstore_path),
        ccs_persistent_path=str(config.persistent_path / "ccs"),
    )


@contextlib.asynccontextmanager
async def member_node(tmp_path: Path, **cluster: Any) -> AsyncIterator[Member]:
    """A member of a one-node cluster on a memory store (`cluster`: `seed_cluster` options)."""
    directory = tmp_path / "member"
    directory.mkdir()
    store = MemoryStore()
    async with running_node(node_config(directory, addr=MEMBER_ADDR)) as node:
        local = await seed_cluster(store, node, **cluster)
        runtime = ClusterRuntime(node.config, local, store, None)
        await runtime.load()
        node.manager.runtime = runtime
        yield Member(node, store)


TransportWrapper = Callable[[httpx.AsyncBaseTransport], httpx.AsyncBaseTransport]


def wiring_to(member: Member, transport: TransportWrapper | None = None) -> JoinWiring:
    """A joiner's wiring that reaches `member`'s app in-process and joins its memory store."""

    def make_transport(
        verify: ssl.SSLContext, local_address: str | None
    ) -> httpx.AsyncBaseTransport:
        del verify, local_address  # in-process: no TLS, no source address
        inner = httpx.ASGITransport(app=member.node.app)
        return transport(inner) if transport else inner

    def served_certificate(response: httpx.Response) -> bytes:
        # No TLS in-process: the certificate the member's HTTPS would have presented.
        del response
        cert = DataDir(member.node.config.data_dir).cluster_tls.cert_file.read_bytes()
        return cert_facts.certificate_der(cert)

    return JoinWiring(transport=make_transport, peer_certificate=served_certificate)


async def join_member(
    tmp_path: Path, member: Member, *, name: str = "joiner", **body: Any
) -> dict[str, Any]:
    """Join `member` from a fresh in-process node (its directory `tmp_path/name`) with a join
    body of `body`'s top-level keys; the joiner's final bootstrap_status."""
    from harness.api_node import memory_backend
    from harness.bodies import join_body

    directory = tmp_path / name
    directory.mkdir()
    request = join_body([MEMBER_ADDR], **body)
    backend = memory_backend(member.store)
    async with running_node(
        node_config(directory), join_wiring=wiring_to(member), backend=backend
    ) as joiner:
        response = await joiner.client.post("/v1/bootstrap/join_cluster", json=request)
        assert response.status_code == 200, response.text
        return await joiner.wait_state("completed", "error", auth=ADMIN)
