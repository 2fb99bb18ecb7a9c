"""ClusterSnapshot: every agent's in-memory copy of the cluster's records, kept current by watch.

Requests are answered from the snapshot, never with a store round trip each. The snapshot loads
everything under `/cnm/` at one revision, then watches from the next revision, so no change is
missed; when the watch breaks it reloads and watches again. It knows how fresh it is: after the
store has been unreachable for longer than `stale_after` seconds, `require_fresh()` raises
`StoreUnavailable` rather than presenting stale data as current.

Records are decoded once, as the load or the watch delivers them, into their types
(cluster/records.py); one that does not decode is logged and left out. Readers use the typed
accessors (`cluster()`, `nodes()`, `user_by_login()`, ...), never keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import TypeVar

from pydantic import ValidationError

from cnm.cluster import model
from cnm.cluster.records import (
    CaSecret,
    ClusterRecord,
    JwtSecret,
    LicenseRecord,
    LivenessRecord,
    NodeKeyIndex,
    NodeRecord,
    Record,
    RemovedNode,
    StoreRole,
    UserLoginIndex,
    UserRecord,
    decode_at,
)
from cnm.errors import StoreAccessRefused, StoreError, StoreUnavailable
from cnm.store.base import EventType, Store

log = logging.getLogger(__name__)

ChangeListener = Callable[[str], None]
# How often the watch is checked against the revisions the liveness keep-alives saw.
WATCH_CHECK_INTERVAL = 1.0
R = TypeVar("R", bound=Record)


class ClusterSnapshot:
    def __init__(
        self,
        store: Store,
        *,
        stale_after: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # Called when the store refuses this node's credentials (its etcd user was deleted or
        # given a new password): the runtime leaves. A lease keep-alive is not checked by etcd's
        # auth, so the watch is where a running node learns it.
        self.on_refused: Callable[[], None] | None = None
        self._store = store
        self._records: dict[str, Record] = {}
        # `nodes()` as of the last change under /cnm/nodes/: every listener of a node change
        # asks for it (voters, endpoints, backups...). Built from the node records kept apart
        # (by key), not from a walk over every record: every node of the cluster rebuilds it
        # at each join, so its cost is paid N times per join.
        self._nodes: list[NodeRecord] | None = None
        self._node_records: dict[str, NodeRecord] = {}
        # The voters' records and the keys of the records still `joining`, kept as each node
        # record changes: what each node asks of every change (the voters, how many nodes
        # completed their join) then costs O(voters), not a walk over every node, which the
        # cluster's N nodes would each pay at every change of a join (bench/bench_events.py).
        self._voters: dict[str, NodeRecord] = {}
        self._joining: set[str] = set()
        self._revision = 0
        self._stale_after = stale_after
        self._clock = clock
        self._last_contact = float("-inf")
        # (store revision, when) from keep-alives, not yet reached by the watch (oldest first).
        self._observed: deque[tuple[int, float]] = deque()
        self._listeners: list[ChangeListener] = []
        self._loaded = asyncio.Event()

    # --- reading --------------------------------------------------------------------------------

    @property
    def revision(self) -> int:
        return self._revision

    def record(self, key: str) -> Record | None:
        """The record at `key`, of its kind; for listeners, which are told keys."""
        return self._records.get(key)

    def keys_under(self, prefix: str) -> list[str]:
        """The keys held under `prefix`, sorted."""
        return sorted(key for key in self._records if key.startswith(prefix))

    def _typed(self, key: str, kind: type[R]) -> R | None:
        record = self._records.get(key)
        return record if isinstance(record, kind) else None

    def _all(self, prefix: str, kind: type[R]) -> list[R]:
        records = self._records.items()
        return [r for k, r in records if k.startswith(prefix) and isinstance(r, kind)]

    def cluster(self) -> ClusterRecord | None:
        return self._typed(model.CLUSTER_KEY, ClusterRecord)

    def nodes(self) -> list[NodeRecord]:
        """Every node record, by uid."""
        if self._nodes is None:
            self._nodes = sorted(self._node_records.values(), key=lambda n: n.uid)
        return list(self._nodes)

    def node(self, uid: int) -> NodeRecord | None:
        return self._typed(model.node_key(uid), NodeRecord)

    def voters(self) -> list[NodeRecord]:
        """The node records whose `store_role` is voter (joining or not), by uid."""
        return sorted(self._voters.values(), key=lambda n: n.uid)

    def completed_node_count(self) -> int:
        """How many node records completed their join (are not `joining`)."""
        return len(self._node_records) - len(self._joining)

    def liveness(self, uid: int) -> LivenessRecord | None:
        return self._typed(model.liveness_key(uid), LivenessRecord)

    def is_alive(self, uid: int) -> bool:
        """Whether the node's liveness key exists: its agent keeps the key's lease alive, so
        the key is gone within the lease TTL of the agent's death (or of the store's last
        leader election, which re-arms every lease: see model.LIVENESS_TTL)."""
        return isinstance(self._records.get(model.liveness_key(uid)), LivenessRecord)

    def node_uid_for_key(self, node_key: str) -> int | None:
        """The uid a node key was admitted with, if it was."""
        index = self._typed(model.node_key_index(node_key), NodeKeyIndex)
        return index.uid if index is not None else None

    def node_key_indexes(self, uid: int) -> list[str]:
        """The node-key index keys that point at node `uid` (one, unless it joined twice)."""
        return sorted(
            key
            for key, record in self._records.items()
            if key.startswith(model.NODE_KEY_PREFIX)
            and isinstance(record, NodeKeyIndex)
            and record.uid == uid
        )

    def removed(self, uid: int) -> RemovedNode | None:
        """The marker saying node `uid` was removed from the cluster, if it was."""
        return self._typed(model.removed_node_key(uid), RemovedNode)

    def users(self) -> list[UserRecord]:
        """Every user record, by uid."""
        return sorted(self._all(model.USERS_PREFIX, UserRecord), key=lambda u: u.uid)

    def user(self, uid: int) -> UserRecord | None:
        return self._typed(model.user_key(uid), UserRecord)

    def user_by_login(self, login: str) -> UserRecord | None:
        """The user whose email or name is `login` (case-insensitive)."""
        index = self._typed(model.login_key(login), UserLoginIndex)
        if index is not None:
            return self.user(index.uid)
        # Names written before they were indexed (the bootstrap admin's "Administrator").
        folded = login.casefold()
        for user in self.users():
            if user.name.casefold() == folded:
                return user
        return None

    def license(self) -> LicenseRecord | None:
        return self._typed(model.LICENSE_KEY, LicenseRecord)

    def ca(self) -> CaSecret | None:
        return self._typed(model.CA_KEY, CaSecret)

    def jwt_secret(self) -> JwtSecret | None:
        return self._typed(model.JWT_SECRET_KEY, JwtSecret)

    @property
    def loaded(self) -> bool:
        return self._loaded.is_set()

    def require_fresh(self) -> None:
        if not self._loaded.is_set():
            raise StoreUnavailable("the cluster store has not been read yet; retry shortly")
        silent_for = self._clock() - self._last_contact
        if silent_for > self._stale_after:
            raise StoreUnavailable(
                f"the cluster store has been unreachable for {silent_for:.0f} s; this node "
                "cannot answer with current data (check the store members' health)"
            )

    def add_listener(self, listener: ChangeListener) -> None:
        """`listener(key)` runs on the event loop after each change is applied."""
        self._listeners.append(listener)

    # --- keeping current ------------------------------------------------------------------------

    def mark_contact(self) -> None:
        """Something just proved the store reachable and this snapshot current (a load, an
        event of the watch)."""
        self._last_contact = self._clock()

    def now(self) -> float:
        """This snapshot's clock (for `observed`)."""
        return self._clock()

    def observed(self, store_revision: int, when: float) -> None:
        """The store was at `store_revision` as of `when` (this snapshot's clock), as a lease
        keep-alive sent then was answered (or a quorum read begun then saw). The snapshot
        counts as current as of `when` only once its watch has delivered that revision: a
        quorum reachable through another endpoint does not make a watch stuck on a lost member
        current (that would be stale data served as fresh)."""
        self._observed.append((store_revision, when))
        self._settle()

    def _settle(self) -> None:
        while self._observed and self._observed[0][0] <= self._revision:
            _, when = self._observed.popleft()
            self._last_contact = max(self._last_contact, when)

    def _watch_lagging(self) -> bool:
        """The watch has not delivered a revision the store had `stale_after` seconds ago."""
        return bool(self._observed) and (self._clock() - self._observed[0][1] > self._stale_after)

    async def load(self) -> None:
        items, revision = await self._store.get_prefix(model.PREFIX)
        records: dict[str, Record] = {}
        for kv in items:
            try:
                records[kv.key] = decode_at(kv.key, kv.value)
            except ValueError as exc:
                _undecodable(kv.key, exc)
        changed = set(records) ^ set(self._records) | {
            key for key in records if self._records.get(key) != records[key]
        }
        self._records = records
        self._nodes = None
        self._node_records, self._voters, self._joining = {}, {}, set()
        for key, record in records.items():
            if key.startswith(model.NODES_PREFIX) and isinstance(record, NodeRecord):
                self._set_node(key, record)
        self._revision = revision
        self.mark_contact()
        self._settle()
        self._loaded.set()
        for key in sorted(changed):
            self._notify(key)

    def _set_node(self, key: str, node: NodeRecord | None) -> None:
        """The node record at `key` is now `node` (None: gone): `_node_records` and, in step
        with it, `_voters` and `_joining`."""
        if node is not None:
            self._node_records[key] = node
        else:
            self._node_records.pop(key, None)
        if node is not None and node.store_role is StoreRole.VOTER:
            self._voters[key] = node
        else:
            self._voters.pop(key, None)
        if node is not None and node.joining:
            self._joining.add(key)
        else:
            self._joining.discard(key)

    async def wait_loaded(self, timeout: float) -> None:
        async with asyncio.timeout(timeout):
            await self._loaded.wait()

    def _notify(self, key: str) -> None:
        for listener in self._listeners:
            try:
                listener(key)
            except Exception:
                log.exception("snapshot listener failed for %s (please report)", key)

    async def run(self) -> None:
        """Load and watch forever; after any break, reload (nothing is missed) with backoff."""
        backoff = 0.1
        # A snapshot loaded just before (create, join, resume) watches on from its revision;
        # after any break it reloads.
        reload = not self._loaded.is_set()
        while True:
            try:
                if reload:
                    await self.load()
                reload = True
                backoff = 0.1
                # Moved: the watch ended between two of etcd's messages (a revision is never
                # split across them), so it goes on from the next revision, nothing reloaded.
                reload = not await self._watch()
            except StoreAccessRefused as exc:
                log.warning("cluster store watch refused: %s", exc.message)
                if self.on_refused is not None:
                    self.on_refused()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
            except (StoreUnavailable, StoreError) as exc:
                log.warning("cluster store watch interrupted: %s; retrying", exc.message)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)

    async def _watch(self) -> bool:
        """Apply the watch's events; ends with `StoreUnavailable` when the watch falls behind
        what keep-alives saw (a stream to a member cut off by a partition stays open and
        silent: no read timeout can tell it from a quiet cluster). Returns True when it ended
        to move to the store's preferred member (`Store.watch_misplaced`): a node that joined
        through node 1 would otherwise watch node 1's member for ever, and every write would
        fan out from that one member to every node of the cluster."""
        consumer = asyncio.create_task(self._consume(), name="snapshot-watch")
        try:
            while not consumer.done():
                await asyncio.wait({consumer}, timeout=WATCH_CHECK_INTERVAL)
                if consumer.done():
                    break
                if self._watch_lagging():
                    raise StoreUnavailable(
                        f"the store watch is behind revision {self._observed[0][0]} for more "
                        f"than {self._stale_after:.0f} s (its member may be cut off); reloading"
                    )
                if self._store.watch_misplaced():
                    log.info("moving the store watch to this node's preferred store member")
                    return True
            consumer.result()
            return False
        finally:
            consumer.cancel()
            with contextlib.suppress(asyncio.CancelledError, StoreUnavailable, StoreError):
                await consumer

    async def _consume(self) -> None:
        stream = self._store.watch_prefix(model.PREFIX, start_revision=self._revision + 1)
        async for event in stream:
            key = event.kv.key
            is_node = key.startswith(model.NODES_PREFIX)
            if is_node:
                self._nodes = None
            if event.type is EventType.DELETE:
                self._records.pop(key, None)
                self._set_node(key, None)
            else:
                try:
                    record: Record | None = decode_at(key, event.kv.value)
                except ValueError as exc:
                    # The record is kept as it was, but the event counts as seen: the snapshot
                    # is as current as the store all the same (a revision never reached would
                    # make it stale: 503s, then a reload, 5 s later), and waiters wake.
                    _undecodable(key, exc)
                    record = None
                if record is not None:
                    self._records[key] = record
                if is_node and record is not None:
                    self._set_node(key, record if isinstance(record, NodeRecord) else None)
            self._revision = max(self._revision, event.kv.mod_revision)
            self.mark_contact()
            self._settle()
            self._notify(key)


def _undecodable(key: str, error: ValueError) -> None:
    # The fields only: pydantic's text quotes the input, which may hold a secret.
    if isinstance(error, ValidationError):
        reason = "bad " + ", ".join(
            ".".join(map(str, e["loc"])) or "document" for e in error.errors()
        )
    else:
        reason = type(error).__name__
    log.error("store record %s does not decode (%s); ignored (please report)", key, reason)
