"""BootstrapManager: the bootstrap state machine of one node, and its restart decision table.

It owns the status record and runs at most one bootstrap action at a time. Requests are checked
synchronously (a body that is not a bootstrap object: 400, state unchanged; a state that does
not accept a request: 409) and the action then runs as a task of the agent, moving
`idle → initiated → creating_cluster → completed | error` and persisting every transition.

At start, `restore()` applies the decision table (etcd's bootstrap.go is the model):
- no status, or idle / error: wait for a request;
- completed with local state: resume the cluster;
- an action in progress (the agent died mid-way): if the local state proves the action got to
  its end, resume and complete it; otherwise `error`, saying the attempt was interrupted;
- a status file that does not read as one (`UnreadableStatus`): it is kept aside as
  `<name>.unreadable`; with local state the node is in its cluster (the local state is written
  only once the cluster has the node), so it resumes and is recorded completed; without,
  `error`, saying the last request's outcome is unknown and to send it again.

Leaving: when the cluster removes this node (its runtime sees the `removed` marker, see
cluster/removal.py), `leave_cluster` stops the runtime, wipes what the cluster gave the node
(local state, cluster TLS, its etcd member data, its node key: a rejoin is a new node) and puts
the status back to `idle`, so the API serves the pre-bootstrap surface and the node can join
again.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import Awaitable, Callable, Coroutine
from datetime import datetime
from pathlib import Path
from typing import Any

from cnm.bootstrap.create import check_create_request, create_cluster
from cnm.bootstrap.join import NETWORK_WIRING, JoinWiring, check_join_request, join_cluster
from cnm.bootstrap.recover import check_recover_request, recover_cluster
from cnm.bootstrap.schema import BootstrapRequest, parse_bootstrap_body
from cnm.bootstrap.status import BootstrapState, BootstrapStatus, UnreadableStatus
from cnm.bootstrap.validation import ACTIONS, check_request
from cnm.cluster.repair import replaced_message, replacement_of, revoked_message
from cnm.cluster.runtime import ETCD_BACKEND, ClusterRuntime, StoreBackend, member_spec
from cnm.config import NodeConfig
from cnm.errors import (
    AlreadyBootstrapped,
    BootstrapFailure,
    BootstrapInProgress,
    BootstrapInternalError,
    CnmError,
    ConfigError,
    NotFound,
    PathError,
    StoreAccessRefused,
    StoreError,
)
from cnm.failpoints import failpoint
from cnm.logs import event
from cnm.node.data_dir import DataDir, etcd_member_dir
from cnm.node.local_state import LocalState

log = logging.getLogger(__name__)

# Short: a store with quorum answers at once, and a full-cluster restart must not wait long.
REPLACED_CHECK_TIMEOUT = 2.0


class NodeReplaced(ConfigError):
    """This node's uid was given to another machine while it was down (cluster/repair.py)."""


Spawn = Callable[[Coroutine[Any, Any, None]], object]
# (runtime, credentials the action proved: (username, password), or None on a restart)
OnCompleted = Callable[[ClusterRuntime, tuple[str, str] | None], Awaitable[None]]
# (previous status, new status), after every change of the record (the agent's metrics).
TransitionListener = Callable[[BootstrapStatus, BootstrapStatus], None]
# Called once the node has left its cluster (removed) and is idle again (the agent's HTTPS).
LeftListener = Callable[[], None]

# A removed node waits this long before it tears down, so that the answer to a removal sent to
# this very node leaves before the node stops serving the cluster.
LEAVE_GRACE = 1.0


class BootstrapManager:
    def __init__(
        self,
        config: NodeConfig,
        *,
        spawn: Spawn,
        on_completed: OnCompleted,
        join_wiring: JoinWiring = NETWORK_WIRING,
        backend: StoreBackend = ETCD_BACKEND,
    ) -> None:
        self.config = config
        self.backend = backend
        self._spawn = spawn
        self._on_completed = on_completed
        # How a join reaches its member and the store (in-process in unit tests).
        self._join_wiring = join_wiring
        # Why the status file could not be read (it was moved aside), for `restore()`.
        self._unreadable: str | None = None
        try:
            self.status = BootstrapStatus.load(config.data_dir)
        except UnreadableStatus as exc:
            self.status = BootstrapStatus()
            self._unreadable = _set_aside(exc)
        self.runtime: ClusterRuntime | None = None
        # While `restore()` brings a completed node back (store member, snapshot): its local
        # state, so the API can say which node it is and answer "starting" meanwhile.
        self.resuming: LocalState | None = None
        # Set once `restore()` is over, resumed or not: requests that arrived meanwhile go on.
        self.resumed = asyncio.Event()
        self.listeners: list[TransitionListener] = []
        self.left_listeners: list[LeftListener] = []

    # --- the Progress protocol of the actions ---------------------------------------------------

    # A phase or a note is progress within a state: replaced atomically, not fsynced (module
    # docstring of bootstrap/status.py).
    def phase(self, name: str) -> None:
        self._set(self.status.running(name), durable=False)

    def created(self, path: Path) -> None:
        self._set(self.status.created(path))

    def note(self, **notes: str) -> None:
        self._set(self.status.noted(**notes), durable=False)

    @property
    def start_time(self) -> datetime:
        assert self.status.start_time is not None
        return self.status.start_time

    def _set(self, status: BootstrapStatus, *, durable: bool = True) -> None:
        try:
            status.save(self.config.data_dir, durable=durable)
        except OSError as exc:
            # A data dir that cannot be written (read-only mount, chattr +i, full disk) is an
            # error state with a message, kept in memory since it cannot be kept on disk.
            failure = data_dir_failure(self.config.data_dir, exc)
            log.error("%s", failure.message)
            if status.state is not BootstrapState.ERROR:
                self._change(status.failed(failure))
                raise failure from None
            status = status if status.error_code == "path_error" else self.status.failed(failure)
        self._change(status)

    def _change(self, status: BootstrapStatus) -> None:
        previous, self.status = self.status, status
        log_transition(previous, status)
        for listener in self.listeners:
            listener(previous, status)

    # --- restart ------------------------------------------------------------------------------

    def will_resume(self) -> LocalState | None:
        """The local state `restore()` will resume the cluster from (a completed node that is
        not leaving), or None: the agent may listen before such a restore ends (daemon.py)."""
        if DataDir(self.config.data_dir).leaving_file.exists():
            return None
        if self.status.state is not BootstrapState.COMPLETED:
            return None
        return LocalState.load(self.config.data_dir)

    async def restore(self) -> str:
        """Apply the decision table; returns the decision as a sentence for the log."""
        self.resuming = self.will_resume()
        try:
            return await self._restore()
        finally:
            self.resuming = None
            self.resumed.set()

    async def _restore(self) -> str:
        data = DataDir(self.config.data_dir)
        if data.leaving_file.exists():
            # The agent stopped while this removed node left: finish it. Its store member's
            # data goes first, while the local state still says where it is.
            leaving = LocalState.load(self.config.data_dir)
            if leaving is not None and leaving.ccs_persistent_path:
                shutil.rmtree(etcd_member_dir(leaving.ccs_persistent_path), ignore_errors=True)
            self._finish_leaving(data)
            self._set(BootstrapStatus())
            data.leaving_file.unlink(missing_ok=True)
            return "finished leaving the cluster this node was removed from: idle"
        local = LocalState.load(self.config.data_dir)
        if self._unreadable is not None:
            if local is None:
                self._set(
                    BootstrapStatus().failed(
                        BootstrapInternalError(
                            f"the bootstrap status could not be read ({self._unreadable}) and "
                            "this node holds no cluster state: the outcome of the last "
                            "bootstrap request is unknown; send it again"
                        )
                    )
                )
                return "unreadable status without local state marked as error"
            # In its cluster: recorded completed, then resumed like any completed node.
            self._set(BootstrapStatus().completed())
        state = self.status.state
        if state is BootstrapState.COMPLETED and local is not None:
            try:
                replaced = await self._replaced(local)
            except StoreAccessRefused:
                return self._refused(local)
            if replaced is not None:
                # It must not rejoin, start its store member or touch the cluster.
                log.warning(replaced, extra=event("replaced_node_idle", uid=local.node_uid))
                self._set(self.status.failed(NodeReplaced(replaced, uid=local.node_uid)))
                return f"node {local.node_uid} was replaced while down; not rejoining"
            await self._resume(local)
            return f"rejoining cluster {local.cluster_name} as node {local.node_uid}"
        if state.in_progress and local is not None:
            await self._resume(local)
            self._set(self.status.completed())
            return f"completed the interrupted {self.status.action} from its local state"
        if state.in_progress:
            self._set(
                self.status.failed(
                    BootstrapInternalError(
                        f"the agent stopped while {state.value} (phase {self.status.phase}) and "
                        "the attempt was interrupted before it completed; send the request "
                        "again to start over (what the attempt left is removed first)"
                    )
                )
            )
            return "interrupted bootstrap marked as error"
        if state is BootstrapState.COMPLETED:
            self._set(
                self.status.failed(
                    BootstrapInternalError(
                        "the status says completed but the node's local state is missing; "
                        "the node must bootstrap again"
                    )
                )
            )
            return "completed status without local state marked as error"
        return f"waiting for a bootstrap request (state {state.value})"

    async def _replaced(self, local: LocalState) -> str | None:
        """Why this node must not rejoin (another machine took its uid while it was down), or
        None. Asked of the other store voters only (this node's own member is not started);
        a store that does not answer in time cannot say, and the node resumes as usual."""
        tls = DataDir(self.config.data_dir).cluster_tls
        own = member_spec(self.config, local, tls).client_url
        endpoints = tuple(e for e in local.store_endpoints if e != own)
        if not endpoints:
            return None
        key_file = DataDir(self.config.data_dir).node_key_file
        key = key_file.read_text().strip() if key_file.exists() else None
        store = self.backend.open_store(endpoints, tls)
        try:
            async with asyncio.timeout(REPLACED_CHECK_TIMEOUT):
                by = await replacement_of(store, key, local.node_uid, self.config.addr)
        except StoreAccessRefused:
            raise  # the caller's to handle: this node leaves
        except (TimeoutError, StoreError, ValueError) as exc:
            log.info("could not ask the store whether this node was replaced: %s", exc)
            return None
        finally:
            await store.close()
        return replaced_message(local.node_uid, local.cluster_name, by) if by else None

    async def _resume(self, local: LocalState) -> None:
        runtime = await ClusterRuntime.resume(self.config, local, backend=self.backend)
        self.runtime = runtime
        await self._on_completed(runtime, None)
        self._spawn(self._leave_when_removed(runtime))

    # --- leaving the cluster ----------------------------------------------------------------------

    async def _leave_when_removed(self, runtime: ClusterRuntime) -> None:
        await runtime.removed.wait()
        await asyncio.sleep(LEAVE_GRACE)
        await self.leave_cluster(runtime)

    async def leave_cluster(self, runtime: ClusterRuntime) -> None:
        """Take this node out of the cluster it was removed from (see the module docstring)."""
        if self.runtime is not runtime:
            return
        # From here on the API serves the pre-bootstrap surface (no_cluster for cluster routes).
        self.runtime = None
        data = DataDir(self.config.data_dir)
        # The `leaving` marker first: once removed, this node's store user is deleted, so after a
        # crash from here on a restart could not read that it was removed; the marker tells it
        # to finish leaving (`restore`) instead of reporting its credentials refused.
        data.leaving_file.touch()
        try:
            await runtime.stop()
        except Exception as exc:  # the store it stops talking to may be gone: go on leaving
            log.warning("stopping the cluster runtime while leaving: %s", exc)
        failpoint("leave.after_runtime_stopped")
        local = runtime.local
        # Order matters for a crash in the middle: the store member's data goes while the local
        # state still says where it is (a restart under the marker removes it again first).
        if local.ccs_persistent_path:
            shutil.rmtree(etcd_member_dir(local.ccs_persistent_path), ignore_errors=True)
        self._finish_leaving(data)
        failpoint("leave.after_wipe")
        self._set(BootstrapStatus())
        data.leaving_file.unlink(missing_ok=True)
        log.warning(
            "left cluster %s: this node (uid %d) was removed; its cluster data is wiped and it "
            "is idle, ready to create or join a cluster",
            local.cluster_name,
            local.node_uid,
            extra=event("left_cluster", uid=local.node_uid, cluster=local.cluster_name),
        )
        for listener in self.left_listeners:
            listener()

    def _refused(self, local: LocalState) -> str:
        """The store refuses this node's credentials: while it was down it was replaced by
        another machine (its store user got a new password) or removed (the user is gone), and
        it cannot read which. Like a replaced node it reports `error` and starts nothing of the
        cluster; its data is kept for the operator (a credentials file restored from an old
        backup must not wipe a node by itself)."""
        message = revoked_message(local.node_uid, local.cluster_name)
        log.warning(message, extra=event("replaced_node_idle", uid=local.node_uid))
        self._set(self.status.failed(NodeReplaced(message, uid=local.node_uid)))
        return f"node {local.node_uid} was replaced or removed while down; not rejoining"

    def _finish_leaving(self, data: DataDir) -> None:
        """Remove what is left of a node that leaves: local state and node key first, then its
        cluster certificates and what its bootstrap created."""
        LocalState.remove(self.config.data_dir)
        data.node_key_file.unlink(missing_ok=True)
        shutil.rmtree(data.cluster_tls.directory, ignore_errors=True)
        self._clean_failed_attempt()

    # --- requests -------------------------------------------------------------------------------

    def _parse(self, action: str, raw: bytes) -> BootstrapRequest:
        if action not in ACTIONS:
            raise NotFound(
                f"unknown bootstrap action {action!r}; expected one of {', '.join(ACTIONS)}"
            )
        return parse_bootstrap_body(raw)

    def _refuse_unless_accepting(self) -> None:
        state = self.status.state
        if state is BootstrapState.COMPLETED:
            raise AlreadyBootstrapped("this node has already completed its bootstrap")
        if not state.accepts_request:
            raise BootstrapInProgress(
                f"Bootstrap already in progress (check state): state is {state.value}"
            )

    def submit(self, action: str, raw: bytes) -> None:
        """Accept a bootstrap request or raise (400 / 404 / 409). Synchronous from the check of
        the state to the transition, so two concurrent POSTs cannot both be accepted."""
        request = self._parse(action, raw)
        self._refuse_unless_accepting()
        self._clean_failed_attempt()
        try:
            self._set(self.status.initiated(action))
        except PathError:
            return  # the state says error and why: what a poll of the status shows
        self._spawn(self._run(action, request))

    async def validate(self, action: str, raw: bytes) -> BootstrapFailure | None:
        """Every check of `action` that needs no cluster, synchronously; no state changes."""
        request = self._parse(action, raw)
        if self.status.state is BootstrapState.COMPLETED:
            raise AlreadyBootstrapped("this node has already completed its bootstrap")
        try:
            await self._check(action, request)
        except BootstrapFailure as failure:
            return failure
        return None

    async def _check(self, action: str, request: BootstrapRequest) -> None:
        check_request(request, action)
        if action == "create_cluster":
            await check_create_request(self.config, request, leftovers=self.status.created_paths)
        elif action == "join_cluster":
            check_join_request(self.config, request, leftovers=self.status.created_paths)
        else:
            check_recover_request(self.config, request, leftovers=self.status.created_paths)

    def _clean_failed_attempt(self) -> None:
        """A retry from `error` first removes what the failed attempt created."""
        for name in reversed(self.status.created_paths):
            path = Path(name)
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            elif path.exists():
                path.unlink()
        LocalState.remove(self.config.data_dir)

    async def _run(self, action: str, request: BootstrapRequest) -> None:
        try:
            check_request(request, action)
            if action == "create_cluster":
                runtime = await create_cluster(self.config, request, self, backend=self.backend)
            elif action == "join_cluster":
                runtime = await join_cluster(
                    self.config, request, self, self._join_wiring, backend=self.backend
                )
            else:
                runtime = await recover_cluster(self.config, request, self, backend=self.backend)
            self.runtime = runtime
            credentials = (request.credentials.username or "", request.credentials.password or "")
            await self._on_completed(runtime, credentials)
            self._set(self.status.completed())
            self._spawn(self._leave_when_removed(runtime))
        except BootstrapFailure as failure:
            log.warning("bootstrap %s failed: [%s] %s", action, failure.error_code, failure)
            self._set(self.status.failed(failure))
        except CnmError as error:
            log.warning("bootstrap %s failed: [%s] %s", action, error.error_code, error)
            self._set(self.status.failed(BootstrapInternalError(error.message)))
        except OSError as exc:
            # The node's own disk refused a write: the environment, not a bug of cnm.
            disk = data_dir_failure(Path(exc.filename or self.config.data_dir), exc)
            log.warning("bootstrap %s failed: [%s] %s", action, disk.error_code, disk)
            self._set(self.status.failed(disk))
        except Exception as exc:
            log.exception("bootstrap %s failed unexpectedly (please report)", action)
            self._set(
                self.status.failed(
                    BootstrapInternalError(
                        f"unexpected {type(exc).__name__}: {exc}; the attempt can be retried"
                    )
                )
            )


def data_dir_failure(path: Path, exc: OSError) -> PathError:
    reason = exc.strerror or type(exc).__name__
    return PathError(
        f"{path} cannot be written ({reason}); the node keeps its state there: make it "
        "writable (read-only mount? immutable attribute, see lsattr? disk full?) and send the "
        "request again",
        path=str(path),
    )


def log_transition(previous: BootstrapStatus, status: BootstrapStatus) -> None:
    """One info line per change of state or phase, with stable field names in JSON."""
    if status.state is previous.state and status.phase == previous.phase:
        return
    message = f"bootstrap {status.action or '-'}: {previous.state.value} -> {status.state.value}"
    if status.state.in_progress and status.phase:
        message += f" (phase {status.phase})"
    if status.state is BootstrapState.ERROR:
        message += f" [{status.error_code}]"
    log.info(
        message,
        extra=event(
            "bootstrap_transition",
            action=status.action,
            from_state=previous.state.value,
            state=status.state.value,
            phase=status.phase if status.state.in_progress else None,
            error_code=status.error_code if status.state is BootstrapState.ERROR else None,
        ),
    )


def _set_aside(unreadable: UnreadableStatus) -> str:
    """Move an unreadable status file aside (kept for a look, never read again); says what
    happened, for the log and the status that replaces it."""
    kept = unreadable.path.with_name(unreadable.path.name + ".unreadable")
    try:
        unreadable.path.replace(kept)
        where = f"kept as {kept}"
    except OSError as exc:
        where = f"could not be moved aside: {exc.strerror or exc}"
    log.error(
        "the bootstrap status file %s is unreadable (%s); %s",
        unreadable.path,
        unreadable.reason,
        where,
        extra=event("status_unreadable", path=str(unreadable.path)),
    )
    return f"{unreadable.path.name}: {unreadable.reason}; {where}"
