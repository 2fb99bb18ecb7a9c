"""The credential caches of `Authenticator` on the in-memory store: a cached Basic success or a
remembered token never outlives a change of its user, failures never come from the cache, and
the caches stay bounded. The verifier is never flushed here (the agent flushes it on any user
change): these tests show that binding the cache to the password hash alone is enough."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from time import time

import pytest

from cnm.api import auth as auth_module
from cnm.api.auth import Authenticator, FailureLimiter, RecentSignIns, SignInAttempt
from cnm.cluster import model
from cnm.cluster.records import (
    ClusterRecord,
    SignInFailures,
    UidCounter,
    UserLoginIndex,
    admin_user_record,
)
from cnm.cluster.snapshot import ClusterSnapshot
from cnm.cluster.users import UserChanges, create_user, delete_user, update_user
from cnm.cluster.writes import token_secret, wait_for_revision
from cnm.errors import SignInLocked, TooManyRequests, Unauthorized
from cnm.security.passwords import PasswordVerifier, hash_password
from cnm.security.tokens import issue_token
from cnm.store.memory import MemoryStore
from harness.agents import basic

NOW = datetime(2025, 6, 1, tzinfo=UTC)
ADMIN = ("admin@example.com", "admin-pass")
USER = ("ann@example.com", "ann-password")


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Cluster:
    store: MemoryStore
    snapshot: ClusterSnapshot


@pytest.fixture
async def cluster() -> AsyncIterator[Cluster]:
    store = MemoryStore()
    await store.put(model.CLUSTER_KEY, ClusterRecord(name="c.example.com").encode())
    admin = admin_user_record(email=ADMIN[0], password_hash=hash_password(ADMIN[1]), created=NOW)
    await store.put(model.user_key(1), admin.encode())
    await store.put(model.login_key(ADMIN[0]), UserLoginIndex(uid=1).encode())
    await store.put(model.USER_UID_COUNTER, UidCounter(last=1).encode())
    made = ClusterSnapshot(store)
    task = asyncio.create_task(made.run())
    await made.wait_loaded(5)
    changes = UserChanges(email=USER[0], password=USER[1], role="cluster_viewer")
    _, revision = await create_user(store, made, changes, NOW)
    assert await wait_for_revision(made, revision)
    yield Cluster(store, made)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


@pytest.fixture
def verifier() -> Iterator[PasswordVerifier]:
    made = PasswordVerifier(ttl_seconds=30.0, max_entries=8)
    yield made
    made.close()


async def _update(cluster: Cluster, uid: int, **changes: str) -> None:
    snapshot = cluster.snapshot
    admin = snapshot.user(1)
    assert admin is not None
    _, revision = await update_user(
        cluster.store, snapshot, uid, UserChanges(**changes), admin, NOW
    )
    assert await wait_for_revision(snapshot, revision)


async def test_a_changed_password_is_refused_on_the_very_next_request(
    cluster: Cluster, verifier: PasswordVerifier
) -> None:
    snapshot = cluster.snapshot
    auth = Authenticator(verifier)
    for _ in range(3):
        assert (await auth.authenticate_password(*USER, snapshot)).email == USER[0]
    assert verifier.runs == 1 and verifier.cached_entries == 1  # served from the cache
    await _update(cluster, 2, password="new-password-1")
    with pytest.raises(Unauthorized, match="invalid username or password"):
        await auth.authenticate_password(*USER, snapshot)
    assert verifier.runs == 2  # the old entry did not answer: a real check refused it
    assert (await auth.authenticate_password(USER[0], "new-password-1", snapshot)).uid == 2


async def test_a_role_change_applies_to_the_next_cached_request(
    cluster: Cluster, verifier: PasswordVerifier
) -> None:
    snapshot = cluster.snapshot
    auth = Authenticator(verifier)
    assert (await auth.authenticate_password(*USER, snapshot)).role == "cluster_viewer"
    await _update(cluster, 2, role="db_member")
    assert (await auth.authenticate_password(*USER, snapshot)).role == "db_member"
    assert verifier.runs == 1  # still the cached success, with the current record's role


async def test_a_deleted_user_is_refused_at_once(
    cluster: Cluster, verifier: PasswordVerifier
) -> None:
    snapshot = cluster.snapshot
    auth = Authenticator(verifier)
    assert (await auth.authenticate_password(*USER, snapshot)).uid == 2
    admin = snapshot.user(1)
    assert admin is not None
    revision = await delete_user(cluster.store, snapshot, 2, admin)
    assert await wait_for_revision(snapshot, revision)
    with pytest.raises(Unauthorized, match="invalid username or password"):
        await auth.authenticate_password(*USER, snapshot)


async def test_a_wrong_password_is_never_answered_from_the_cache(
    cluster: Cluster, verifier: PasswordVerifier
) -> None:
    snapshot = cluster.snapshot
    auth = Authenticator(verifier)
    await auth.authenticate_password(*USER, snapshot)
    for attempt in range(3):
        with pytest.raises(Unauthorized):
            await auth.authenticate_password(USER[0], USER[1] + "x", snapshot)
        assert verifier.runs == 2 + attempt  # every wrong guess is a full argon2 run
    assert verifier.cached_entries == 1


async def test_many_distinct_credentials_stay_within_the_bound(verifier: PasswordVerifier) -> None:
    for i in range(20):
        verifier.remember(f"user{i}", "pw", "hash")
    assert verifier.cached_entries == 8  # max_entries of the fixture


async def test_concurrent_cold_requests_cost_one_check(
    cluster: Cluster, verifier: PasswordVerifier
) -> None:
    snapshot = cluster.snapshot
    auth = Authenticator(verifier)
    users = await asyncio.gather(*(auth.authenticate_password(*USER, snapshot) for _ in range(16)))
    assert {user.uid for user in users} == {2}
    assert verifier.runs == 1


async def test_remembered_tokens_expire_and_stay_bounded(
    cluster: Cluster, verifier: PasswordVerifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    snapshot = cluster.snapshot
    monkeypatch.setattr(auth_module, "MAX_VERIFIED_TOKENS", 4)
    clock = Clock()
    auth = Authenticator(verifier, clock=clock)
    secret = await token_secret(cluster.store, snapshot)
    user = snapshot.user(2)
    assert user is not None

    def token(ttl: int) -> str:
        return issue_token(
            secret, user_uid=2, password_hash=user.password_hash, ttl=ttl, now=clock.now
        )

    short = token(10)
    assert auth.authenticate_token(short, snapshot).uid == 2
    assert auth.token_claims(f"JWT {short}") is not None  # remembered
    clock.now += 10
    with pytest.raises(Unauthorized, match="expired"):
        auth.authenticate_token(short, snapshot)
    tokens = []
    for _ in range(10):
        clock.now += 1  # a new `iat` and `jti`: ten distinct tokens
        tokens.append(token(300))
        auth.authenticate_token(tokens[-1], snapshot)
    remembered = [t for t in tokens if auth.token_claims(f"JWT {t}") is not None]
    assert remembered == tokens[-4:]


async def test_recognise_answers_without_the_password_path_only_what_it_may(
    cluster: Cluster, verifier: PasswordVerifier
) -> None:
    """`recognise` (no await, no request object: what a poller costs) answers tokens and Basic
    headers that signed in recently; anything else is left to `authenticate`."""
    snapshot = cluster.snapshot
    auth = Authenticator(verifier)
    secret = await token_secret(cluster.store, snapshot)
    user = snapshot.user(2)
    assert user is not None
    token = issue_token(secret, user_uid=2, password_hash=user.password_hash, ttl=60, now=time())
    recognised = auth.recognise(f"JWT {token}", snapshot, "192.0.2.9")
    assert recognised is not None and recognised.uid == 2
    with pytest.raises(Unauthorized):  # a bad token is refused here, not passed on
        auth.recognise(f"JWT {token}x", snapshot, "192.0.2.9")
    header = basic(*USER)["Authorization"]
    assert auth.recognise(header, snapshot, "192.0.2.9") is None  # never signed in yet
    assert auth.recognise(None, snapshot, "192.0.2.9") is None
    attempt = SignInAttempt(client="192.0.2.9", store=cluster.store)
    assert (await auth.authenticate(header, snapshot, attempt)).uid == 2
    recognised = auth.recognise(header, snapshot, "192.0.2.9")
    assert recognised is not None and recognised.uid == 2
    # An address over its failure rate needs the full path (which refuses it).
    for _ in range(20):
        auth.limiter.failed("192.0.2.10", time())
    assert auth.recognise(header, snapshot, "192.0.2.10") is None
    with pytest.raises(TooManyRequests):
        await auth.authenticate(header, snapshot, SignInAttempt(client="192.0.2.10"))


# The header fast path (`RecentSignIns`): a poller's repeated Basic header skips the verifier,
# and still never outlives a change of its user, a flush, a lock of its address or its TTL.


class CountingVerifier(PasswordVerifier):
    def __init__(self, **kwargs: float) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.asked = 0

    async def verify(self, *args: object, **kwargs: object) -> bool:
        self.asked += 1
        return await super().verify(*args, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def counting() -> Iterator[CountingVerifier]:
    made = CountingVerifier(ttl_seconds=30.0)
    yield made
    made.close()


def header(login: str = USER[0], password: str = USER[1]) -> str:
    return basic(login, password)["Authorization"]


async def test_a_repeated_basic_header_skips_the_verifier(
    cluster: Cluster, counting: CountingVerifier
) -> None:
    auth = Authenticator(counting)
    for _ in range(5):
        assert (await auth.authenticate(header(), cluster.snapshot)).uid == 2
    assert counting.asked == 1 and len(auth.recent) == 1
    # The key is an HMAC: no password (nor its base64) is kept.
    assert all(len(key) == 32 for key in auth.recent._entries)


async def test_a_remembered_header_follows_every_change_of_its_user(
    cluster: Cluster, counting: CountingVerifier
) -> None:
    snapshot = cluster.snapshot
    auth = Authenticator(counting)
    await auth.authenticate(header(), snapshot)
    await _update(cluster, 2, role="db_member")
    assert (await auth.authenticate(header(), snapshot)).role == "db_member"
    assert counting.asked == 2  # the changed record sent it back through the verifier
    await _update(cluster, 2, password="new-password-1")
    with pytest.raises(Unauthorized, match="invalid username or password"):
        await auth.authenticate(header(), snapshot)
    admin = snapshot.user(1)
    assert admin is not None
    await auth.authenticate(header(password="new-password-1"), snapshot)
    revision = await delete_user(cluster.store, snapshot, 2, admin)
    assert await wait_for_revision(snapshot, revision)
    with pytest.raises(Unauthorized):
        await auth.authenticate(header(password="new-password-1"), snapshot)


async def test_a_flush_forgets_remembered_headers(
    cluster: Cluster, counting: CountingVerifier
) -> None:
    auth = Authenticator(counting)
    await auth.authenticate(header(), cluster.snapshot)
    counting.flush()
    await auth.authenticate(header(), cluster.snapshot)
    assert counting.asked == 2


async def test_a_remembered_header_is_refused_once_its_address_is_locked(
    cluster: Cluster, counting: CountingVerifier
) -> None:
    """The attack: a guesser locks (user, address), then sends the right password, which the
    real user's poller had made a remembered header. The lock must still hold."""
    snapshot = cluster.snapshot
    auth = Authenticator(counting, refusal_delay=0)
    here = SignInAttempt(client="192.0.2.7", store=cluster.store)
    assert (await auth.authenticate(header(), snapshot, here)).uid == 2
    locked = SignInFailures(
        uid=2, client="192.0.2.7", failures=5, window_start=time(), locked_until=time() + 60
    )
    revision = await cluster.store.put(model.sign_in_key(2, "192.0.2.7"), locked.encode())
    assert await wait_for_revision(snapshot, revision)
    with pytest.raises(SignInLocked):
        await auth.authenticate(header(), snapshot, here)
    # Another address is not locked, and gets in.
    there = SignInAttempt(client="192.0.2.8", store=cluster.store)
    assert (await auth.authenticate(header(), snapshot, there)).uid == 2


async def test_a_remembered_header_is_refused_when_its_address_is_over_its_failure_rate(
    cluster: Cluster, counting: CountingVerifier
) -> None:
    auth = Authenticator(counting, refusal_delay=0, limiter=FailureLimiter(burst=1))
    here = SignInAttempt(client="192.0.2.7")
    await auth.authenticate(header(), cluster.snapshot, here)
    auth.limiter.failed("192.0.2.7", time())
    with pytest.raises(TooManyRequests):
        await auth.authenticate(header(), cluster.snapshot, here)


async def test_remembered_headers_slide_expire_and_stay_bounded(
    cluster: Cluster, counting: CountingVerifier
) -> None:
    clock = Clock()
    recent = RecentSignIns(counting, clock=clock, max_entries=3)
    user = cluster.snapshot.user(2)
    assert user is not None
    keys = [recent.key(f"Basic {n}") for n in range(5)]
    for key in keys:
        recent.remember(key, user, counting.generation)
    assert len(recent) == 3 and recent.user(keys[0], cluster.snapshot) is None  # oldest gone
    clock.now += 20
    assert recent.user(keys[4], cluster.snapshot) is user  # used: 30 s more from now
    clock.now += 20
    assert recent.user(keys[4], cluster.snapshot) is user
    assert recent.user(keys[3], cluster.snapshot) is None  # unused for 40 s: expired
    stale = counting.generation
    counting.flush()
    recent.remember(keys[1], user, stale)  # checked before the flush: not remembered
    assert recent.user(keys[1], cluster.snapshot) is None
