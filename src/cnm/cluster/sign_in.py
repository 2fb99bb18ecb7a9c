"""Failed sign-ins and the lockout of a (user, client address) pair, counted in the store.

Each failed password sign-in of an existing user from a client address is counted in one record
per pair (`/cnm/sign-in-failures/<uid>/<address>`, `SignInFailures`), so every node agrees on it:
an attacker cannot spread its guesses over the nodes. `lockout_threshold` failures within
`lockout_counter_reset` seconds lock the pair for `lockout_duration` seconds (the cluster policy;
Vault's defaults, 5 / 15 min / 15 min). A locked pair is refused before any password check.

Only the pair is locked, never the user: failures from one address never lock the user out of
an address that has not failed, so an attacker cannot lock the only admin out. A successful
sign-in from the pair clears its count; an admin can unlock a pair or all of a user's pairs.
"""

from __future__ import annotations

from dataclasses import dataclass

from cnm.cluster import model
from cnm.cluster.records import ClusterRecord, SignInFailures
from cnm.cluster.settings import policy_value
from cnm.cluster.snapshot import ClusterSnapshot
from cnm.cluster.writes import update_record, wait_for_revision
from cnm.store.base import Delete, Store


@dataclass(frozen=True)
class LockoutPolicy:
    threshold: int
    counter_reset: float
    duration: float

    @classmethod
    def of(cls, cluster: ClusterRecord | None) -> LockoutPolicy:
        record = cluster or ClusterRecord()
        return cls(
            threshold=policy_value(record, "lockout_threshold"),
            counter_reset=policy_value(record, "lockout_counter_reset"),
            duration=policy_value(record, "lockout_duration"),
        )


def failures_of(snapshot: ClusterSnapshot, uid: int, client: str) -> SignInFailures | None:
    record = snapshot.record(model.sign_in_key(uid, client))
    return record if isinstance(record, SignInFailures) else None


def locked_for(snapshot: ClusterSnapshot, uid: int, client: str, now: float) -> float:
    """Seconds the pair stays locked (0: not locked)."""
    record = failures_of(snapshot, uid, client)
    return max(0.0, record.locked_until - now) if record is not None else 0.0


def counted(record: SignInFailures, policy: LockoutPolicy, now: float) -> SignInFailures:
    """`record` after one more failure at `now`."""
    if record.locked_until > now:
        return record  # already locked: refused before any check, nothing to count
    expired = record.locked_until > 0 or now - record.window_start >= policy.counter_reset
    failures = 1 if expired or record.failures == 0 else record.failures + 1
    start = now if failures == 1 else record.window_start
    locked_until = now + policy.duration if failures >= policy.threshold else 0.0
    return record.changed(failures=failures, window_start=start, locked_until=locked_until)


async def record_failure(
    store: Store, snapshot: ClusterSnapshot, uid: int, client: str, now: float
) -> SignInFailures:
    """Count a failed sign-in of user `uid` from `client`; the record as written, once this
    node's snapshot shows it (the next attempt is checked against the snapshot)."""
    policy = LockoutPolicy.of(snapshot.cluster())
    record, revision = await update_record(
        store,
        model.sign_in_key(uid, client),
        SignInFailures,
        lambda current: counted(current, policy, now),
        default=SignInFailures(uid=uid, client=client),
    )
    if revision:
        await wait_for_revision(snapshot, revision)
    return record


async def clear_failures(store: Store, snapshot: ClusterSnapshot, uid: int, client: str) -> None:
    """After a successful sign-in: forget the pair's failures (a store write only if any)."""
    if failures_of(snapshot, uid, client) is not None:
        result = await store.txn([], [Delete(model.sign_in_key(uid, client))])
        await wait_for_revision(snapshot, result.revision)


def pairs_of(snapshot: ClusterSnapshot, uid: int) -> list[SignInFailures]:
    """The user's counted pairs, by address."""
    prefix = f"{model.SIGN_IN_PREFIX}{uid}/"
    found = []
    for key in snapshot.keys_under(prefix):
        record = snapshot.record(key)
        if isinstance(record, SignInFailures):
            found.append(record)
    return sorted(found, key=lambda record: record.client)


async def unlock(
    store: Store, snapshot: ClusterSnapshot, uid: int, client: str | None = None
) -> tuple[list[str], int]:
    """Forget the failures (and lock) of one pair, or of all the user's pairs; (the addresses
    unlocked, the revision of the write: 0 when there was nothing)."""
    clients = [r.client for r in pairs_of(snapshot, uid) if client is None or r.client == client]
    if not clients:
        return [], 0
    result = await store.txn([], [Delete(model.sign_in_key(uid, c)) for c in clients])
    return clients, result.revision
