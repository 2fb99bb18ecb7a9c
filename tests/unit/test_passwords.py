"""Unit tests of cnm.security.passwords: argon2id hashing and the caching async verifier."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest

from cnm.errors import BadRequest, ClientDisconnected, TooManyRequests
from cnm.security import passwords
from cnm.security.passwords import PasswordVerifier, hash_password, verify_password


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def pw_hash() -> str:
    return hash_password("correct horse")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def verifier(clock: FakeClock) -> Iterator[PasswordVerifier]:
    v = PasswordVerifier(ttl_seconds=30.0, max_entries=100, clock=clock)
    yield v
    v.close()


def test_hash_is_argon2id_and_salted(pw_hash: str) -> None:
    assert pw_hash.startswith("$argon2id$v=19$")
    assert "correct horse" not in pw_hash
    assert hash_password("correct horse") != pw_hash  # random salt


def test_verify_password(pw_hash: str) -> None:
    assert verify_password(pw_hash, "correct horse")
    assert not verify_password(pw_hash, "correct horse ")
    assert not verify_password(pw_hash, "")
    assert not verify_password(pw_hash, "\ud800")  # lone surrogate, as json.loads can produce


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "garbage",
        "$argon2id$",
        "$2b$12$abcdefghijklmnopqrstuv",
        "$argon2id$v=19$m=abc,t=2,p=1$x$y",
    ],
)
def test_verify_password_garbage_hash_is_false(garbage: str) -> None:
    assert verify_password(garbage, "correct horse") is False


def test_truncated_hash_is_false(pw_hash: str) -> None:
    assert verify_password(pw_hash[:-4], "correct horse") is False


def test_hash_rejects_unencodable_password() -> None:
    with pytest.raises(BadRequest):
        hash_password("\udc80")


def test_unicode_password_round_trip() -> None:
    h = hash_password("pässwörd 🔑")
    assert verify_password(h, "pässwörd 🔑")
    assert not verify_password(h, "passwort 🔑")


async def test_success_is_cached(
    verifier: PasswordVerifier, pw_hash: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Count the argon2 verifications (the real function still runs): a cache hit runs none.
    # Whether a hit is also fast is for the benchmarks to measure.
    calls: list[str] = []

    def counting_verify(password_hash: str, password: str) -> bool:
        calls.append(password)
        return verify_password(password_hash, password)

    monkeypatch.setattr(passwords, "verify_password", counting_verify)
    assert verifier.cached_entries == 0
    assert await verifier.verify("admin", "correct horse", pw_hash)
    assert verifier.cached_entries == 1
    assert len(calls) == 1

    for _ in range(10):
        assert await verifier.verify("admin", "correct horse", pw_hash)
    assert verifier.cached_entries == 1
    assert len(calls) == 1  # ten hits, no further argon2 run


async def test_failures_are_not_cached(verifier: PasswordVerifier, pw_hash: str) -> None:
    for _ in range(2):
        assert not await verifier.verify("admin", "wrong", pw_hash)
    assert not await verifier.verify("admin", "correct horse", "not a hash")
    assert verifier.cached_entries == 0


async def test_cache_key_covers_user_password_and_hash(
    verifier: PasswordVerifier, pw_hash: str
) -> None:
    assert await verifier.verify("admin", "correct horse", pw_hash)
    # A cached success for admin does not vouch for a wrong password or another hash.
    assert not await verifier.verify("admin", "correct horsE", pw_hash)
    assert not await verifier.verify("admin", "correct horse", hash_password("new password"))
    assert await verifier.verify("other", "correct horse", pw_hash)  # real check, then cached
    assert verifier.cached_entries == 2


async def test_changed_hash_misses(verifier: PasswordVerifier, pw_hash: str) -> None:
    assert await verifier.verify("admin", "correct horse", pw_hash)
    new_hash = hash_password("correct horse")  # same password, re-set: new salt, new hash
    assert await verifier.verify("admin", "correct horse", new_hash)
    assert verifier.cached_entries == 2  # the new hash was a miss, verified and cached anew


async def test_flush_empties_cache(verifier: PasswordVerifier, pw_hash: str) -> None:
    assert await verifier.verify("admin", "correct horse", pw_hash)
    assert await verifier.verify("bob", "correct horse", pw_hash)
    assert verifier.cached_entries == 2
    verifier.flush()
    assert verifier.cached_entries == 0
    assert await verifier.verify("admin", "correct horse", pw_hash)
    assert verifier.cached_entries == 1


async def test_flush_during_verification_wins(
    verifier: PasswordVerifier, pw_hash: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The verification is held inside the pool until the flush has happened, so the flush
    # lands during it for certain (events, not a sleep).
    started, release = threading.Event(), threading.Event()

    def held_verify(password_hash: str, password: str) -> bool:
        started.set()
        assert release.wait(10), "the test never released the verification"
        return verify_password(password_hash, password)

    monkeypatch.setattr(passwords, "verify_password", held_verify)
    task = asyncio.create_task(verifier.verify("admin", "correct horse", pw_hash))
    assert await asyncio.to_thread(started.wait, 10)
    verifier.flush()
    release.set()
    assert await task
    assert verifier.cached_entries == 0


async def test_ttl_expiry_slides_on_use(
    verifier: PasswordVerifier, clock: FakeClock, pw_hash: str
) -> None:
    assert await verifier.verify("admin", "correct horse", pw_hash)
    clock.now += 29.0
    assert verifier.cached_entries == 1
    assert await verifier.verify("admin", "correct horse", pw_hash)  # a hit renews the entry
    clock.now += 29.0
    assert verifier.cached_entries == 1  # 58 s after it was made: still there
    clock.now += 1.0
    assert verifier.cached_entries == 0  # 30 s after its last use
    assert await verifier.verify("admin", "correct horse", pw_hash)
    assert verifier.cached_entries == 1


async def test_a_full_queue_is_refused_at_once(clock: FakeClock, pw_hash: str) -> None:
    v = PasswordVerifier(ttl_seconds=0, max_queue=3, clock=clock)
    try:
        # Distinct guesses: identical ones would share one check (single flight).
        results = await asyncio.gather(
            *(v.verify("admin", f"wrong{i}", pw_hash) for i in range(8)), return_exceptions=True
        )
        refused = [r for r in results if isinstance(r, TooManyRequests)]
        assert len(refused) == 5 and v.refused_full == 5
        assert all(r.details["retry_after"] == 1 for r in refused)
        assert results.count(False) == 3
        assert v.pending == 0
    finally:
        v.close()


async def test_a_verification_whose_client_left_is_not_run(clock: FakeClock, pw_hash: str) -> None:
    v = PasswordVerifier(ttl_seconds=0, clock=clock)
    ran: list[str] = []
    original = passwords.verify_password

    def counting(password_hash: str, password: str) -> bool:
        ran.append(password)
        return original(password_hash, password)

    async def gone() -> bool:
        return True

    async def here() -> bool:
        return False

    passwords.verify_password = counting
    try:
        with pytest.raises(ClientDisconnected):
            await v.verify("admin", "left", pw_hash, gone=gone)
        assert await v.verify("admin", "correct horse", pw_hash, gone=here)
        assert ran == ["correct horse"] and v.skipped_gone == 1
    finally:
        passwords.verify_password = original
        v.close()


async def test_cache_is_bounded_oldest_evicted(clock: FakeClock, pw_hash: str) -> None:
    v = PasswordVerifier(ttl_seconds=30.0, max_entries=2, clock=clock)
    try:
        for user in ("a", "b", "c"):
            assert await v.verify(user, "correct horse", pw_hash)
            clock.now += 1.0
        assert v.cached_entries == 2
        # a, b, c were added at t0, t1, t2 and expire at t30, t31, t32. At t30.5 both remaining
        # entries are still live only if the oldest ("a") was the one evicted.
        clock.now += 27.5
        assert v.cached_entries == 2
        clock.now += 1.0  # t31.5: "b" expires, "c" remains
        assert v.cached_entries == 1
    finally:
        v.close()


async def test_concurrent_verifications(verifier: PasswordVerifier, pw_hash: str) -> None:
    results = await asyncio.gather(
        *(verifier.verify(f"user{i}", "correct horse", pw_hash) for i in range(4)),
        verifier.verify("user9", "wrong", pw_hash),
    )
    assert results == [True, True, True, True, False]
    assert verifier.cached_entries == 4


async def test_zero_ttl_disables_cache(pw_hash: str) -> None:
    v = PasswordVerifier(ttl_seconds=0)
    try:
        assert await v.verify("admin", "correct horse", pw_hash)
        assert v.cached_entries == 0
    finally:
        v.close()


def test_negative_settings_rejected() -> None:
    with pytest.raises(ValueError):
        PasswordVerifier(ttl_seconds=-1)
    with pytest.raises(ValueError):
        PasswordVerifier(max_entries=-1)


async def test_close_forgets_cache(pw_hash: str) -> None:
    v = PasswordVerifier()
    assert await v.verify("admin", "correct horse", pw_hash)
    v.close()
    assert v.cached_entries == 0
    with pytest.raises(RuntimeError):
        await v.verify("admin", "correct horse", pw_hash)


async def test_remember_caches_a_success_proven_elsewhere() -> None:
    verifier = PasswordVerifier()
    try:
        password_hash = hash_password("proven-secret")
        verifier.remember("admin@example.com", "proven-secret", password_hash)
        assert verifier.cached_entries == 1
        assert await verifier.verify("admin@example.com", "proven-secret", password_hash)
        # A different password for the same user is still verified for real (and fails).
        assert not await verifier.verify("admin@example.com", "guess", password_hash)
        verifier.flush()
        assert verifier.cached_entries == 0
    finally:
        verifier.close()


async def test_same_credentials_at_once_share_one_check(clock: FakeClock, pw_hash: str) -> None:
    v = PasswordVerifier(ttl_seconds=30.0, clock=clock)
    try:
        right = await asyncio.gather(
            *(v.verify("admin", "correct horse", pw_hash) for _ in range(16))
        )
        assert right == [True] * 16 and v.runs == 1
        # Failures are shared the same way, each caller gets its own False, and none is cached:
        # the next identical guess runs argon2 again.
        wrong = await asyncio.gather(*(v.verify("admin", "guess", pw_hash) for _ in range(8)))
        assert wrong == [False] * 8 and v.runs == 2
        assert not await v.verify("admin", "guess", pw_hash)
        assert v.runs == 3 and v.pending == 0
    finally:
        v.close()


async def test_a_waiter_checks_itself_when_the_shared_check_was_dropped(
    clock: FakeClock, pw_hash: str
) -> None:
    v = PasswordVerifier(ttl_seconds=30.0, clock=clock)

    async def gone() -> bool:
        return True

    try:
        left, stayed = await asyncio.gather(
            v.verify("admin", "correct horse", pw_hash, gone=gone),
            v.verify("admin", "correct horse", pw_hash),
            return_exceptions=True,
        )
        assert isinstance(left, ClientDisconnected) and stayed is True
        assert v.runs == 1 and v.skipped_gone == 1
    finally:
        v.close()
