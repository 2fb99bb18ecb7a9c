"""The store floor of a join: the store operations a join makes, on the same etcd at the same
moment, through the product's own store helpers, without the rest of cnm.

What a join asks of the store, in the order it does: the member allocates a uid
(`cnm.cluster.writes.allocate_uid`, as `Admissions._allocate`: a read of the counter, one
compare-and-set of counter, index and record, under the member's lock); the joiner opens its own
mutual-TLS client (`open_store`), completes its record (`cnm.cluster.writes.update_record`: read,
compare-and-set) and loads its snapshot (`ClusterSnapshot.load`: a range over /cnm/). The keys
live under FLOOR_PREFIX, outside /cnm/, so the agents' snapshots never see them.

With etcd authentication on, a join also makes the node's etcd user (`put_store_user`, in the
member's `root` session) and the joiner's fresh client authenticates before its first call. The
floor does both; its clients run as etcd's `root` (nodes may write only under /cnm/), which
costs etcd the same checks, and the floor's users are deleted afterwards, untimed.
"""

from __future__ import annotations

import asyncio
import secrets

from cnm.cluster import model
from cnm.cluster.records import NodeKeyIndex, Record
from cnm.cluster.runtime import open_store
from cnm.cluster.snapshot import ClusterSnapshot
from cnm.cluster.writes import UidClaim, allocate_uid, update_record
from cnm.errors import StoreError
from cnm.node.data_dir import ClusterTls
from cnm.store import etcd_auth
from cnm.store.base import Compare, Put, Store
from cnm.store.etcd import EtcdStore
from cnm.store.etcd_wire import client_tls_context
from common import Agent, RunFailed, now

PROBE_KEY = "/cnm/ready-probe"
FLOOR_PREFIX = "/cnm-bench/join/"
FLOOR_RECORD = {f"field_{i:02d}": "x" * 16 for i in range(40)}  # ~1.2 kB encoded
ALLOCATION_ATTEMPTS = 50  # as the member's


def _complete(uid: int, record: Record) -> Record:
    document = {**record.document(), "uid": uid}
    document.pop("joining", None)
    return Record.model_validate(document)


async def _admin_password(endpoints: tuple[str, ...], tls: ClusterTls) -> str | None:
    node = open_store(endpoints, tls)
    try:
        found = await node.get(model.STORE_ADMIN_KEY)
    finally:
        await node.close()
    return etcd_auth.admin_password(found.value) if found is not None else None


def _open(endpoints: tuple[str, ...], tls: ClusterTls, admin: str | None) -> Store:
    """A client as the product opens one; as `root` when the store has auth (see above)."""
    if admin is None:
        return open_store(endpoints, tls)
    cert_file, key_file = tls.store_client_files()
    context = client_tls_context(str(tls.ca_file), str(cert_file), str(key_file))
    root = etcd_auth.StoreCredentials(etcd_auth.ROOT_USER, admin)
    return EtcdStore(endpoints, tls=context, timeout=3.0, credentials=lambda: root, admin_key=None)


async def _join_store_ops(
    member: Store,
    lock: asyncio.Lock,
    endpoints: tuple[str, ...],
    tls: ClusterTls,
    admin: str | None,
    users: list[str],
) -> None:
    index_key = f"{FLOOR_PREFIX}node-keys/{secrets.token_hex(16)}"

    def claim(uid: int) -> UidClaim:
        document = Record.model_validate({**FLOOR_RECORD, "uid": uid, "joining": True})
        return UidClaim(
            compares=[Compare.absent(index_key)],
            ops=[
                Put(index_key, NodeKeyIndex(uid=uid).encode()),
                Put(f"{FLOOR_PREFIX}nodes/{uid}", document.encode()),
            ],
        )

    async with lock:
        allocated = await allocate_uid(
            member,
            f"{FLOOR_PREFIX}counter",
            claim,
            what="the floor's uid counter",
            attempts=ALLOCATION_ATTEMPTS,
        )
    uid = allocated.uid
    if not allocated.created:
        raise RunFailed("store floor: a fresh node key was already allocated")
    if admin is not None:
        user = f"bench-floor:{secrets.token_hex(8)}"
        users.append(user)
        await member.put_store_user(user, etcd_auth.new_password())
    joiner = _open(endpoints, tls, admin)
    try:
        await update_record(
            joiner, f"{FLOOR_PREFIX}nodes/{uid}", Record, lambda r: _complete(uid, r)
        )
        await ClusterSnapshot(joiner).load()
    finally:
        # Not part of a join (the joiner keeps its client); closing is quick either way.
        await joiner.close()


async def _store_floor(endpoints: tuple[str, ...], tls: ClusterTls, joins: int) -> float:
    admin = await _admin_password(endpoints, tls)
    member = _open(endpoints, tls, admin)
    users: list[str] = []
    try:
        await member.get(PROBE_KEY)  # untimed: the member's client is warm in a real join
        lock = asyncio.Lock()
        start = now()
        await asyncio.gather(
            *(_join_store_ops(member, lock, endpoints, tls, admin, users) for _ in range(joins))
        )
        return now() - start
    finally:
        for user in users:
            await member.delete_store_user(user)
        await member.close()


def store_floor(member: Agent, endpoints: tuple[str, ...], joins: int = 1) -> float:
    """Seconds for the store operations of `joins` joins at once (allocations serialised as on
    one member, the joiners' parts in parallel), through the member agent's TLS files."""
    try:
        return asyncio.run(_store_floor(endpoints, ClusterTls.under(member.data_dir), joins))
    except StoreError as exc:
        raise RunFailed(f"store floor: {exc.message}") from None
