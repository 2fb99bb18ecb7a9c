"""recover_cluster: bring a cluster back on this node from a store snapshot (cluster/backup.py).

For a cluster whose store lost its quorum for good (most voters' machines gone). The steps, each
a phase in the status record: `snapshot` (read and check the file: `path_error` when it cannot be
read, `config_error` when it is not a cnm snapshot or was taken by another software version),
`certificates` (the cluster CA from the snapshot, this node's certificate from it), `store` (a
new one-member etcd store: a new store token, so no member of the old store can ever talk to
it), `records` (every record of the snapshot, written in batches guarded by "no cluster record
yet", the cluster record last so a half-written store is recognisable and never served).

The cluster keeps its identity: name, uuid, CA, users, license, settings. This node takes the
uid of `node.identity.uid`, else the uid it had in the snapshot (found by its node key), else 1;
its record is rewritten with this machine's facts as the one voter. Every other node's record is
kept but loses its store seat (role `client`, no store URLs) and shows `down` (no liveness in the
new store), so the other machines join with `node.identity.uid` to replace them.
"""

from __future__ import annotations

import uuid as uuid_module
from dataclasses import dataclass

from cnm.bootstrap.create import enable_store_auth
from cnm.bootstrap.join import node_key
from cnm.bootstrap.node_setup import Progress, check_node_paths, node_record, storage_paths
from cnm.bootstrap.schema import BootstrapRequest
from cnm.bootstrap.store_data import check_store_data, clobber_store_data
from cnm.cluster import model
from cnm.cluster.backup import StoreSnapshot, read_snapshot
from cnm.cluster.records import CaSecret, NodeKeyIndex, NodeRecord, StoreRole, UidCounter
from cnm.cluster.runtime import ETCD_BACKEND, ClusterRuntime, StoreBackend, member_spec
from cnm.config import NodeConfig
from cnm.errors import ConfigError
from cnm.failpoints import failpoint
from cnm.node.data_dir import DataDir
from cnm.node.facts import StoragePaths
from cnm.node.local_state import LocalState
from cnm.security import key_files, node_certs, signing
from cnm.store import etcd_auth
from cnm.store.base import Compare, Put

# etcd refuses a transaction of more than 128 operations (--max-txn-ops).
BATCH = 100


@dataclass(frozen=True)
class RecoveryPlan:
    paths: StoragePaths
    snapshot: StoreSnapshot
    uid: int


def _node_key_on_disk(config: NodeConfig) -> str | None:
    try:
        return DataDir(config.data_dir).node_key_file.read_text().strip() or None
    except OSError:
        return None


def recovered_uid(config: NodeConfig, req: BootstrapRequest, snapshot: StoreSnapshot) -> int:
    """`node.identity.uid`, else the uid this node had in the snapshot, else 1."""
    if req.node.identity.uid:
        return req.node.identity.uid
    key = _node_key_on_disk(config)
    raw = snapshot.keys.get(model.node_key_index(key)) if key else None
    if raw is not None:
        try:
            return NodeKeyIndex.decode(raw).uid
        except ValueError:
            pass
    return 1


def check_recover_request(
    config: NodeConfig, req: BootstrapRequest, *, leftovers: tuple[str, ...] = ()
) -> RecoveryPlan:
    """The checks of recover: paths, foreign store data, the snapshot file. Raises the failure."""
    paths = storage_paths(config, req)
    check_node_paths(paths, req)
    check_store_data(paths, req, leftovers=leftovers)
    snapshot = read_snapshot(req.recovery_filename or "")
    if req.cluster.name and req.cluster.name != snapshot.cluster_name:
        raise ConfigError(
            f"cluster.name: {req.cluster.name} but the snapshot is of cluster "
            f"{snapshot.cluster_name}; leave cluster.name out or give the snapshot's",
            fields=["cluster.name"],
        )
    return RecoveryPlan(paths=paths, snapshot=snapshot, uid=recovered_uid(config, req, snapshot))


def recovered_records(plan: RecoveryPlan, own: NodeRecord, node_key: str | None) -> list[Put]:
    """Every record of the snapshot, this node's rewritten and the others' seats freed; the
    cluster record last."""
    keys = dict(plan.snapshot.keys)
    # The old store's administrator password: the new store has its own.
    keys.pop(model.STORE_ADMIN_KEY, None)
    for key, raw in list(keys.items()):
        if key.startswith(model.NODES_PREFIX):
            node = NodeRecord.decode(raw)
            if node.uid != plan.uid:
                freed = node.changed(
                    store_role=StoreRole.CLIENT, store_client_url="", store_peer_url=""
                )
                keys[key] = freed.encode()
        elif key.startswith(model.NODE_KEY_PREFIX) and NodeKeyIndex.decode(raw).uid == plan.uid:
            del keys[key]  # this uid is another machine now: the old key must not claim it
    keys[model.node_key(plan.uid)] = own.encode()
    if node_key:
        keys[model.node_key_index(node_key)] = NodeKeyIndex(uid=plan.uid).encode()
    raw_counter = keys.get(model.NODE_UID_COUNTER)
    last = UidCounter.decode(raw_counter).last if raw_counter else 0
    keys[model.NODE_UID_COUNTER] = UidCounter(last=max(last, plan.uid)).encode()
    cluster = keys.pop(model.CLUSTER_KEY)
    return [Put(k, v) for k, v in sorted(keys.items())] + [Put(model.CLUSTER_KEY, cluster)]


async def recover_cluster(
    config: NodeConfig,
    req: BootstrapRequest,
    progress: Progress,
    *,
    backend: StoreBackend = ETCD_BACKEND,
) -> ClusterRuntime:
    progress.phase("snapshot")
    # The certificates below are made by the signer process: have it start while we check.
    signing.warm()
    plan = check_recover_request(config, req)
    clobber_store_data(plan.paths, req)
    snapshot = plan.snapshot
    ca_raw = snapshot.keys[model.CA_KEY]
    try:
        secret = CaSecret.decode(ca_raw)
    except ValueError:
        raise ConfigError(
            "recovery_filename: the snapshot's cluster CA record is damaged",
            fields=["recovery_filename"],
        ) from None

    progress.phase("certificates")
    tls = DataDir(config.data_dir).cluster_tls
    progress.created(tls.directory)
    tls.directory.mkdir(parents=True, exist_ok=True)
    ca = node_certs.CertKey(cert_pem=secret.cert_pem.encode(), key_pem=secret.key_pem.encode())
    sans = node_certs.node_cert_sans(config.addr, req.node.identity.external_addr)
    node_cert = await signing.issue_cert(ca, f"cnm node {config.addr}", sans)
    key_files.write_public(tls.ca_file, ca.cert_pem)
    key_files.write_public(tls.cert_file, node_cert.cert_pem)
    key_files.write_private(tls.key_file, node_cert.key_pem)
    store_cert = await signing.issue_store_client_cert(ca, plan.uid)
    key_files.write_public(tls.store_cert_file, store_cert.cert_pem)
    key_files.write_private(tls.store_key_file, store_cert.key_pem)
    failpoint("recover.after_certificates")

    progress.phase("store")
    member_name = f"node-{plan.uid}"
    # A new store token: the old store's members (should one come back) are refused by this one.
    token = str(uuid_module.uuid4())
    local = LocalState(
        cluster_uuid=snapshot.cluster_uuid,
        cluster_name=snapshot.cluster_name,
        node_uid=plan.uid,
        store_endpoints=(f"https://{config.host}:{config.etcd_client_port}",),
        runs_store_member=True,
        member_name=member_name,
        initial_cluster=f"{member_name}=https://{config.host}:{config.etcd_peer_port}",
        initial_cluster_state="new",
        cluster_token=token,
        persistent_path=plan.paths.persistent_path,
        ephemeral_path=plan.paths.ephemeral_path,
        bigstore_path=plan.paths.bigstore_path,
        ccs_persistent_path=plan.paths.ccs_persistent_path,
    )
    spec = member_spec(config, local, tls)
    progress.created(spec.data_dir)
    member = backend.make_member(config.etcd_binary, spec)
    store = backend.open_store(local.store_endpoints, tls)
    try:
        await member.start()
        await member.wait_ready(store)
        failpoint("recover.after_store_start")

        progress.phase("records")
        own = NodeRecord.model_validate(
            {
                **node_record(config, req, plan.paths, plan.uid),
                "store_role": StoreRole.VOTER,
                "store_client_url": spec.client_url,
                "store_peer_url": spec.peer_url,
            }
        )
        # A new store: new store users. Only this node has one; every other node joins again
        # (as a replacement of its uid) and gets its own then.
        admin_password = etcd_auth.new_password()
        await enable_store_auth(store, tls, admin_password, uid=plan.uid)
        puts = recovered_records(plan, own, node_key(config.data_dir))
        puts.insert(0, Put(model.STORE_ADMIN_KEY, etcd_auth.admin_document(admin_password)))
        for start in range(0, len(puts), BATCH):
            result = await store.txn(
                [Compare.absent(model.CLUSTER_KEY)], puts[start : start + BATCH]
            )
            if not result.succeeded:
                raise ConfigError(
                    f"the new cluster store already holds a cluster record; remove "
                    f"{spec.data_dir} and retry"
                )
        failpoint("recover.after_records")
        local.save(config.data_dir)
        failpoint("recover.after_local_state")
        runtime = ClusterRuntime(config, local, store, member, backend=backend)
        await runtime.load()
        return runtime
    except BaseException:
        await store.close()
        await member.stop()
        raise
