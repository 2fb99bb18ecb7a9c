"""The store floor of a join: the store operations a join makes, on the same etcd at the same
moment, through the product's own store helpers, without the rest of cnm.

What a join asks of the store, in the order it does: the member allocates a uid
(`cnm.store.recipes.allocate_uid`, as `Admissions._allocate`: one read transaction, one
compare-and-set of counter, index and record, under the member's lock); the joiner opens its own
mutual-TLS client (`open_store`), completes its record (`cnm.cluster.writes.update_record`: read,
compare-and-set) and loads its snapshot (`ClusterSnapshot.load`: a range over /cnm/). The keys
live under FLOOR_PREFIX, outside /cnm/, so the agents' snapshots never see them.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from typing import Any

from cnm.cluster.runtime import ClusterTls, open_store
from cnm.cluster.snapshot import ClusterSnapshot
from cnm.cluster.writes import update_record
from cnm.errors import StoreError
from cnm.store.base import Put, Store
from cnm.store.recipes import allocate_uid
from common import Agent, RunFailed, now

PROBE_KEY = "/cnm/ready-probe"
FLOOR_PREFIX = "/cnm-bench/join/"
FLOOR_RECORD = {f"field_{i:02d}": "x" * 16 for i in range(40)}  # ~1.2 kB encoded
ALLOCATION_ATTEMPTS = 50  # as the member's


def _complete(uid: int, record: dict[str, Any]) -> None:
    record["uid"] = uid
    record.pop("joining", None)


async def _join_store_ops(
    member: Store, lock: asyncio.Lock, endpoints: tuple[str, ...], tls: ClusterTls
) -> None:
    index_key = f"{FLOOR_PREFIX}node-keys/{secrets.token_hex(16)}"

    def record(uid: int) -> list[Put]:
        document = {**FLOOR_RECORD, "uid": uid, "joining": True}
        return [Put(f"{FLOOR_PREFIX}nodes/{uid}", json.dumps(document).encode())]

    async with lock:
        uid, created = await allocate_uid(
            member,
            counter_key=f"{FLOOR_PREFIX}counter",
            index_key=index_key,
            puts=record,
            attempts=ALLOCATION_ATTEMPTS,
        )
    if not created:
        raise RunFailed("store floor: a fresh node key was already allocated")
    joiner = open_store(endpoints, tls)
    try:
        await update_record(joiner, f"{FLOOR_PREFIX}nodes/{uid}", lambda r: _complete(uid, r))
        await ClusterSnapshot(joiner).load()
    finally:
        # Not part of a join (the joiner keeps its client); closing is quick either way.
        await joiner.close()


async def _store_floor(endpoints: tuple[str, ...], tls: ClusterTls, joins: int) -> float:
    member = open_store(endpoints, tls)
    try:
        await member.get(PROBE_KEY)  # untimed: the member's client is warm in a real join
        lock = asyncio.Lock()
        start = now()
        await asyncio.gather(*(_join_store_ops(member, lock, endpoints, tls) for _ in range(joins)))
        return now() - start
    finally:
        await member.close()


def store_floor(member: Agent, endpoints: tuple[str, ...], joins: int = 1) -> float:
    """Seconds for the store operations of `joins` joins at once (allocations serialised as on
    one member, the joiners' parts in parallel), through the member agent's TLS files."""
    try:
        return asyncio.run(_store_floor(endpoints, ClusterTls.under(member.data_dir), joins))
    except StoreError as exc:
        raise RunFailed(f"store floor: {exc.message}") from None
