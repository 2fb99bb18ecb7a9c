"""create_cluster: make the cluster CA, start the first etcd member, write the cluster's records.

The steps, each a phase in the status record: `certificates` (cluster CA and this node's
certificate from it), `store` (etcd as the agent's child with mutual TLS, the admin's password
hashed meanwhile), `records` (cluster, node 1, admin user 1, trial license and the CA in one
transaction that only succeeds on an empty store), then the local state that makes a restart
rejoin. Everything created on disk is reported to `progress` so that a retry after a failure can
remove it first.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from cnm.bootstrap.schema import BootstrapRequest
from cnm.bootstrap.validation import check_paths
from cnm.clock import utc_now
from cnm.cluster import model
from cnm.cluster.license import verify_license_text
from cnm.cluster.runtime import (
    ETCD_BACKEND,
    ClusterRuntime,
    ClusterTls,
    StoreBackend,
    member_spec,
    node_cert_sans,
)
from cnm.config import NodeConfig
from cnm.errors import ConfigError, PathError
from cnm.node.facts import StoragePaths, node_facts_for_record
from cnm.node.local_state import LocalState
from cnm.security import pki
from cnm.security.passwords import hash_password
from cnm.store.base import Compare, Put

MEMBER_DATA_DIR = "etcd"


class Progress(Protocol):
    """What a bootstrap action reports while it runs; each call is persisted."""

    def phase(self, name: str) -> None: ...

    def created(self, path: Path) -> None: ...

    def note(self, **notes: str) -> None: ...

    @property
    def start_time(self) -> datetime: ...


def storage_paths(config: NodeConfig, req: BootstrapRequest) -> StoragePaths:
    """The request's paths where given, the agent's configured ones otherwise."""
    given = req.node.paths
    persistent = given.persistent_path or str(config.persistent_path)
    return StoragePaths(
        persistent_path=persistent,
        ephemeral_path=given.ephemeral_path or str(config.ephemeral_path),
        bigstore_path=given.bigstore_path or str(config.bigstore_path),
        ccs_persistent_path=given.ccs_persistent_path or str(Path(persistent) / "ccs"),
    )


def check_node_paths(paths: StoragePaths, req: BootstrapRequest) -> None:
    """path_error for a path this node needs that is missing or not writable. The flash path
    only matters when flash is enabled; the store path may be created inside the persistent one."""
    needed = {
        "node.paths.persistent_path": paths.persistent_path,
        "node.paths.ephemeral_path": paths.ephemeral_path,
    }
    if req.node.bigstore_enabled and paths.bigstore_path:
        needed["node.paths.bigstore_path"] = paths.bigstore_path
    if req.node.paths.ccs_persistent_path:
        needed["node.paths.ccs_persistent_path"] = paths.ccs_persistent_path
    check_paths(needed)


def node_settings(config: NodeConfig) -> dict[str, str]:
    return {
        "socket_dir": str(config.socket_dir),
        "conf_dir": str(config.conf_dir),
        "install_dir": str(config.install_dir),
        "os_user": config.os_user,
    }


def node_record(
    config: NodeConfig, req: BootstrapRequest, paths: StoragePaths, uid: int
) -> dict[str, object]:
    identity = req.node.identity
    record: dict[str, object] = {
        "uid": uid,
        "addr": config.addr,
        "external_addr": list(identity.external_addr),
        "rack_id": identity.rack_id or "",
        "second_rack_id": identity.second_rack_id or "",
        "accept_servers": identity.accept_servers,
        "max_listeners": req.node.limits.max_listeners,
        "max_redis_servers": req.node.limits.max_redis_servers,
        "bigstore_enabled": bool(req.node.bigstore_enabled),
        "bigstore_driver": req.node.bigstore_driver or "",
        "shard_count": 0,
        "ccs_persistent_path": paths.ccs_persistent_path,
        "node_settings": node_settings(config),
    }
    record.update(node_facts_for_record(paths=paths, addr=config.addr))
    return record


def license_for_create(
    config: NodeConfig, req: BootstrapRequest, now: datetime
) -> dict[str, Any] | None:
    """The record of the request's license, checked for a one-node cluster of the request's name
    (raises `InvalidLicense`); None when the request asks for the trial license."""
    if not (req.license and req.license.strip()):
        return None
    return verify_license_text(
        req.license, config.license_public_keys, req.cluster.name or "", now, node_count=1
    )


def check_create_request(
    config: NodeConfig, req: BootstrapRequest, *, leftovers: tuple[str, ...] = ()
) -> tuple[StoragePaths, dict[str, Any] | None]:
    """The checks of create that need no cluster: paths, license, rack. Raises the failure;
    returns the node's paths and the verified license record (None: the trial). `leftovers` are
    paths a failed attempt of this node created: a retry removes them first, so they are no
    obstacle."""
    paths = storage_paths(config, req)
    check_node_paths(paths, req)
    license = license_for_create(config, req, utc_now())
    if req.policy.rack_aware and not req.node.identity.rack_id:
        raise ConfigError(
            "node.identity.rack_id: required when policy.rack_aware is true (every node of a "
            "rack-aware cluster needs a rack id)",
            fields=["node.identity.rack_id"],
        )
    member_dir = Path(paths.ccs_persistent_path) / MEMBER_DATA_DIR
    if member_dir.exists() and str(member_dir) not in leftovers:
        raise PathError(
            f"node.paths.ccs_persistent_path: {member_dir} already holds cluster-store data "
            "that this node did not create in its current attempt; remove it or give another "
            "ccs_persistent_path",
            path=str(member_dir),
            field="node.paths.ccs_persistent_path",
        )
    return paths, license


async def create_cluster(
    config: NodeConfig,
    req: BootstrapRequest,
    progress: Progress,
    *,
    backend: StoreBackend = ETCD_BACKEND,
) -> ClusterRuntime:
    paths, license = check_create_request(config, req)
    name = req.cluster.name or ""
    password = req.credentials.password or ""
    username = req.credentials.username or ""

    progress.phase("certificates")
    tls = ClusterTls.under(config.data_dir)
    progress.created(tls.directory)
    tls.directory.mkdir(parents=True, exist_ok=True)
    ca = pki.make_ca(name)
    sans = node_cert_sans(config.addr, req.node.identity.external_addr)
    node_cert = pki.issue_cert(ca, f"cnm node {config.addr}", sans)
    pki.write_public(tls.ca_file, ca.cert_pem)
    pki.write_public(tls.cert_file, node_cert.cert_pem)
    pki.write_private(tls.key_file, node_cert.key_pem)

    progress.phase("store")
    cluster_uuid = str(uuid.uuid4())
    member_name = "node-1"
    local = LocalState(
        cluster_uuid=cluster_uuid,
        cluster_name=name,
        node_uid=1,
        store_endpoints=(f"https://{config.host}:{config.etcd_client_port}",),
        runs_store_member=True,
        member_name=member_name,
        initial_cluster=f"{member_name}=https://{config.host}:{config.etcd_peer_port}",
        initial_cluster_state="new",
        cluster_token=cluster_uuid,
        persistent_path=paths.persistent_path,
        ephemeral_path=paths.ephemeral_path,
        bigstore_path=paths.bigstore_path,
        ccs_persistent_path=paths.ccs_persistent_path,
    )
    spec = member_spec(config, local, tls)
    progress.created(spec.data_dir)
    member = backend.make_member(config.etcd_binary, spec)
    # Hashing costs tens of milliseconds: do it while etcd elects itself.
    hashing = asyncio.create_task(asyncio.to_thread(hash_password, password))
    store = backend.open_store(local.store_endpoints, tls)
    try:
        await member.start()
        await member.wait_ready(store)
        password_hash = await hashing

        progress.phase("records")
        start = progress.start_time
        rack_aware = bool(req.policy.rack_aware)
        records = [
            Put(
                model.CLUSTER_KEY,
                model.encode(
                    model.cluster_record(
                        name=name,
                        uuid=cluster_uuid,
                        created=start,
                        rack_aware=rack_aware,
                        policy=req.policy.model_dump(exclude_none=True),
                        wait_command=req.cluster.wait_command,
                        http_port=config.http_port,
                        https_port=config.https_port,
                        node_settings=node_settings(config),
                        ca_fingerprint=pki.fingerprint_sha256(ca.cert_pem),
                    )
                ),
            ),
            Put(
                model.node_key(1),
                model.encode(
                    {
                        **node_record(config, req, paths, 1),
                        "store_role": "voter",
                        "store_client_url": spec.client_url,
                        "store_peer_url": spec.peer_url,
                    }
                ),
            ),
            Put(model.NODE_UID_COUNTER, model.encode({"last": 1})),
            Put(
                model.user_key(1),
                model.encode(
                    model.admin_user_record(
                        email=username, password_hash=password_hash, created=start
                    )
                ),
            ),
            Put(model.login_key(username), model.encode({"uid": 1})),
            Put(model.USER_UID_COUNTER, model.encode({"last": 1})),
            Put(
                model.LICENSE_KEY,
                model.encode(license or model.trial_license(cluster_name=name, activated=start)),
            ),
            Put(
                model.CA_KEY,
                model.encode({"cert_pem": ca.cert_pem.decode(), "key_pem": ca.key_pem.decode()}),
            ),
        ]
        result = await store.txn([Compare.absent(model.CLUSTER_KEY)], records)
        if not result.succeeded:
            raise ConfigError(
                "the new cluster store already holds a cluster record; remove "
                f"{spec.data_dir} and retry",
            )
        local.save(config.data_dir)
        runtime = ClusterRuntime(config, local, store, member, backend=backend)
        await runtime.load()
        return runtime
    except BaseException:
        hashing.cancel()
        await store.close()
        await member.stop()
        raise
