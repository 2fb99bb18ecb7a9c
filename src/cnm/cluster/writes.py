"""What the API's writes share: read-your-writes on the writing node, and the token secret.

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
from collections.abc import Callable
from typing import Any

from cnm.cluster import model
from cnm.cluster.snapshot import ClusterSnapshot
from cnm.errors import StoreError
from cnm.security.tokens import decode_secret, new_secret
from cnm.store.base import Compare, Put, Store

log = logging.getLogger(__name__)

READ_YOUR_WRITES_TIMEOUT = 3.0


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
    record = snapshot.get(model.JWT_SECRET_KEY)
    if record is None:
        await store.create(model.JWT_SECRET_KEY, model.encode({"secret": new_secret()}))
        stored = await store.get(model.JWT_SECRET_KEY)
        if stored is None:
            raise StoreError("the token secret vanished right after it was written")
        await wait_for_revision(snapshot, stored.mod_revision)
        record = model.decode(stored.value)
    return decode_secret(str(record["secret"]))


async def update_record(
    store: Store,
    key: str,
    change: Callable[[dict[str, Any]], None],
    *,
    attempts: int = 20,
) -> None:
    """Read-modify-write one JSON record with compare-and-set, retrying lost races: `change`
    edits the decoded record in place. Raises `StoreError` when the record does not exist or
    keeps changing for `attempts` rounds."""
    for _ in range(attempts):
        current = await store.get(key)
        if current is None:
            raise StoreError(f"record {key} does not exist")
        record = model.decode(current.value)
        change(record)
        result = await store.txn(
            [Compare.mod(key, "=", current.mod_revision)], [Put(key, model.encode(record))]
        )
        if result.succeeded:
            return
    raise StoreError(f"record {key} kept changing; gave up after {attempts} attempts")
