"""ClusterRuntime: a node's live membership once bootstrap completed.

It owns the store member this node runs (if any) and restarts it if it dies, the store client,
the snapshot of the cluster's records, and the node's liveness lease (the node shows `down`
within the lease TTL of its death). It is started by a completed create, or at agent start from
the local state, and stopped before the agent exits.

It sees the store only through the `Store` contract and its member only through `StoreMember`;
a `StoreBackend` says how to open the one and make the other (etcd for the agent, memory for
tests of the API after bootstrap).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

from cnm.clock import iso, utc_now
from cnm.cluster import model
from cnm.cluster.health import run_node_upkeep
from cnm.cluster.membership import Admissions
from cnm.cluster.records import LivenessRecord
from cnm.cluster.repair import run_down_marker
from cnm.cluster.snapshot import ClusterSnapshot
from cnm.cluster.voters import VoterManager, voter_endpoints
from cnm.config import NodeConfig
from cnm.errors import StoreError, StoreUnavailable
from cnm.node.data_dir import ClusterTls, DataDir, etcd_member_dir
from cnm.node.local_state import LocalState
from cnm.store.base import Store
from cnm.store.etcd import EtcdStore, client_tls_context
from cnm.store.etcd_process import EtcdMemberSpec, EtcdProcess, remove_member_data
from cnm.store.member import StoreMember

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


def etcd_member(binary: str, spec: EtcdMemberSpec) -> StoreMember:
    return EtcdProcess(binary, spec)


@dataclass(frozen=True)
class StoreBackend:
    """How a node opens its store client and makes its store member."""

    # (endpoints, this node's cluster TLS) -> a client of the cluster store
    open_store: Callable[[tuple[str, ...], ClusterTls], Store]
    # (etcd binary, how to run the member) -> this node's member, not started
    make_member: Callable[[str, EtcdMemberSpec], StoreMember]


ETCD_BACKEND = StoreBackend(open_store=open_store, make_member=etcd_member)


class ClusterRuntime:
    def __init__(
        self,
        config: NodeConfig,
        local: LocalState,
        store: Store,
        member: StoreMember | None,
        *,
        backend: StoreBackend = ETCD_BACKEND,
    ) -> None:
        self.config = config
        self.local = local
        self.store = store
        self.member = member
        self.backend = backend
        self.snapshot = ClusterSnapshot(store)
        self.admissions = Admissions(store, self.snapshot, uid=local.node_uid)
        self._lease = 0
        self._tasks: asyncio.TaskGroup | None = None

    @classmethod
    async def resume(
        cls, config: NodeConfig, local: LocalState, *, backend: StoreBackend = ETCD_BACKEND
    ) -> ClusterRuntime:
        """Bring a node that completed its bootstrap earlier back: its store member, then the
        store client, then its snapshot. A store without quorum yet (the other voters are still
        restarting) is no failure: the runtime comes up and its snapshot loads once the store
        serves, meanwhile the API answers 503. Raises `StoreError` when the member exits at
        start."""
        tls = DataDir(config.data_dir).cluster_tls
        member = None
        if local.runs_store_member:
            member = backend.make_member(config.etcd_binary, member_spec(config, local, tls))
            await member.start()
        store = backend.open_store(local.store_endpoints, tls)
        runtime = cls(config, local, store, member, backend=backend)
        try:
            if member is not None:
                await member.wait_ready(store, timeout=RESUME_WAIT)
            await runtime.load()
        except StoreUnavailable as exc:
            log.warning(
                "the cluster store does not serve yet (%s); serving 503 until it does", exc.message
            )
        except BaseException:
            await store.close()
            if member is not None:
                await member.stop()
            raise
        return runtime

    async def load(self) -> None:
        await self.snapshot.load()

    async def take_liveness(self) -> None:
        """Take the liveness lease now (the loop of `run` keeps it alive): a node that just
        joined is never seen complete but without liveness, which would read as a failed node
        (cluster/repair.py) to the joins around it."""
        self._lease = await self.store.lease_grant(LIVENESS_TTL)
        document = LivenessRecord(
            uid=self.local.node_uid, addr=self.config.addr, since=iso(utc_now())
        ).encode()
        await self.store.put(model.liveness_key(self.local.node_uid), document, lease=self._lease)

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
            tasks.create_task(run_down_marker(self.store, self.snapshot), name="down-marker")
            tasks.create_task(
                run_node_upkeep(self.store, self.snapshot, self.local, self.config.addr),
                name="node-upkeep",
            )
            if self.member is not None:
                tasks.create_task(self._supervise_member(), name="member-supervisor")

    def _on_change(self, key: str) -> None:
        if not key.startswith(model.NODES_PREFIX):
            return
        endpoints = tuple(voter_endpoints(self.snapshot, self.local.node_uid))
        if endpoints and endpoints != self.local.store_endpoints:
            self.store.set_endpoints(endpoints)
            self.local = self.local.with_changes(store_endpoints=endpoints)
            self.local.save(self.config.data_dir)
            log.info("store endpoints now %s", ", ".join(endpoints))

    async def start_member(self, initial_cluster: str, fresh: bool) -> None:
        """Start this node's store member joining the existing store (it was just added as a
        learner). `fresh`: the member is new, so data from an earlier attempt must go."""
        if self.member is not None and self.member.running:
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
        self.member = self.backend.make_member(self.config.etcd_binary, spec)
        await self.member.start()
        if self._tasks is not None:
            self._tasks.create_task(self._supervise_member(), name="member-supervisor")

    async def _liveness(self) -> None:
        key = model.liveness_key(self.local.node_uid)
        while True:
            try:
                ttl = await self.store.lease_keepalive(self._lease) if self._lease else 0
                if ttl <= 0:
                    self._lease = await self.store.lease_grant(LIVENESS_TTL)
                    # `since`: the node has been up since it took this lease (cluster/repair.py).
                    document = LivenessRecord(
                        uid=self.local.node_uid, addr=self.config.addr, since=iso(utc_now())
                    ).encode()
                    await self.store.put(key, document, lease=self._lease)
                self.snapshot.mark_contact()
            except (StoreUnavailable, StoreError) as exc:
                log.warning("liveness keep-alive failed: %s", exc.message)
            await asyncio.sleep(LIVENESS_INTERVAL)

    async def _supervise_member(self) -> None:
        backoff = 0.5
        while True:
            assert self.member is not None
            code = await self.member.wait()
            log.error(
                "store member exited with code %s: %s; restarting in %.1f s",
                code,
                self.member.log_tail(),
                backoff,
            )
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 10.0)
            replacement = self.member.again()
            await replacement.start()
            self.member = replacement

    async def stop(self) -> None:
        if self._lease:
            # A clean stop shows the node down at once instead of after the lease TTL.
            with contextlib.suppress(StoreUnavailable, StoreError, TimeoutError):
                async with asyncio.timeout(1.0):
                    await self.store.lease_revoke(self._lease)
        await self.store.close()
        if self.member is not None:
            await self.member.stop()
