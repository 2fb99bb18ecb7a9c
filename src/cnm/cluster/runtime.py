"""ClusterRuntime: a node's live membership once bootstrap completed.

It owns the etcd member this node runs (if any) and restarts it if it dies, the store client,
the snapshot of the cluster's records, and the node's liveness lease (the node shows `down`
within the lease TTL of its death). It is started by a completed create, or at agent start from
the local state, and stopped before the agent exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from cnm.cluster import model
from cnm.cluster.health import run_node_upkeep
from cnm.cluster.membership import Admissions
from cnm.cluster.records import LivenessRecord
from cnm.cluster.snapshot import ClusterSnapshot
from cnm.cluster.voters import VoterManager, voter_endpoints
from cnm.config import NodeConfig
from cnm.errors import StoreError, StoreUnavailable
from cnm.node.data_dir import ClusterTls, DataDir, etcd_member_dir
from cnm.node.local_state import LocalState
from cnm.store.base import Store
from cnm.store.etcd import EtcdStore, client_tls_context
from cnm.store.etcd_process import EtcdMemberSpec, EtcdProcess, remove_member_data

log = logging.getLogger(__name__)

LIVENESS_TTL = 10
LIVENESS_INTERVAL = 2.0
# How long a restarting node waits for its store before serving (503 until it loads).
RESUME_WAIT = 5.0


def member_spec(config: NodeConfig, local: LocalState, tls: ClusterTls) -> EtcdMemberSpec:
    return EtcdMemberSpec(
        name=local.member_name,
        data_dir=etcd_member_dir(local.ccs_persistent_path),
        addr=config.addr,
        client_port=config.etcd_client_port,
        peer_port=config.etcd_peer_port,
        ca_file=tls.ca_file,
        cert_file=tls.cert_file,
        key_file=tls.key_file,
        initial_cluster=local.initial_cluster,
        initial_state="existing" if local.initial_cluster_state == "existing" else "new",
        cluster_token=local.cluster_token,
        log_file=DataDir(config.data_dir).etcd_log,
    )


def open_store(endpoints: tuple[str, ...], tls: ClusterTls) -> EtcdStore:
    context = client_tls_context(str(tls.ca_file), str(tls.cert_file), str(tls.key_file))
    return EtcdStore(endpoints, tls=context, timeout=3.0)


class ClusterRuntime:
    def __init__(
        self,
        config: NodeConfig,
        local: LocalState,
        store: Store,
        etcd: EtcdProcess | None,
    ) -> None:
        self.config = config
        self.local = local
        self.store = store
        self.etcd = etcd
        self.snapshot = ClusterSnapshot(store)
        self.admissions = Admissions(store, self.snapshot)
        self._lease = 0
        self._tasks: asyncio.TaskGroup | None = None

    @classmethod
    async def resume(cls, config: NodeConfig, local: LocalState) -> ClusterRuntime:
        """Bring a node that completed its bootstrap earlier back: its etcd member, then the
        store client, then its snapshot. A store without quorum yet (the other voters are still
        restarting) is no failure: the runtime comes up and its snapshot loads once the store
        serves, meanwhile the API answers 503. Raises `StoreError` when etcd exits at start."""
        tls = DataDir(config.data_dir).cluster_tls
        etcd = None
        if local.runs_store_member:
            etcd = EtcdProcess(config.etcd_binary, member_spec(config, local, tls))
            await etcd.start()
        store = open_store(local.store_endpoints, tls)
        runtime = cls(config, local, store, etcd)
        try:
            if etcd is not None:
                await etcd.wait_ready(store, timeout=RESUME_WAIT)
            await runtime.load()
        except StoreUnavailable as exc:
            log.warning(
                "the cluster store does not serve yet (%s); serving 503 until it does", exc.message
            )
        except BaseException:
            await store.close()
            if etcd is not None:
                await etcd.stop()
            raise
        return runtime

    async def load(self) -> None:
        await self.snapshot.load()

    async def run(self) -> None:
        """The runtime's loops; returns only when cancelled."""
        tls = DataDir(self.config.data_dir).cluster_tls
        spec = member_spec(self.config, self.local, tls)
        voters = VoterManager(
            self.store,
            self.snapshot,
            uid=self.local.node_uid,
            peer_url=spec.peer_url,
            client_url=spec.client_url,
            member_name=self.local.member_name,
            start_member=self.start_member,
        )
        self.snapshot.add_listener(self._on_change)
        async with asyncio.TaskGroup() as tasks:
            self._tasks = tasks
            tasks.create_task(self.snapshot.run(), name="snapshot")
            tasks.create_task(self._liveness(), name="liveness")
            tasks.create_task(voters.run(), name="voters")
            tasks.create_task(
                run_node_upkeep(self.store, self.snapshot, self.local, self.config.addr),
                name="node-upkeep",
            )
            if self.etcd is not None:
                tasks.create_task(self._supervise_etcd(), name="etcd-supervisor")

    def _on_change(self, key: str) -> None:
        if not key.startswith(model.NODES_PREFIX):
            return
        endpoints = tuple(voter_endpoints(self.snapshot, self.local.node_uid))
        if endpoints and endpoints != self.local.store_endpoints:
            # Only an etcd client follows the voters; a memory store (unit tests) has none.
            if isinstance(self.store, EtcdStore):
                self.store.set_endpoints(endpoints)
            self.local = self.local.with_changes(store_endpoints=endpoints)
            self.local.save(self.config.data_dir)
            log.info("store endpoints now %s", ", ".join(endpoints))

    async def start_member(self, initial_cluster: str, fresh: bool) -> None:
        """Start this node's etcd member joining the existing store (it was just added as a
        learner). `fresh`: the member is new, so data from an earlier attempt must go."""
        if self.etcd is not None and self.etcd.running:
            return
        self.local = self.local.with_changes(
            runs_store_member=True,
            initial_cluster=initial_cluster,
            initial_cluster_state="existing",
        )
        self.local.save(self.config.data_dir)
        spec = member_spec(self.config, self.local, DataDir(self.config.data_dir).cluster_tls)
        if fresh:
            remove_member_data(spec.data_dir)
        self.etcd = EtcdProcess(self.config.etcd_binary, spec)
        await self.etcd.start()
        if self._tasks is not None:
            self._tasks.create_task(self._supervise_etcd(), name="etcd-supervisor")

    async def _liveness(self) -> None:
        key = model.liveness_key(self.local.node_uid)
        document = LivenessRecord(uid=self.local.node_uid, addr=self.config.addr).encode()
        while True:
            try:
                ttl = await self.store.lease_keepalive(self._lease) if self._lease else 0
                if ttl <= 0:
                    self._lease = await self.store.lease_grant(LIVENESS_TTL)
                    await self.store.put(key, document, lease=self._lease)
                self.snapshot.mark_contact()
            except (StoreUnavailable, StoreError) as exc:
                log.warning("liveness keep-alive failed: %s", exc.message)
            await asyncio.sleep(LIVENESS_INTERVAL)

    async def _supervise_etcd(self) -> None:
        backoff = 0.5
        while True:
            assert self.etcd is not None
            code = await self.etcd.wait()
            log.error(
                "etcd member exited with code %s: %s; restarting in %.1f s",
                code,
                self.etcd.log_tail(),
                backoff,
            )
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 10.0)
            replacement = EtcdProcess(self.etcd.binary, self.etcd.spec)
            await replacement.start()
            self.etcd = replacement

    async def stop(self) -> None:
        if self._lease:
            # A clean stop shows the node down at once instead of after the lease TTL.
            with contextlib.suppress(StoreUnavailable, StoreError, TimeoutError):
                async with asyncio.timeout(1.0):
                    await self.store.lease_revoke(self._lease)
        await self.store.close()
        if self.etcd is not None:
            await self.etcd.stop()
