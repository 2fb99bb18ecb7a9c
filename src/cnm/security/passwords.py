"""Password hashing (argon2id) and off-loop verification with a short-lived success cache.

Owns how user passwords are stored (PHC-format argon2id strings, never plaintext) and how the
API checks them without blocking the event loop: every request carries Basic credentials, and a
~40 ms argon2 verification per request would both stall the loop and cap throughput, so
`PasswordVerifier` runs them in a small thread pool and remembers recent successes for a few
seconds under an HMAC of the credentials (never the password itself), renewed on each use.

The queue of verifications is bounded (`max_queue`, waiting and running): beyond it a sign-in is
refused at once with 429 and `Retry-After` rather than answered late, so a flood of guesses
cannot make every other client wait behind it; and a verification whose client has gone by the
time a worker is free is not run at all.

Requests that arrive with the same credentials while they are being checked wait for that one
check instead of queueing their own (single flight): a client polling over 16 connections
whose cache entry just expired costs one argon2 run, not 16 (on one core, 16 runs stalled every
connection for over half a second). Each waiter still gets its own answer, so a failure is
counted once per request by the caller, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import os
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

from cnm.errors import BadRequest, ClientDisconnected, TooManyRequests

# argon2id with t=3 passes over m=24 MiB, one lane. OWASP's minimum for argon2id is t=2 with
# 19 MiB (or t=3 with 12 MiB); this is stronger on both axes. Measured on the 2-core target
# machine: ~35-40 ms per hash or verify (t=2/19 MiB: ~18 ms; t=2/32 MiB: ~45 ms, too close to the
# 50 ms budget under load; argon2-cffi's default t=3/64 MiB/p=4: ~105 ms). One lane because the
# verifier already runs two verifications in parallel on two cores, so extra lanes would only
# contend; peak memory is 2 x 24 MiB. Hashes carry their own parameters, so raising them later
# keeps old hashes verifiable.
_HASHER = PasswordHasher(time_cost=3, memory_cost=24576, parallelism=1, type=Type.ID)
WORKERS = 2
# Verifications waiting or running: at ~40 ms each on two workers, the last one in a full queue
# is answered within ~0.3 s.
MAX_QUEUE = 16
# Added to the worker threads' nice value (see `_lower_priority`).
WORKER_NICENESS = 10
GoneCheck = Callable[[], Awaitable[bool]]


def _encode(password: str) -> bytes:
    # str.encode raises on lone surrogates (which json.loads happily produces from "\ud800");
    # callers get a clean error instead of a UnicodeEncodeError from deep inside argon2.
    return password.encode("utf-8")


def hash_password(password: str) -> str:
    """A PHC-format argon2id hash ("$argon2id$v=19$m=...") of `password`, salted at random."""
    try:
        encoded = _encode(password)
    except UnicodeEncodeError:
        raise BadRequest("password is not valid Unicode text") from None
    return _HASHER.hash(encoded)


def verify_password(password_hash: str, password: str) -> bool:
    """Whether `password` matches `password_hash`. False, never an exception, for a wrong
    password, a hash that is not a valid argon2 string, or a password that cannot be encoded."""
    try:
        return _HASHER.verify(password_hash, _encode(password))
    except (VerificationError, InvalidHashError, UnicodeEncodeError):
        return False


def _lower_priority() -> None:
    """Run this worker thread at a lower CPU priority than the event loop: under a flood of
    guesses the argon2 runs would otherwise take both cores from the loop that serves every
    other request (cached sign-ins, tokens). On Linux a nice value is per thread, and `who=0`
    names the calling thread."""
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, 0, os.getpriority(os.PRIO_PROCESS, 0) + WORKER_NICENESS)


class PasswordVerifier:
    """Verifies passwords off the event loop, in a small ThreadPoolExecutor (max_workers=2), with a
    short-lived cache of SUCCESSFUL verifications keyed by an HMAC-SHA256 (random 32-byte key per
    instance) of (username, password, password_hash); failures are never cached.

    Failures are not cached so that a wrong password always costs a full argon2 run (no fast path
    for guessing). The hash is part of the key, so a changed password misses the cache even before
    `flush()`. A per-instance random HMAC key means a memory dump of the cache cannot be attacked
    offline faster than the argon2 hashes themselves. Entries expire `ttl_seconds` after their
    last use (sliding: a busy poller is never sent back to the queue); beyond `max_entries` the
    oldest are evicted. At most `max_queue` verifications wait or run (`TooManyRequests` beyond).
    """

    def __init__(
        self,
        *,
        ttl_seconds: float = 30.0,
        max_entries: int = 10000,
        max_queue: int = MAX_QUEUE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl_seconds < 0 or max_entries < 0:
            raise ValueError("ttl_seconds and max_entries must not be negative")
        self._ttl = ttl_seconds
        self._max_entries = max_entries
        self._clock = clock
        self._key = secrets.token_bytes(32)
        # digest -> expiry time. Insertion order == expiry order (fixed TTL, monotonic clock),
        # so both expired and oldest entries are at the front.
        self._cache: OrderedDict[bytes, float] = OrderedDict()
        # flush() may come from another thread (e.g. a store watcher); the lock is held only
        # for dictionary operations, never across a verification.
        self._lock = threading.Lock()
        # Bumped by flush(): a verification that started before a flush must not repopulate
        # the cache with a result about a user that has since changed.
        self._generation = 0
        self._executor = ThreadPoolExecutor(
            max_workers=WORKERS, thread_name_prefix="cnm-passwords", initializer=_lower_priority
        )
        self._max_queue = max_queue
        # One semaphore per event loop (asyncio primitives bind to the loop that first uses them).
        self._slots: tuple[asyncio.AbstractEventLoop, asyncio.Semaphore] | None = None
        # Sign-ins refused because the queue was full / skipped because their client had gone.
        self.refused_full = 0
        self.skipped_gone = 0
        # Verifications handed to the threads and not finished yet (the metrics' queue depth);
        # changed on the event loop only.
        self._pending = 0
        # Checks under way, by cache key: later requests with the same credentials await the
        # same answer (None: the check was not run, its requester left; they try themselves).
        # Event loop only, like `_pending`.
        self._in_flight: dict[bytes, asyncio.Future[bool | None]] = {}
        # argon2 runs started (tests and benchmarks count them).
        self.runs = 0

    @property
    def pending(self) -> int:
        """Verifications queued or running now."""
        return self._pending

    @property
    def cached_entries(self) -> int:
        """How many unexpired successful verifications are cached."""
        with self._lock:
            self._prune(self._clock())
            return len(self._cache)

    def _cache_key(self, username: str, password: str, password_hash: str) -> bytes:
        mac = hmac.new(self._key, digestmod=hashlib.sha256)
        for part in (username, password, password_hash):
            # Length-prefixed so that ("ab", "c") and ("a", "bc") differ; surrogatepass so any
            # str, even one argon2 would reject, yields a key instead of an exception.
            data = part.encode("utf-8", "surrogatepass")
            mac.update(len(data).to_bytes(8, "big"))
            mac.update(data)
        return mac.digest()

    def _prune(self, now: float) -> None:
        """Drop expired entries from the front. Caller holds the lock."""
        while self._cache:
            key, expiry = next(iter(self._cache.items()))
            if expiry > now:
                break
            del self._cache[key]

    def _semaphore(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        if self._slots is None or self._slots[0] is not loop:
            self._slots = (loop, asyncio.Semaphore(WORKERS))
        return self._slots[1]

    async def verify(
        self, username: str, password: str, password_hash: str, *, gone: GoneCheck | None = None
    ) -> bool:
        """Whether `password` is right for `username` whose stored hash is `password_hash`.
        `TooManyRequests` when the queue is full; `ClientDisconnected` when `gone()` says the
        client left before its turn came."""
        key = self._cache_key(username, password, password_hash)
        while True:
            if self._cached(key):
                return True
            running = self._in_flight.get(key)
            if running is None:
                break
            # Shielded: a waiter that is cancelled (its client left) must not cancel the check
            # the others wait for.
            shared = await asyncio.shield(running)
            if shared is not None:
                return shared
            # The check was dropped (its own client left before its turn): try again.
        loop = asyncio.get_running_loop()
        flight: asyncio.Future[bool | None] = loop.create_future()
        self._in_flight[key] = flight
        result: bool | None = None
        try:
            result = await self._check(key, password, password_hash, gone)
            return result
        finally:
            del self._in_flight[key]
            flight.set_result(result)

    def _cached(self, key: bytes) -> bool:
        """Whether `key` is a cached success (renewing it when it is)."""
        with self._lock:
            now = self._clock()
            self._prune(now)
            if key not in self._cache:
                return False
            if self._ttl > 0:
                # Sliding: a renewed entry moves to the back, keeping expiry order.
                self._cache.move_to_end(key)
                self._cache[key] = now + self._ttl
            return True

    async def _check(
        self, key: bytes, password: str, password_hash: str, gone: GoneCheck | None
    ) -> bool:
        """One argon2 run in the pool, within the queue's bound; a success is cached."""
        with self._lock:
            generation = self._generation
        if self._pending >= self._max_queue:
            self.refused_full += 1
            raise TooManyRequests(
                "too many sign-ins are being checked right now; retry in a second", retry_after=1
            )
        loop = asyncio.get_running_loop()
        self._pending += 1
        try:
            async with self._semaphore():
                if gone is not None and await gone():
                    self.skipped_gone += 1
                    raise ClientDisconnected("the client left before its password was checked")
                self.runs += 1
                ok = await loop.run_in_executor(
                    self._executor, verify_password, password_hash, password
                )
        finally:
            self._pending -= 1
        if ok:
            self._remember_key(key, generation)
        return ok

    def remember(self, username: str, password: str, password_hash: str) -> None:
        """Cache a success proven elsewhere: this node just made `password_hash` from
        `password` (create), or the cluster accepted these credentials against this very hash
        (join). Spares the client's first request a full argon2 run."""
        with self._lock:
            generation = self._generation
        self._remember_key(self._cache_key(username, password, password_hash), generation)

    def _remember_key(self, key: bytes, generation: int) -> None:
        if self._ttl <= 0 or self._max_entries <= 0:
            return
        with self._lock:
            if generation != self._generation:
                return
            now = self._clock()
            self._cache.pop(key, None)
            self._cache[key] = now + self._ttl
            self._prune(now)
            while len(self._cache) > self._max_entries:
                self._cache.popitem(last=False)

    @property
    def generation(self) -> int:
        """How many times the cache was flushed: a result worked out before a change must not
        be remembered after it (see `RecentSignIns` in api/auth.py)."""
        return self._generation

    @property
    def ttl(self) -> float:
        """How long a success stays cached after its last use."""
        return self._ttl

    def flush(self) -> None:
        """Forget every cached success (call whenever any user is changed or removed)."""
        with self._lock:
            self._generation += 1
            self._cache.clear()

    def close(self) -> None:
        """Stop the worker threads and forget the cache. Does not wait for a running
        verification, so it is safe to call from the event loop."""
        self.flush()
        self._executor.shutdown(wait=False, cancel_futures=True)
