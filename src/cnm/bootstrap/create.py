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
from datetime import datetime, timedelta

from cnm.bootstrap.node_setup import (
    Progress,
    check_node_paths,
    node_record,
    node_settings,
    storage_paths,
)
from cnm.bootstrap.schema import BootstrapRequest
from cnm.bootstrap.store_data import check_store_data, clobber_store_data
from cnm.clock import utc_now
from cnm.cluster import model
from cnm.cluster.join_auth import make_verifier_record
from cnm.cluster.license import check_license_text
from cnm.cluster.records import (
    CaSecret,
    LicenseRecord,
    NodeRecord,
    StoreRole,
    UidCounter,
    UserLoginIndex,
    admin_user_record,
    cluster_record,
    trial_license,
)
from cnm.cluster.runtime import ETCD_BACKEND, ClusterRuntime, StoreBackend, member_spec
from cnm.config import NodeConfig
from cnm.errors import ConfigError
from cnm.failpoints import failpoint
from cnm.node.data_dir import ClusterTls, DataDir
from cnm.node.facts import StoragePaths
from cnm.node.local_state import LocalState
from cnm.security import cert_facts, key_files, node_certs, signing
from cnm.security.passwords import hash_password
from cnm.store import etcd_auth
from cnm.store.base import Compare, Put, Store


async def enable_store_auth(
    store: Store, tls: ClusterTls, admin_password: str, *, uid: int
) -> None:
    """Switch the new store's access control on with this node as its first node user: its
    password kept in its data dir first, so the client authenticates as the node from then on.
    The caller then writes `admin_password` into the store (model.STORE_ADMIN_KEY) with the
    records: other nodes need it for member changes."""
    credentials = etcd_auth.StoreCredentials(etcd_auth.node_user(uid), etcd_auth.new_password())
    etcd_auth.save_credentials(tls.store_credentials_file, credentials)
    users = [(credentials.user, credentials.password)]
    await store.enable_access_control(admin_password, model.PREFIX, users)


async def license_for_create(
    config: NodeConfig, req: BootstrapRequest, now: datetime
) -> LicenseRecord | None:
    """The record of the request's license, checked for a one-node cluster of the request's name
    (raises `InvalidLicense`); None when the request asks for the trial license."""
    if not (req.license and req.license.strip()):
        return None
    return await check_license_text(
        req.license, config.license_public_keys, req.cluster.name or "", now, node_count=1
    )


async def check_create_request(
    config: NodeConfig, req: BootstrapRequest, *, leftovers: tuple[str, ...] = ()
) -> tuple[StoragePaths, LicenseRecord | None]:
    """The checks of create that need no cluster: paths, license, rack. Raises the failure;
    returns the node's paths and the verified license record (None: the trial). `leftovers` are
    paths a failed attempt of this node created: a retry removes them first, so they are no
    obstacle."""
    paths = storage_paths(config, req)
    check_node_paths(paths, req)
    license = await license_for_create(config, req, utc_now())
    if req.policy.rack_aware and not req.node.identity.rack_id:
        raise ConfigError(
            "node.identity.rack_id: required when policy.rack_aware is true (every node of a "
            "rack-aware cluster needs a rack id)",
            fields=["node.identity.rack_id"],
        )
    check_store_data(paths, req, leftovers=leftovers)
    return paths, license


async def create_cluster(
    config: NodeConfig,
    req: BootstrapRequest,
    progress: Progress,
    *,
    backend: StoreBackend = ETCD_BACKEND,
) -> ClusterRuntime:
    # The certificates below are made by the signer process: have it start while we check.
    signing.warm()
    paths, license = await check_create_request(config, req)
    clobber_store_data(paths, req)
    name = req.cluster.name or ""
    password = req.credentials.password or ""
    username = req.credentials.username or ""

    progress.phase("certificates")
    tls = DataDir(config.data_dir).cluster_tls
    progress.created(tls.directory)
    tls.directory.mkdir(parents=True, exist_ok=True)
    ca = await signing.make_ca(name)
    sans = node_certs.node_cert_sans(config.addr, req.node.identity.external_addr)
    lifetime = timedelta(seconds=config.node_cert_lifetime)
    node_cert = await signing.issue_node_cert(ca, 1, sans, lifetime=lifetime)
    key_files.write_public(tls.ca_file, ca.cert_pem)
    key_files.write_public(tls.cert_file, node_cert.cert_pem)
    key_files.write_private(tls.key_file, node_cert.key_pem)
    store_cert = await signing.issue_store_client_cert(ca, 1)
    key_files.write_public(tls.store_cert_file, store_cert.cert_pem)
    key_files.write_private(tls.store_key_file, store_cert.key_pem)
    failpoint("create.after_certificates")

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
    verifying = asyncio.create_task(make_verifier_record(password))
    store = backend.open_store(local.store_endpoints, tls)
    try:
        await member.start()
        await member.wait_ready(store)
        failpoint("create.after_store_start")
        password_hash = await hashing
        verifier = await verifying

        progress.phase("records")
        admin_password = etcd_auth.new_password()
        start = progress.start_time
        rack_aware = bool(req.policy.rack_aware)
        cluster = cluster_record(
            name=name,
            uuid=cluster_uuid,
            created=start,
            rack_aware=rack_aware,
            policy=req.policy.model_dump(exclude_none=True),
            wait_command=req.cluster.wait_command,
            http_port=config.http_port,
            https_port=config.https_port,
            node_settings=node_settings(config),
            ca_fingerprint=cert_facts.fingerprint_sha256(ca.cert_pem),
        )
        node = NodeRecord.model_validate(
            {
                **node_record(config, req, paths, 1),
                "store_role": StoreRole.VOTER,
                "store_client_url": spec.client_url,
                "store_peer_url": spec.peer_url,
            }
        )
        admin = admin_user_record(
            email=username, password_hash=password_hash, created=start, join_verifier=verifier
        )
        license = license or trial_license(cluster_name=name, activated=start)
        ca_secret = CaSecret(cert_pem=ca.cert_pem.decode(), key_pem=ca.key_pem.decode())
        records = [
            Put(model.CLUSTER_KEY, cluster.encode()),
            Put(model.node_key(1), node.encode()),
            Put(model.NODE_UID_COUNTER, UidCounter(last=1).encode()),
            Put(model.user_key(1), admin.encode()),
            Put(model.login_key(username), UserLoginIndex(uid=1).encode()),
            Put(model.USER_UID_COUNTER, UidCounter(last=1).encode()),
            Put(model.LICENSE_KEY, license.encode()),
            Put(model.CA_KEY, ca_secret.encode()),
            Put(model.STORE_ADMIN_KEY, etcd_auth.admin_document(admin_password)),
        ]
        # Access control first: no record is ever in the store without it.
        await enable_store_auth(store, tls, admin_password, uid=1)
        result = await store.txn([Compare.absent(model.CLUSTER_KEY)], records)
        if not result.succeeded:
            raise ConfigError(
                "the new cluster store already holds a cluster record; remove "
                f"{spec.data_dir} and retry",
            )
        failpoint("create.after_records")
        local.save(config.data_dir)
        failpoint("create.after_local_state")
        runtime = ClusterRuntime(config, local, store, member, backend=backend)
        await runtime.load()
        return runtime
    except BaseException:
        hashing.cancel()
        verifying.cancel()
        await store.close()
        await member.stop()
        raise
