"""Sequences of store calls that cnm runs as one step: a uid allocated once per key, a learner
added, a learner promoted, the `initial-cluster` of a new member.

They use only the `Store` contract, so the product (cluster/membership.py, cluster/voters.py)
and the benchmarks' raw-store baselines (bench/) run the very same calls.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Sequence

from cnm.errors import StoreError, StoreUnavailable
from cnm.store.base import Compare, Get, Member, Put, Store

log = logging.getLogger(__name__)


def _counter_value(raw: bytes) -> int:
    document = json.loads(raw)
    return int(document["last"])


def _encode(document: dict[str, int]) -> bytes:
    # The same bytes as cluster.model.encode: compact, sorted keys.
    return json.dumps(document, separators=(",", ":"), sort_keys=True).encode()


async def allocate_uid(
    store: Store,
    *,
    counter_key: str,
    index_key: str,
    puts: Callable[[int], Sequence[Put]],
    attempts: int,
    what: str = "uid",
    then: str = "retry",
) -> tuple[int, bool]:
    """The uid recorded under `index_key`, or the next one of the counter at `counter_key`
    (`{"last": n}`), written in one compare-and-set with `index_key` (`{"uid": n}`) and
    `puts(uid)`. Returns (uid, created): False when `index_key` already named one (an earlier
    attempt of the same caller). Atomic and retryable; lost races are retried up to `attempts`
    times, then `StoreUnavailable` saying it could not allocate `what` and to `then`."""
    for _ in range(attempts):
        found = await store.txn([Compare.exists(index_key)], [Get(index_key)], [Get(counter_key)])
        if found.succeeded:
            return int(json.loads(found.reads[0][0].value)["uid"]), False
        counter = found.reads[0][0] if found.reads and found.reads[0] else None
        uid = (_counter_value(counter.value) if counter else 0) + 1
        guard = (
            Compare.mod(counter_key, "=", counter.mod_revision)
            if counter
            else Compare.absent(counter_key)
        )
        result = await store.txn(
            [guard, Compare.absent(index_key)],
            [
                Put(counter_key, _encode({"last": uid})),
                Put(index_key, _encode({"uid": uid})),
                *puts(uid),
            ],
        )
        if result.succeeded:
            return uid, True
    raise StoreUnavailable(
        f"could not allocate a {what} after {attempts} attempts under contention; {then}"
    )


async def add_learner(store: Store, peer_url: str) -> tuple[Member, bool]:
    """This peer URL's member, added as a learner unless an earlier attempt added it already.
    Returns (member, fresh): fresh when just added (its data directory must start empty).
    Removes first a learner left behind by someone else (the store allows one at a time).
    Raises `MembershipChangeRefused` when the store refuses the add (retry a transient one)."""
    members = await store.member_list()
    for member in members:
        if peer_url in member.peer_urls:
            return member, False
    for member in members:
        if member.is_learner:
            log.warning(
                "removing learner %s left by a node that died while becoming a voter",
                member.peer_urls,
            )
            await store.member_remove(member.id)
    added = await store.member_add([peer_url], learner=True)
    return added[0], True


async def promote_learner(
    store: Store,
    member: Member,
    *,
    timeout: float,
    interval: float = 0.05,
    alive: Callable[[], bool] | None = None,
) -> None:
    """Promote `member` once the store says it is in sync with the leader, asking every
    `interval` seconds. A voter already is: nothing to do. Raises `StoreError` when it is not
    promoted within `timeout` seconds or `alive()` turns False (its process exited)."""
    if not member.is_learner:
        return
    deadline = time.monotonic() + timeout
    peer = member.peer_urls[0] if member.peer_urls else str(member.id)
    while not await store.member_promote(member.id):
        if alive is not None and not alive():
            raise StoreError(f"the store learner {peer} exited before it was promoted")
        if time.monotonic() > deadline:
            raise StoreError(f"the store learner {peer} did not catch up within {timeout:.0f} s")
        await asyncio.sleep(interval)


def initial_cluster(members: Sequence[Member], *, peer_url: str, name: str) -> str:
    """etcd's `--initial-cluster` for the new member at `peer_url` called `name`: every member
    as `name=peer_url`. A member added but not started yet has no name in the list."""
    parts = []
    for member in members:
        member_name = name if peer_url in member.peer_urls else member.name
        if member_name and member.peer_urls:
            parts.append(f"{member_name}={member.peer_urls[0]}")
    return ",".join(parts)
