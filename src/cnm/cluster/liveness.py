"""Liveness: this node's lease in the store, kept alive while the agent runs.

Liveness is the lease (model.LIVENESS_TTL): the key is written when the lease is taken and then
only kept alive, so an idle node writes nothing and no other node hears from it; the node shows
`down` within the TTL of its death. Each keep-alive is also the snapshot's freshness proof
(snapshot.observed), and a new raft term or a change of reachability is announced on
`store_changed` (ops/store_watch.py probes then). A store that refuses this node's credentials
means the node was removed or replaced while away: `removed` is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable

from cnm.clock import iso, utc_now
from cnm.cluster import model
from cnm.cluster.records import LivenessRecord
from cnm.cluster.snapshot import ClusterSnapshot
from cnm.errors import LeaseNotFound, StoreAccessRefused, StoreError, StoreUnavailable
from cnm.store.base import Compare, Put, Store

log = logging.getLogger(__name__)

LIVENESS_TTL = model.LIVENESS_TTL
LIVENESS_INTERVAL = model.LIVENESS_KEEPALIVE


class Liveness:
    def __init__(
        self,
        store: Store,
        snapshot: ClusterSnapshot,
        *,
        uid: int,
        addr: str,
        store_changed: asyncio.Event,
        removed: asyncio.Event,
    ) -> None:
        self.store = store
        self.snapshot = snapshot
        self.uid = uid
        self.addr = addr
        self.store_changed = store_changed
        self.removed = removed
        self.lease = 0
        # A random id of this agent run, in the liveness record it writes.
        self._run = secrets.token_hex(8)
        # The store revision of this run's latest liveness write (see `run`), and when the
        # current lease was taken (the record's `since`: the node is up since then).
        self._written = 0
        self._since = ""

    async def take(
        self, write: Callable[[Put], Awaitable[int]] | None = None, *, granted: int = 0
    ) -> None:
        """A fresh lease (per agent run, and after a lapse: never an old run's) and the
        liveness key on it; `since` says the node has been up since then (cluster/repair.py).
        `write`, when given, writes the key's Put in a transaction of the caller's that also
        guards the node record (a join completes its record in the same one: one store round
        trip and one watch event fewer on every node) and returns its revision, 0 if it
        wrote nothing. `granted`: a lease granted for this run already (the member that
        admitted the node grants one: cluster/membership.py), used unless it has expired."""
        if granted:
            try:
                await self._take(write, granted)
                return
            except LeaseNotFound:
                log.info("the liveness lease granted at admission expired; taking another")
        await self._take(write, await self.store.lease_grant(LIVENESS_TTL))

    async def _take(self, write: Callable[[Put], Awaitable[int]] | None, lease: int) -> None:
        self.lease = lease
        self._since = iso(utc_now())
        self._wrote(await (write or self._write)(self._put()))

    def _wrote(self, revision: int) -> None:
        """After a write of the liveness key: its revision, or 0 when the node record was gone
        and nothing was written (the lease is dropped then)."""
        if revision:
            self._written = revision
        else:
            self.lease = 0

    def _put(self) -> Put:
        record = LivenessRecord(uid=self.uid, addr=self.addr, since=self._since, run=self._run)
        return Put(model.liveness_key(self.uid), record.encode(), lease=self.lease)

    async def _write(self, put: Put) -> int:
        """Put this node's liveness key on the current lease, only while its node record
        exists: a removed node must not come back as alive in the moments before it notices
        its removal (then the lease is dropped: `run` takes a new one later)."""
        written = await self.store.txn([Compare.exists(model.node_key(self.uid))], [put])
        return written.revision if written.succeeded else 0

    async def revoke(self) -> None:
        """A clean stop shows the node down at once instead of after the lease TTL."""
        if self.lease:
            with contextlib.suppress(StoreUnavailable, StoreError, TimeoutError):
                async with asyncio.timeout(1.0):
                    await self.store.lease_revoke(self.lease)

    async def run(self) -> None:
        """Keep this node's liveness lease alive, every LIVENESS_INTERVAL seconds. Each
        keep-alive is also the snapshot's freshness proof: the member that answers reached the
        leader to renew the lease, and its header says the store's revision then; the snapshot
        is current as of the send once its watch delivered that revision (snapshot.observed).
        Nothing is written while the lease lives, so an idle cluster's liveness costs one small
        request per node per interval and no watch event anywhere."""
        term = 0
        reached: bool | None = None
        loop = asyncio.get_running_loop()
        while True:
            answered = False
            sent = loop.time()
            try:
                began = self.snapshot.now()
                renewal = await self.store.lease_renew(self.lease) if self.lease else None
                if renewal is None or renewal.ttl <= 0:
                    await self.take()
                else:
                    self.snapshot.observed(renewal.revision, began)
                    if term and renewal.raft_term != term:
                        # Not an error: the bound of `down` restarts here (model.LIVENESS_TTL).
                        log.info(
                            "the store elected a leader (raft term %d): every liveness lease "
                            "was re-armed for %d s",
                            renewal.raft_term,
                            LIVENESS_TTL,
                        )
                    if renewal.raft_term != term:
                        self.store_changed.set()
                    term = renewal.raft_term
                    if self._missing():
                        self._wrote(await self._write(self._put()))
                answered = True
            except StoreAccessRefused as exc:
                # Its store user is gone (removed while cut off from the cluster) or has a new
                # password (replaced): either way this node no longer belongs to the cluster.
                log.warning("the cluster store refuses this node: %s; leaving", exc.message)
                self.removed.set()
            except (StoreUnavailable, StoreError) as exc:
                log.warning("liveness keep-alive failed: %s", exc.message)
            if answered is not reached:
                self.store_changed.set()
            reached = answered
            # A fixed cadence from each send, not a pause after each answer: on a loaded
            # machine a slow answer must not stretch the gap between freshness proofs (the
            # snapshot is stale 5 s after the last one) nor between keep-alives.
            await asyncio.sleep(max(0.0, LIVENESS_INTERVAL - (loop.time() - sent)))

    def _missing(self) -> bool:
        """This node's liveness key is gone though its lease lives (a replacement or a repair
        deleted it): the snapshot, past this run's last write, no longer holds it. Read from
        the snapshot, so checking costs no store request."""
        return (
            self.snapshot.loaded
            and self.snapshot.revision > self._written
            and self.snapshot.liveness(self.uid) is None
        )
