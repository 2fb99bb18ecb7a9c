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
from cnm.store.base import Compare, Get, KeyValue, Op, Put, Store, TxnResult

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
    known: tuple[R, int] | None = None,
) -> tuple[R, int]:
    """Read-modify-write one record with compare-and-set: `change` returns the new record (the
    same object: nothing to write, revision 0, unless `also` has puts to make). (the record
    written, its revision). When the record does not exist, `change` gets `default` and the
    write creates it; without a default that raises `missing` (default a `StoreError`).
    `also`: more puts of the same transaction, made only with the record's.
    `known`: the record and the revision of its last write, as the caller knows them: the
    first attempt starts from them instead of a read (a later one reads).
    `StoreContention` when it kept changing."""
    first = [known]

    async def attempt() -> tuple[R, int] | None:
        if first[0] is not None:
            (old, revision), first[0] = first[0], None
            guard = Compare.mod(key, "=", revision)
        elif (current := await store.get(key)) is None:
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
    last_seen: int | None = None,
) -> Allocated:
    """Allocate the next uid of a counter (nodes and users alike) in one compare-and-set
    transaction with `claim(uid)`'s compares and writes, so a uid is never reused and its record
    is never half-written. The uid is above both the counter and `above` (uids known otherwise).
    When the transaction fails, `lost(result)` may raise (a conflict), return a uid (already
    allocated: the outcome of an earlier attempt) or None (a lost race: retry).

    `last_seen`: the counter as the caller's snapshot shows it. The first attempt then guards on
    that value instead of reading the counter first (one store round trip fewer on every join);
    a failed transaction reads the counter in the same round trip, for the next attempt. A
    value guard is as strict as a revision guard here: the counter only grows, so an equal
    value means no uid was allocated since."""
    seen: list[tuple[int, Compare] | None] = [
        None if last_seen is None else (last_seen, _counter_guard(counter_key, last_seen))
    ]

    async def attempt() -> Allocated | None:
        known = seen[0]
        if known is None:
            counter = await store.get(counter_key)
            known = _counter_state(counter_key, counter)
        last, guard = known
        uid = max(last, above) + 1
        wanted = claim(uid)
        result = await store.txn(
            [guard, *wanted.compares],
            [Put(counter_key, UidCounter(last=uid).encode()), *wanted.ops],
            [*wanted.reads, Get(counter_key)],
        )
        if result.succeeded:
            return Allocated(uid, result.revision)
        found = lost(result)
        if found is not None:
            return Allocated(found, 0, created=False)
        # The failure branch's last read is the counter's (its Get is appended above).
        counter_now = result.reads[-1]
        seen[0] = _counter_state(counter_key, counter_now[0] if counter_now else None)
        return None

    return await cas_retry(attempt, what=what, attempts=attempts)


def _counter_guard(counter_key: str, last: int) -> Compare:
    return Compare.value_is(counter_key, UidCounter(last=last).encode())


def _counter_state(counter_key: str, counter: KeyValue | None) -> tuple[int, Compare]:
    """(last uid, the guard that the counter is unchanged) from a read of the counter."""
    if counter is None:
        return 0, Compare.absent(counter_key)
    last = UidCounter.decode(counter.value).last
    return last, Compare.mod(counter_key, "=", counter.mod_revision)
