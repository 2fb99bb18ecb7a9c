"""What the cluster's writes share: the one compare-and-set retry loop (`cas_retry`, with
`update_record` for one record and `allocate_uid` for new nodes and users), read-your-writes on
the writing node, and the token secret.

Writes go to the store in compare-and-set transactions; the records reach every node's snapshot
through its watch. The node that wrote waits until its own snapshot has caught up with the
transaction's revision before it answers (`wait_for_revision`), so a client that writes and then
reads on the same node sees its write. The wait is bounded: past the deadline the write has
happened anyway and the caller answers, and the node's snapshot catches up moments later.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from cnm.cluster import model
from cnm.cluster.records import JwtSecret, Record, UidCounter
from cnm.cluster.snapshot import ClusterSnapshot
from cnm.errors import CnmError, StoreContention, StoreError
from cnm.security.tokens import decode_secret, new_secret
from cnm.store.base import Compare, Op, Put, Store, TxnResult

log = logging.getLogger(__name__)

READ_YOUR_WRITES_TIMEOUT = 3.0
WRITE_ATTEMPTS = 20

T = TypeVar("T")
R = TypeVar("R", bound=Record)


class _RevisionSignal:
    """Wakes the waiters of one snapshot after each change it applies."""

    def __init__(self, snapshot: ClusterSnapshot) -> None:
        self.changed = asyncio.Event()
        snapshot.add_listener(self._on_change)

    def _on_change(self, key: str) -> None:
        del key
        self.changed.set()
        self.changed = asyncio.Event()


# One signal per snapshot (several nodes may live in one test process), dropped with it.
_signals: weakref.WeakKeyDictionary[ClusterSnapshot, _RevisionSignal] = weakref.WeakKeyDictionary()


async def wait_for_revision(
    snapshot: ClusterSnapshot, revision: int, timeout: float = READ_YOUR_WRITES_TIMEOUT
) -> bool:
    """Whether the snapshot reached `revision` within `timeout` seconds."""
    signal = _signals.get(snapshot)
    if signal is None:
        signal = _signals[snapshot] = _RevisionSignal(snapshot)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while snapshot.revision < revision:
        remaining = deadline - loop.time()
        if remaining <= 0:
            log.warning(
                "this node's snapshot did not reach revision %d within %.1f s (at %d)",
                revision,
                timeout,
                snapshot.revision,
            )
            return False
        try:
            async with asyncio.timeout(remaining):
                await signal.changed.wait()
        except TimeoutError:
            continue
    return True


async def token_secret(store: Store, snapshot: ClusterSnapshot) -> bytes:
    """The cluster's JWT secret, made on first use: the first node to write it wins (a
    compare-and-set on its absence) and every node then uses that one."""
    record = snapshot.jwt_secret()
    if record is None:
        await store.create(model.JWT_SECRET_KEY, JwtSecret(secret=new_secret()).encode())
        stored = await store.get(model.JWT_SECRET_KEY)
        if stored is None:
            raise StoreError("the token secret vanished right after it was written")
        await wait_for_revision(snapshot, stored.mod_revision)
        record = JwtSecret.decode(stored.value)
    return decode_secret(record.secret)


# --- compare-and-set --------------------------------------------------------------------------


async def cas_retry(
    attempt: Callable[[], Awaitable[T | None]], *, what: str, attempts: int = WRITE_ATTEMPTS
) -> T:
    """The one retry loop of every read-modify-compare-and-set: `attempt()` reads, decides and
    runs its transaction, and returns its outcome, or None when it lost the compare-and-set to a
    concurrent write (then it is tried again, from a fresh read). After `attempts` lost rounds:
    `StoreContention` (409, the client should retry), not an outage."""
    for _ in range(attempts):
        outcome = await attempt()
        if outcome is not None:
            return outcome
    raise StoreContention(
        f"{what} kept changing under concurrent writes ({attempts} attempts); retry"
    )


async def update_record(
    store: Store,
    key: str,
    kind: type[R],
    change: Callable[[R], R],
    *,
    attempts: int = WRITE_ATTEMPTS,
    missing: CnmError | None = None,
    default: R | None = None,
    also: Sequence[Put] = (),
) -> tuple[R, int]:
    """Read-modify-write one record with compare-and-set: `change` returns the new record (the
    same object: nothing to write, revision 0, unless `also` has puts to make). (the record
    written, its revision). When the record does not exist, `change` gets `default` and the
    write creates it; without a default that raises `missing` (default a `StoreError`).
    `also`: more puts of the same transaction, made only with the record's.
    `StoreContention` when it kept changing."""

    async def attempt() -> tuple[R, int] | None:
        current = await store.get(key)
        if current is None:
            if default is None:
                raise missing or StoreError(f"record {key} does not exist")
            old, guard = default, Compare.absent(key)
        else:
            old, guard = kind.decode(current.value), Compare.mod(key, "=", current.mod_revision)
        new = change(old)
        if new is old and not also:
            return new, 0
        result = await store.txn([guard], [Put(key, new.encode()), *also])
        return (new, result.revision) if result.succeeded else None

    return await cas_retry(attempt, what=f"record {key}", attempts=attempts)


# --- uids -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UidClaim:
    """What a new uid's transaction checks and writes besides advancing the counter; `reads`
    run when it fails, for `lost` to tell a lost race from a conflict."""

    compares: Sequence[Compare] = ()
    ops: Sequence[Op] = ()
    reads: Sequence[Op] = ()


@dataclass(frozen=True)
class Allocated:
    uid: int
    revision: int
    # False: `lost` found the uid already allocated to the same thing (an idempotent retry).
    created: bool = True


async def allocate_uid(
    store: Store,
    counter_key: str,
    claim: Callable[[int], UidClaim],
    *,
    lost: Callable[[TxnResult], int | None] = lambda result: None,
    above: int = 0,
    what: str,
    attempts: int = WRITE_ATTEMPTS,
) -> Allocated:
    """Allocate the next uid of a counter (nodes and users alike) in one compare-and-set
    transaction with `claim(uid)`'s compares and writes, so a uid is never reused and its record
    is never half-written. The uid is above both the counter and `above` (uids known otherwise).
    When the transaction fails, `lost(result)` may raise (a conflict), return a uid (already
    allocated: the outcome of an earlier attempt) or None (a lost race: retry)."""

    async def attempt() -> Allocated | None:
        counter = await store.get(counter_key)
        last = UidCounter.decode(counter.value).last if counter else 0
        uid = max(last, above) + 1
        wanted = claim(uid)
        guard = (
            Compare.mod(counter_key, "=", counter.mod_revision)
            if counter
            else Compare.absent(counter_key)
        )
        result = await store.txn(
            [guard, *wanted.compares],
            [Put(counter_key, UidCounter(last=uid).encode()), *wanted.ops],
            list(wanted.reads),
        )
        if result.succeeded:
            return Allocated(uid, result.revision)
        found = lost(result)
        return None if found is None else Allocated(found, 0, created=False)

    return await cas_retry(attempt, what=what, attempts=attempts)
