"""ClusterSnapshot: every agent's in-memory copy of the cluster's records, kept current by watch.

Requests are answered from the snapshot, never with a store round trip each. The snapshot loads
everything under `/cnm/` at one revision, then watches from the next revision, so no change is
missed; when the watch breaks it reloads and watches again. It knows how fresh it is: after the
store has been unreachable for longer than `stale_after` seconds, `require_fresh()` raises
`StoreUnavailable` rather than presenting stale data as current.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from cnm.cluster import model
from cnm.errors import StoreError, StoreUnavailable
from cnm.store.base import EventType, Store

log = logging.getLogger(__name__)

ChangeListener = Callable[[str], None]


class ClusterSnapshot:
    def __init__(
        self,
        store: Store,
        *,
        stale_after: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._records: dict[str, dict[str, Any]] = {}
        self._revision = 0
        self._stale_after = stale_after
        self._clock = clock
        self._last_contact = float("-inf")
        self._listeners: list[ChangeListener] = []
        self._loaded = asyncio.Event()

    # --- reading --------------------------------------------------------------------------------

    @property
    def revision(self) -> int:
        return self._revision

    def get(self, key: str) -> dict[str, Any] | None:
        return self._records.get(key)

    def under(self, prefix: str) -> list[dict[str, Any]]:
        return [value for key, value in sorted(self._records.items()) if key.startswith(prefix)]

    @property
    def loaded(self) -> bool:
        return self._loaded.is_set()

    def require_fresh(self) -> None:
        if not self._loaded.is_set():
            raise StoreUnavailable("the cluster store has not been read yet; retry shortly")
        silent_for = self._clock() - self._last_contact
        if silent_for > self._stale_after:
            raise StoreUnavailable(
                f"the cluster store has been unreachable for {silent_for:.0f} s; this node "
                "cannot answer with current data (check the store members' health)"
            )

    def user_by_login(self, login: str) -> dict[str, Any] | None:
        index = self._records.get(model.login_key(login))
        if index is None:
            return None
        return self._records.get(model.user_key(int(index["uid"])))

    def add_listener(self, listener: ChangeListener) -> None:
        """`listener(key)` runs on the event loop after each change is applied."""
        self._listeners.append(listener)

    # --- keeping current ------------------------------------------------------------------------

    def mark_contact(self) -> None:
        """Something just proved the store reachable (a keep-alive, a read)."""
        self._last_contact = self._clock()

    async def load(self) -> None:
        items, revision = await self._store.get_prefix(model.PREFIX)
        records: dict[str, dict[str, Any]] = {}
        for kv in items:
            try:
                records[kv.key] = model.decode(kv.value)
            except ValueError:
                log.error("store record %s is not a JSON object; ignored (please report)", kv.key)
        changed = set(records) ^ set(self._records) | {
            key for key in records if self._records.get(key) != records[key]
        }
        self._records = records
        self._revision = revision
        self.mark_contact()
        self._loaded.set()
        for key in sorted(changed):
            self._notify(key)

    async def wait_loaded(self, timeout: float) -> None:
        async with asyncio.timeout(timeout):
            await self._loaded.wait()

    def _notify(self, key: str) -> None:
        for listener in self._listeners:
            try:
                listener(key)
            except Exception:
                log.exception("snapshot listener failed for %s (please report)", key)

    async def run(self) -> None:
        """Load and watch forever; after any break, reload (nothing is missed) with backoff."""
        backoff = 0.1
        # A snapshot loaded just before (create, join, resume) watches on from its revision;
        # after any break it reloads.
        reload = not self._loaded.is_set()
        while True:
            try:
                if reload:
                    await self.load()
                reload = True
                backoff = 0.1
                await self._watch()
            except (StoreUnavailable, StoreError) as exc:
                log.warning("cluster store watch interrupted: %s; retrying", exc.message)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)

    async def _watch(self) -> None:
        stream = self._store.watch_prefix(model.PREFIX, start_revision=self._revision + 1)
        async for event in stream:
            key = event.kv.key
            if event.type is EventType.DELETE:
                self._records.pop(key, None)
            else:
                try:
                    self._records[key] = model.decode(event.kv.value)
                except ValueError:
                    log.error("store record %s is not a JSON object; ignored (please report)", key)
                    continue
            self._revision = max(self._revision, event.kv.mod_revision)
            self.mark_contact()
            self._notify(key)
