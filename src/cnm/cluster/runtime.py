"""ClusterRuntime: a node's live membership once bootstrap completed.

It owns the store member this node runs (if any) and restarts it if it dies, the store client,
the snapshot of the cluster's records, and the node's liveness lease (cluster/liveness.py: the
node shows `down` within the lease TTL of its death). It is started by a completed create, or
at agent start from the local state, and stopped before the agent exits.

It sees the store only through the `Store` contract and its member only through `StoreMember`;
a `StoreBackend` says how to open the one and make the other (etcd for the agent, memory for
tests of the API after bootstrap).

When the node is removed from the cluster (a `removed` marker for its uid appears, see
cluster/removal.py), `run()` returns: the bootstrap manager then stops the runtime and takes
the node back to `idle`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import partial

from cnm.cluster import model
from cnm.cluster.backup import run_backups
from cnm.cluster.cert_renewal import run_cert_renewal
from cnm.cluster.health import run_node_upkeep
from cnm.cluster.liveness import Liveness
from cnm.cluster.membership import Admissions
from cnm.cluster.quorum import QuorumReporter, save_local_users, users_changed
from cnm.cluster.records import NodeRecord, StoreRole
from cnm.cluster.repair import run_down_marker
from cnm.cluster.snapshot import ClusterSnapshot
from cnm.cluster.voters import VoterManager, voter_endpoints
from cnm.cluster.writes import update_record
from cnm.config import NodeConfig
from cnm.errors import StoreError, StoreUnavailable
from cnm.logs import event
from cnm.node.data_dir import ClusterTls, DataDir, etcd_member_dir
from cnm.node.local_state import LocalState
from cnm.store.base import Put, Store
from cnm.store.etcd import EtcdStore
from cnm.store.etcd_auth import load_credentials
from cnm.store.etcd_process import EtcdMemberSpec, EtcdProcess, remove_member_data
from cnm.store.etcd_wire import client_tls_context
from cnm.store.lease_stream import grpc_tls
from cnm.store.member import MemberExit, StoreMember

log = logging.getLogger(__name__)

# How long a restarting node waits for its store before serving (503 until it loads).
RESUME_WAIT = 5.0
# How long a restarting voter asks the other voters whether it still has its seat.
SEAT_CHECK_TIMEOUT = 3.0


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
    """A client of the store as this node: its certificate, and its etcd user once it has one
    (the credentials file is read whenever a token is needed, so a file written later counts)."""
    cert_file, key_file = tls.store_client_files()
    context = client_tls_context(str(tls.ca_file), str(cert_file), str(key_file))
    return EtcdStore(
        endpoints,
        tls=context,
        timeout=3.0,
        credentials=partial(load_credentials, tls.store_credentials_file),
        admin_key=model.STORE_ADMIN_KEY,
        grpc_tls=grpc_tls(str(tls.ca_file), str(cert_file), str(key_file)),
    )


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


class _Removed(Exception):
    """Ends `ClusterRuntime.run` once the node was removed from the cluster."""


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
        self.admissions = Admissions(
            store,
            self.snapshot,
            uid=local.node_uid,
            cert_lifetime=timedelta(seconds=config.node_cert_lifetime),
        )
        # Set when a keep-alive saw the store change: a leader election (a new raft term), or
        # the store reachable again or no longer (ops/store_watch.py probes then).
        self.store_changed = asyncio.Event()
        # Called after this node's certificate was renewed (cluster/cert_renewal.py).
        self.certificate_listeners: list[Callable[[], None]] = []
        self._tasks: asyncio.TaskGroup | None = None
        # Set once the snapshot shows this node's `removed` marker.
        self.removed = asyncio.Event()
        self.liveness = Liveness(
            store,
            self.snapshot,
            uid=local.node_uid,
            addr=config.addr,
            store_changed=self.store_changed,
            removed=self.removed,
        )
        # This run found its store seat given away: its record must say client before the
        # voter plan looks at it (a `learner` record would send it to finish becoming a voter).
        self._left_store = False
        # Set when the users change: the local copy of their verifiers is rewritten.
        self._users_changed = asyncio.Event()
        self.quorum = QuorumReporter()

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
        left = False
        if local.runs_store_member:
            spec = member_spec(config, local, tls)
            if await _seat_given_away(backend, local, tls, spec):
                local = _leave_store(config, local, spec, "its member is not in the store's list")
                left = True
            else:
                member = backend.make_member(config.etcd_binary, spec)
                await member.start()
        store = backend.open_store(local.store_endpoints, tls)
        runtime = cls(config, local, store, member, backend=backend)
        runtime._left_store = left
        try:
            if member is not None:
                try:
                    await member.wait_ready(store, timeout=RESUME_WAIT)
                except StoreError:
                    if member.running or member.exit_condition() is not MemberExit.REMOVED:
                        raise
                    runtime._leave("its member exited: the store removed it")
            await runtime.load()
        except StoreUnavailable as exc:
            log.warning(
                "the cluster store does not serve yet (%s); serving 503 until it does", exc.message
            )
        except BaseException:
            await store.close()
            if runtime.member is not None:
                await runtime.member.stop()
            raise
        return runtime

    async def load(self) -> None:
        await self.snapshot.load()

    async def take_liveness(
        self, write: Callable[[Put], Awaitable[int]] | None = None, *, granted: int = 0
    ) -> None:
        """Take the liveness lease now (the loop of `run` keeps it alive): a node that just
        joined is never seen complete but without liveness, which would read as a failed node
        (cluster/repair.py) to the joins around it. `write`, `granted`: see `Liveness.take`."""
        await self.liveness.take(write, granted=granted)

    async def run(self) -> None:
        """The runtime's loops; returns when this node was removed from the cluster, else only
        when cancelled."""
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
        self.snapshot.on_refused = self.removed.set
        # Removed while this node was stopped: the snapshot loaded at resume holds the marker.
        if self.snapshot.removed(self.local.node_uid) is not None:
            self.removed.set()
        try:
            await self._run_tasks(voters)
        except* _Removed:
            log.warning(
                "this node (uid %d) was removed from the cluster; leaving it",
                self.local.node_uid,
            )

    async def _run_tasks(self, voters: VoterManager) -> None:
        async with asyncio.TaskGroup() as tasks:
            self._tasks = tasks
            tasks.create_task(self._until_removed(), name="until-removed")
            tasks.create_task(self.snapshot.run(), name="snapshot")
            tasks.create_task(self.liveness.run(), name="liveness")
            tasks.create_task(self._run_voters(voters), name="voters")
            tasks.create_task(run_down_marker(self.store, self.snapshot), name="down-marker")
            tasks.create_task(
                run_node_upkeep(self.store, self.snapshot, self.local, self.config.addr),
                name="node-upkeep",
            )
            tasks.create_task(self._keep_local_users(), name="local-users")
            tasks.create_task(
                run_backups(
                    self.store,
                    self.snapshot,
                    node_uid=self.local.node_uid,
                    ccs_persistent_path=self.local.ccs_persistent_path,
                ),
                name="backups",
            )
            if self.member is not None:
                tasks.create_task(self._supervise_member(), name="member-supervisor")
            tasks.create_task(
                run_cert_renewal(
                    self.config,
                    self.snapshot,
                    self.local.node_uid,
                    DataDir(self.config.data_dir).cluster_tls,
                    self._renewed,
                ),
                name="cert-renewal",
            )

    def _renewed(self) -> None:
        """This node's certificate was renewed: the store client and `certificate_listeners`
        (the agent's HTTPS) present the new one on their next connections."""
        tls = DataDir(self.config.data_dir).cluster_tls
        reload = getattr(self.store, "reload_certificate", None)
        if reload is not None:
            reload(*tls.store_client_files())
        for listener in self.certificate_listeners:
            listener()

    async def _until_removed(self) -> None:
        await self.removed.wait()
        raise _Removed

    async def _run_voters(self, voters: VoterManager) -> None:
        if self._left_store:
            await self._record_as_client()
        await voters.run()

    def _leave(self, reason: str) -> None:
        """Run on as a store client: the member is gone for good (see `_leave_store`)."""
        spec = member_spec(self.config, self.local, DataDir(self.config.data_dir).cluster_tls)
        self.local = _leave_store(self.config, self.local, spec, reason)
        self.member = None
        self._left_store = True
        if self.local.store_endpoints:
            self.store.set_endpoints(self.local.store_endpoints)

    async def _record_as_client(self) -> None:
        """Record this node as a store client (retried until the store takes the write)."""

        def change(record: NodeRecord) -> NodeRecord:
            if record.store_role is StoreRole.CLIENT and not record.store_client_url:
                return record
            return record.changed(store_role=StoreRole.CLIENT, store_client_url="")

        backoff = 0.2
        while True:
            try:
                key = model.node_key(self.local.node_uid)
                await update_record(self.store, key, NodeRecord, change)
                return
            except (StoreUnavailable, StoreError) as exc:
                log.warning("could not record this node as a store client yet: %s", exc.message)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    def _on_change(self, key: str) -> None:
        if users_changed(key):
            self._users_changed.set()
        if key == model.removed_node_key(self.local.node_uid):
            if self.snapshot.removed(self.local.node_uid) is not None:
                self.removed.set()
            return
        if not key.startswith(model.NODES_PREFIX):
            return
        endpoints = tuple(voter_endpoints(self.snapshot, self.local.node_uid))
        if endpoints and endpoints != self.local.store_endpoints:
            self.store.set_endpoints(endpoints)
            self.local = self.local.with_changes(store_endpoints=endpoints)
            self.local.save(self.config.data_dir)
            log.info("store endpoints now %s", ", ".join(endpoints))

    async def _keep_local_users(self) -> None:
        """The users' verifiers in the data dir, for when the store does not serve."""
        if self.snapshot.loaded:
            self._users_changed.set()
        while True:
            await self._users_changed.wait()
            self._users_changed.clear()
            try:
                await asyncio.to_thread(save_local_users, self.config.data_dir, self.snapshot)
            except OSError as exc:
                log.warning("could not keep the local copy of the users: %s", exc)

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

    async def _supervise_member(self) -> None:
        backoff = 0.5
        while True:
            assert self.member is not None
            code = await self.member.wait()
            if self.member.exit_condition() is MemberExit.REMOVED:
                # Restarting it would only exit again (and loop): run on as a client.
                self._leave("its member exited: the store removed it")
                await self._record_as_client()
                return
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
        await self.liveness.revoke()
        await self.store.close()
        if self.member is not None:
            await self.member.stop()


async def _seat_given_away(
    backend: StoreBackend, local: LocalState, tls: ClusterTls, spec: EtcdMemberSpec
) -> bool:
    """Whether the store answers from the other voters, has no member at this node's peer URL,
    and does not record this node as a voter. Unknown (no other voter, no answer in time) is
    False: the member is started, since it may be needed for quorum; if the store did remove
    it, it exits and says so (`MemberExit.REMOVED`)."""
    others = tuple(e for e in local.store_endpoints if e != spec.client_url)
    if not others:
        return False
    store = backend.open_store(others, tls)
    try:
        async with asyncio.timeout(SEAT_CHECK_TIMEOUT):
            members = await store.member_list()
            if any(spec.peer_url in m.peer_urls for m in members):
                return False
            # A member list can lag; the record (a quorum read) must agree that this node is
            # no voter: the healer records the seat given away, a learner never was one.
            found = await store.get(model.node_key(local.node_uid))
    except (StoreUnavailable, StoreError, TimeoutError):
        return False
    finally:
        await store.close()
    try:
        record = NodeRecord.decode(found.value) if found is not None else None
    except ValueError:
        return False
    return record is None or record.store_role is not StoreRole.VOTER


def _leave_store(
    config: NodeConfig, local: LocalState, spec: EtcdMemberSpec, reason: str
) -> LocalState:
    """This node's store seat was given away: wipe the stale member data and switch the local
    state to a store client of the other voters. Returns the new local state."""
    remove_member_data(spec.data_dir)
    endpoints = tuple(e for e in local.store_endpoints if e != spec.client_url)
    local = local.with_changes(
        runs_store_member=False,
        initial_cluster="",
        store_endpoints=endpoints or local.store_endpoints,
    )
    local.save(config.data_dir)
    log.warning(
        "node %d no longer has a store member (%s): its data is wiped and it runs as a store "
        "client of %s",
        local.node_uid,
        reason,
        ", ".join(local.store_endpoints),
        extra=event("store_member_gone", uid=local.node_uid, reason=reason),
    )
    return local
