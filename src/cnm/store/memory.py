"""An in-memory `Store` for unit tests of logic: same semantics as the etcd backend, no I/O.

Revisions, leases (on an injectable clock), transactions and watches behave as etcd's do, so the
logic under test cannot tell the difference. Never used by a running agent.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import replace

from cnm.errors import LeaseNotFound, StoreError
from cnm.store.base import (
    Compare,
    CompareTarget,
    Delete,
    EventType,
    Get,
    KeyValue,
    LeaseRenewal,
    Member,
    MembershipChangeRefused,
    MembershipRefusal,
    Op,
    Put,
    Store,
    TxnResult,
    WatchEvent,
)
from cnm.store.member import MemberExit


class MemoryStore(Store):
    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._data: dict[str, KeyValue] = {}
        self._revision = 1
        self._leases: dict[int, tuple[int, float]] = {}  # id -> (ttl, deadline)
        self._next_lease = 1000
        self._history: list[WatchEvent] = []
        self._changed = asyncio.Condition()
        self._members: dict[int, Member] = {1: Member(1, "memory", (), (), False)}
        # What `set_endpoints` was last told: there is nowhere to connect, tests look at it.
        self.endpoints: list[str] = []

    # --- helpers --------------------------------------------------------------------------------

    def _expire_leases(self) -> None:
        now = self._clock()
        for lease_id, (_, deadline) in list(self._leases.items()):
            if deadline <= now:
                self._revoke(lease_id)

    def _revoke(self, lease_id: int) -> None:
        self._leases.pop(lease_id, None)
        doomed = [k for k, kv in self._data.items() if kv.lease == lease_id]
        if doomed:
            self._revision += 1
            for key in doomed:
                self._record(EventType.DELETE, self._data.pop(key))

    def _record(self, kind: EventType, kv: KeyValue) -> None:
        event_kv = kv if kind is EventType.PUT else replace(kv, mod_revision=self._revision)
        self._history.append(WatchEvent(kind, event_kv))

    def _range(self, key: str, prefix: bool) -> list[KeyValue]:
        if prefix:
            return [self._data[k] for k in sorted(self._data) if k.startswith(key)]
        kv = self._data.get(key)
        return [kv] if kv else []

    def _holds(self, compare: Compare) -> bool:
        kv = self._data.get(compare.key)
        actual: int | bytes
        if compare.target is CompareTarget.VERSION:
            actual = kv.version if kv else 0
        elif compare.target is CompareTarget.CREATE:
            actual = kv.create_revision if kv else 0
        elif compare.target is CompareTarget.MOD:
            actual = kv.mod_revision if kv else 0
        else:
            if kv is None:
                return False
            actual = kv.value
        expected = compare.value
        if compare.op == "=":
            return actual == expected
        if compare.op == "!=":
            return actual != expected
        if isinstance(actual, bytes) or isinstance(expected, bytes):
            raise StoreError(f"ordering compare on a value of {compare.key!r}")
        return actual > expected if compare.op == ">" else actual < expected

    def _apply(self, ops: Sequence[Op]) -> list[list[KeyValue]]:
        # All or nothing, as in etcd: refuse before changing anything.
        for op in ops:
            if isinstance(op, Put) and op.lease and op.lease not in self._leases:
                raise LeaseNotFound(f"etcdserver: requested lease not found ({op.lease})")
        reads: list[list[KeyValue]] = []
        writes = any(
            isinstance(op, Put) or (isinstance(op, Delete) and self._range(op.key, op.prefix))
            for op in ops
        )
        if writes:
            self._revision += 1
        for op in ops:
            if isinstance(op, Get):
                reads.append(self._range(op.key, op.prefix))
            elif isinstance(op, Put):
                old = self._data.get(op.key)
                kv = KeyValue(
                    key=op.key,
                    value=op.value,
                    create_revision=old.create_revision if old else self._revision,
                    mod_revision=self._revision,
                    version=(old.version if old else 0) + 1,
                    lease=op.lease,
                )
                self._data[op.key] = kv
                self._record(EventType.PUT, kv)
            else:
                for kv in self._range(op.key, op.prefix):
                    del self._data[kv.key]
                    self._record(EventType.DELETE, kv)
        return reads

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    # --- the contract ---------------------------------------------------------------------------

    async def get(self, key: str) -> KeyValue | None:
        self._expire_leases()
        return self._data.get(key)

    async def get_prefix(self, prefix: str) -> tuple[list[KeyValue], int]:
        self._expire_leases()
        return self._range(prefix, True), self._revision

    async def put(self, key: str, value: bytes, *, lease: int = 0) -> int:
        self._expire_leases()
        self._apply([Put(key, value, lease)])
        await self._notify()
        return self._revision

    async def delete(self, key: str, *, prefix: bool = False) -> int:
        self._expire_leases()
        count = len(self._range(key, prefix))
        if count:
            self._apply([Delete(key, prefix)])
            await self._notify()
        return count

    async def txn(
        self, compares: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op] = ()
    ) -> TxnResult:
        self._expire_leases()
        ok = all(self._holds(c) for c in compares)
        reads = self._apply(success if ok else failure)
        await self._notify()
        return TxnResult(succeeded=ok, revision=self._revision, reads=reads)

    async def lease_grant(self, ttl_seconds: int) -> int:
        self._next_lease += 1
        self._leases[self._next_lease] = (ttl_seconds, self._clock() + ttl_seconds)
        return self._next_lease

    async def lease_keepalive(self, lease_id: int) -> int:
        self._expire_leases()
        if lease_id not in self._leases:
            return 0
        ttl, _ = self._leases[lease_id]
        self._leases[lease_id] = (ttl, self._clock() + ttl)
        return ttl

    async def lease_renew(self, lease_id: int) -> LeaseRenewal:
        return LeaseRenewal(ttl=await self.lease_keepalive(lease_id), revision=self._revision)

    async def lease_revoke(self, lease_id: int) -> None:
        self._revoke(lease_id)
        await self._notify()

    async def expire_now(self) -> None:
        """Test hook: apply lease expiry for the current clock reading and wake watchers."""
        self._expire_leases()
        await self._notify()

    async def watch_prefix(self, prefix: str, *, start_revision: int) -> AsyncIterator[WatchEvent]:
        position = 0
        while True:
            async with self._changed:
                while position == len(self._history):
                    await self._changed.wait()
            for event in self._history[position:]:
                relevant = event.kv.key.startswith(prefix)
                if relevant and event.kv.mod_revision >= start_revision:
                    yield event
            position = len(self._history)

    async def member_list(self) -> list[Member]:
        return list(self._members.values())

    async def member_add(self, peer_urls: Sequence[str], *, learner: bool) -> list[Member]:
        # etcd checks the peer URLs before the learner count.
        if any(set(peer_urls) & set(m.peer_urls) for m in self._members.values()):
            raise MembershipChangeRefused(
                "etcdserver: Peer URLs already exists", MembershipRefusal.PEER_URL_EXISTS
            )
        if learner and any(m.is_learner for m in self._members.values()):
            raise MembershipChangeRefused(
                "etcdserver: too many learner members in cluster",
                MembershipRefusal.TOO_MANY_LEARNERS,
            )
        member = Member(max(self._members) + 1, "", tuple(peer_urls), (), learner)
        self._members[member.id] = member
        return [member, *(m for m in self._members.values() if m.id != member.id)]

    async def member_promote(self, member_id: int) -> bool:
        member = self._members.get(member_id)
        if member is None or not member.is_learner:
            raise MembershipChangeRefused(
                "etcdserver: can only promote a learner member", MembershipRefusal.NOT_A_LEARNER
            )
        self._members[member_id] = replace(member, is_learner=False)
        return True

    async def member_remove(self, member_id: int) -> None:
        self._members.pop(member_id, None)

    async def leader(self) -> str:
        return "memory"

    def set_endpoints(self, endpoints: Sequence[str]) -> None:
        if endpoints:
            self.endpoints = list(endpoints)

    async def close(self) -> None:
        return None


class MemoryMember:
    """A `StoreMember` for a node on a `MemoryStore`: nothing to spawn, it "runs" from `start`
    until `stop` or until a test makes it exit (`exit(code)`) to exercise supervision."""

    def __init__(self) -> None:
        self.starts = 0
        self._code: int | None = None
        self._exited = asyncio.Event()
        self._started = False
        self._removed = False

    @property
    def running(self) -> bool:
        return self._started and self._code is None

    async def start(self) -> None:
        self._started = True
        self.starts += 1

    async def wait_ready(self, store: Store, *, timeout: float = 15.0) -> None:
        del timeout  # the memory store serves at once
        if not self.running:
            raise StoreError(f"the memory member exited with code {self._code} while starting")
        await store.get("/cnm/ready-probe")

    async def wait(self) -> int:
        await self._exited.wait()
        assert self._code is not None
        return self._code

    def exit(self, code: int, *, removed: bool = False) -> None:
        """Test hook: the member exits as a crashed process would (`removed`: as one that the
        store removed for good)."""
        if self._code is None:
            self._removed = removed
            self._code = code
            self._exited.set()

    async def stop(self) -> None:
        self.exit(0)

    def log_tail(self, lines: int = 5) -> str:
        del lines
        return "(the memory member has no log)"

    def exit_condition(self) -> MemberExit:
        return MemberExit.REMOVED if self._removed else MemberExit.FAILED

    def again(self) -> MemoryMember:
        return MemoryMember()
