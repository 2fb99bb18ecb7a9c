"""The `Store` contract: everything cnm keeps cluster-wide goes through it.

The contract is etcd's data model (revisioned keys, leases, transactions, watches) reduced to what
cnm needs, so that the etcd backend is a thin translation and the in-memory backend used by unit
tests behaves the same. Keys are `str`, values `bytes`.

Failure semantics, for every method unless its docstring says otherwise:
- `StoreUnavailable` when the store cannot be reached or does not answer within the call's
  timeout. The call may or may not have taken effect; reads are safe to retry, writes are safe to
  retry only when they are compare-and-set transactions (they are idempotent by construction).
- `StoreError` when the store answers with an error cnm does not expect.
- A `False` result never means failure: it only means "lost a compare-and-set".
- `MembershipChangeRefused` (a `StoreError`) when the store refuses a member change; its
  `reason` is the backend's message translated here, so no caller matches a backend's text.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

from cnm.errors import StoreError


@dataclass(frozen=True)
class KeyValue:
    key: str
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    lease: int = 0


class CompareTarget(StrEnum):
    VERSION = "VERSION"
    CREATE = "CREATE"
    MOD = "MOD"
    VALUE = "VALUE"


CompareOp = Literal["=", "!=", ">", "<"]


@dataclass(frozen=True)
class LeaseRenewal:
    """What one keep-alive answered: the lease's remaining TTL (0: expired or unknown) and the
    header of the member that answered (its store revision and raft term at that moment)."""

    ttl: int
    revision: int
    raft_term: int = 0


@dataclass(frozen=True)
class Compare:
    """One guard of a transaction, e.g. `Compare.absent("k")` or `Compare.mod("k", "=", 7)`."""

    key: str
    target: CompareTarget
    op: CompareOp
    value: int | bytes

    @classmethod
    def absent(cls, key: str) -> Compare:
        return cls(key, CompareTarget.VERSION, "=", 0)

    @classmethod
    def exists(cls, key: str) -> Compare:
        return cls(key, CompareTarget.VERSION, ">", 0)

    @classmethod
    def mod(cls, key: str, op: CompareOp, revision: int) -> Compare:
        return cls(key, CompareTarget.MOD, op, revision)

    @classmethod
    def value_is(cls, key: str, value: bytes) -> Compare:
        return cls(key, CompareTarget.VALUE, "=", value)


@dataclass(frozen=True)
class Put:
    key: str
    value: bytes
    lease: int = 0


@dataclass(frozen=True)
class Delete:
    key: str
    prefix: bool = False


@dataclass(frozen=True)
class Get:
    key: str
    prefix: bool = False


Op = Put | Delete | Get


@dataclass(frozen=True)
class TxnResult:
    succeeded: bool
    revision: int
    # One entry per Get in the branch that ran, in order; empty for Put/Delete.
    reads: list[list[KeyValue]] = field(default_factory=list)


class EventType(StrEnum):
    PUT = "PUT"
    DELETE = "DELETE"


@dataclass(frozen=True)
class WatchEvent:
    type: EventType
    kv: KeyValue


@dataclass(frozen=True)
class Member:
    id: int
    name: str
    peer_urls: tuple[str, ...]
    client_urls: tuple[str, ...]
    is_learner: bool


class MembershipRefusal(StrEnum):
    """Why the store refused a member change."""

    # etcd admits a change only once every voter has been connected for 5 s after the previous
    # change (its HealthInterval): transient, retry at that pace.
    UNHEALTHY_CLUSTER = "unhealthy_cluster"
    # One learner at a time: a learner left by an earlier attempt must go first.
    TOO_MANY_LEARNERS = "too_many_learners"
    # A member with these peer URLs exists already.
    PEER_URL_EXISTS = "peer_url_exists"
    NOT_A_LEARNER = "not_a_learner"
    OTHER = "other"


class MembershipChangeRefused(StoreError):
    """The store answered a member add, promote or remove with a refusal (see `reason`).

    Keeps `StoreError`'s error code: it never reaches an API client by itself."""

    def __init__(self, message: str, reason: MembershipRefusal) -> None:
        super().__init__(message)
        self.reason = reason

    @property
    def transient(self) -> bool:
        """True when the same change is expected to be admitted a few seconds later."""
        return self.reason is MembershipRefusal.UNHEALTHY_CLUSTER


def prefix_end(prefix: str) -> str:
    """The smallest key greater than every key starting with `prefix` (etcd's range_end)."""
    raw = bytearray(prefix.encode())
    while raw:
        if raw[-1] < 0xFF:
            raw[-1] += 1
            return raw.decode(errors="surrogateescape")
        raw.pop()
    return "\0"


class Store(abc.ABC):
    """An async handle on the cluster store. Safe to share between tasks of one event loop."""

    @abc.abstractmethod
    async def get(self, key: str) -> KeyValue | None:
        """Linearizable read of one key. Retryable."""

    @abc.abstractmethod
    async def get_prefix(self, prefix: str) -> tuple[list[KeyValue], int]:
        """Linearizable read of every key under `prefix`, sorted by key, with the store revision
        it was read at (start a watch at revision + 1 to miss nothing). Retryable."""

    @abc.abstractmethod
    async def put(self, key: str, value: bytes, *, lease: int = 0) -> int:
        """Unconditional write; returns the new revision. Not a compare-and-set: retry only when
        writing the same value again is harmless."""

    @abc.abstractmethod
    async def delete(self, key: str, *, prefix: bool = False) -> int:
        """Delete a key (or every key under a prefix); returns how many were deleted."""

    @abc.abstractmethod
    async def txn(
        self, compares: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op] = ()
    ) -> TxnResult:
        """Atomic compare-and-set: when every compare holds, run `success`, else `failure`, all in
        one revision. `succeeded` False means a compare failed (lost the race), not an error."""

    @abc.abstractmethod
    async def lease_grant(self, ttl_seconds: int) -> int:
        """A new lease; keys put with it vanish `ttl_seconds` after the last keep-alive. Not
        retryable blindly: a lost answer leaves a lease nobody refreshes, which only expires."""

    @abc.abstractmethod
    async def lease_keepalive(self, lease_id: int) -> int:
        """Refresh a lease; returns its remaining TTL, 0 when it has already expired (or never
        existed): the caller grants a new one. Atomic and retryable. Timing-critical: call well
        within the TTL."""

    @abc.abstractmethod
    async def lease_renew(self, lease_id: int) -> LeaseRenewal:
        """`lease_keepalive` with the answer's header: the answering member's revision then
        (it reached the leader to renew, so this is a store revision as of now) and its raft
        term (a change means a leader election, which re-arms every lease's TTL)."""

    @abc.abstractmethod
    async def lease_revoke(self, lease_id: int) -> None:
        """Drop a lease and every key attached to it, atomically (one revision). Retryable:
        revoking an expired or unknown lease is not an error."""

    def set_endpoints(self, endpoints: Sequence[str]) -> None:
        """Where to reach the store from now on, most preferred first (the voters changed).
        Takes effect for the next call; calls under way finish where they are. An empty list is
        ignored. Raises nothing; a backend without endpoints (in memory) keeps no list."""
        del endpoints

    def watch_misplaced(self) -> bool:
        """Whether a watch of this client streams from a member that is no longer its first
        choice (the endpoints changed since the watch began). The watcher should then watch
        again from where it is: a watch is never moved by `set_endpoints` itself, and a stream
        left where it began keeps every joiner's watch on the member it joined through."""
        return False

    @abc.abstractmethod
    def watch_prefix(self, prefix: str, *, start_revision: int) -> AsyncIterator[WatchEvent]:
        """Every change under `prefix` from `start_revision` on, in order, until the iterator is
        closed. Raises `StoreUnavailable` when the stream breaks; the caller re-reads and
        re-watches (events are never silently skipped)."""

    @abc.abstractmethod
    async def leader(self) -> str:
        """The id of the store's leader as the first endpoint that answers sees it ("" while it
        knows none). Not atomic, retryable; raises `StoreUnavailable` when no endpoint answers
        (its message names each endpoint's failure). For health probes and metrics."""

    @abc.abstractmethod
    async def member_list(self) -> list[Member]:
        """The store's members (voters and learners). Retryable."""

    @abc.abstractmethod
    async def member_add(self, peer_urls: Sequence[str], *, learner: bool) -> list[Member]:
        """Add a member (a learner when `learner`); returns the member list including it, the
        new member first. Not retryable blindly: a retry after an unknown outcome must check
        `member_list` for the peer URL first. Raises `MembershipChangeRefused` when the store
        refuses (too many learners, peer URL exists, unhealthy cluster)."""

    @abc.abstractmethod
    async def member_promote(self, member_id: int) -> bool:
        """Promote a learner to voter. False while the learner is not yet in sync with the
        leader (retry later); raises `MembershipChangeRefused` for other refusals (not a
        learner, unhealthy cluster)."""

    @abc.abstractmethod
    async def member_remove(self, member_id: int) -> None:
        """Remove a member. Removing one that is already gone is not an error."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections. The store itself is untouched."""

    # Access control: each node its own store user (store/etcd_auth.py). A backend without
    # access control (in memory) keeps nothing and refuses nothing.

    async def enable_access_control(
        self, admin_password: str, prefix: str, node_users: Sequence[tuple[str, str]]
    ) -> None:
        """Switch access control on in a new store: an administrator (member changes, users)
        with `admin_password`, and `node_users` (name, password), who may read and write under
        `prefix` only."""
        del admin_password, prefix, node_users

    async def put_store_user(self, name: str, password: str) -> None:
        """Create node user `name`, or give it a new password (the old one opens nothing)."""
        del name, password

    async def delete_store_user(self, name: str) -> None:
        """Delete node user `name`: its password opens nothing any more. Retryable."""
        del name

    async def create(self, key: str, value: bytes, *, lease: int = 0) -> bool:
        """Put `key` only if it does not exist. Atomic compare-and-set."""
        result = await self.txn([Compare.absent(key)], [Put(key, value, lease)])
        return result.succeeded
