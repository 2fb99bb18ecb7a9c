"""Users on the in-memory store: uids, unique logins, the last admin, permissions, tokens."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest

from cnm.api.auth import Authenticator
from cnm.cluster import model
from cnm.cluster.records import (
    ClusterRecord,
    UidCounter,
    UserLoginIndex,
    UserRecord,
    admin_user_record,
)
from cnm.cluster.snapshot import ClusterSnapshot
from cnm.cluster.users import (
    UserChanges,
    check_actor,
    create_user,
    delete_user,
    parse_user_body,
    public_user,
    update_user,
)
from cnm.cluster.writes import token_secret, wait_for_revision
from cnm.errors import (
    EmailAlreadyExists,
    InsufficientPermissions,
    InvalidSchema,
    LastAdmin,
    NameAlreadyExists,
    PasswordNotComplex,
    PasswordTooShort,
    Unauthorized,
    UserNotFound,
)
from cnm.security.passwords import PasswordVerifier, hash_password
from cnm.security.tokens import issue_token, verify_token
from cnm.store.memory import MemoryStore

NOW = datetime(2025, 6, 1, tzinfo=UTC)
ADMIN_HASH = hash_password("admin-pass")


class Cluster:
    def __init__(self, store: MemoryStore, snapshot: ClusterSnapshot) -> None:
        self.store = store
        self.snapshot = snapshot

    @property
    def admin(self) -> UserRecord:
        record = self.snapshot.user(1)
        assert record is not None
        return record

    async def create(self, email: str, role: str = "db_viewer", **kw: Any) -> UserRecord:
        changes = UserChanges(
            email=email, password=kw.pop("password", "password1"), role=role, **kw
        )
        record, revision = await create_user(self.store, self.snapshot, changes, NOW)
        assert await wait_for_revision(self.snapshot, revision)
        return record

    async def update(self, uid: int, actor: UserRecord | None = None, **kw: Any) -> Any:
        record, revision = await update_user(
            self.store, self.snapshot, uid, UserChanges(**kw), actor or self.admin, NOW
        )
        assert await wait_for_revision(self.snapshot, revision)
        return record

    async def delete(self, uid: int, actor: UserRecord | None = None) -> None:
        revision = await delete_user(self.store, self.snapshot, uid, actor or self.admin)
        assert await wait_for_revision(self.snapshot, revision)


@pytest.fixture
async def cluster() -> AsyncIterator[Cluster]:
    store = MemoryStore()
    cluster_record = ClusterRecord(name="c1.example.com", password_min_length=8)
    await store.put(model.CLUSTER_KEY, cluster_record.encode())
    admin = admin_user_record(email="admin@example.com", password_hash=ADMIN_HASH, created=NOW)
    await store.put(model.user_key(1), admin.encode())
    await store.put(model.login_key("admin@example.com"), UserLoginIndex(uid=1).encode())
    await store.put(model.USER_UID_COUNTER, UidCounter(last=1).encode())
    snapshot = ClusterSnapshot(store)
    task = asyncio.create_task(snapshot.run())
    await snapshot.wait_loaded(5)
    yield Cluster(store, snapshot)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def test_create_allocates_uids_and_indexes_both_logins(cluster: Cluster) -> None:
    user = await cluster.create("Ann@Example.com", role="cluster_viewer", name="ann")
    assert user.uid == 2
    assert public_user(user) == {
        "uid": 2,
        "name": "ann",
        "email": "Ann@Example.com",
        "role": "cluster_viewer",
        "role_uids": [3],
        "status": "active",
        "auth_method": "regular",
        "password_issue_date": "2025-06-01T00:00:00Z",
        "email_alerts": True,
    }
    assert user.password_hash and user.password_hash != "password1"
    assert "password_hash" not in repr(user)
    for login in ("ann@example.com", "ANN", "Ann@Example.com"):
        found = cluster.snapshot.user_by_login(login)
        assert found is not None and found.uid == 2
    # The bootstrap admin's name was never indexed; it is still a login.
    by_name = cluster.snapshot.user_by_login("administrator")
    assert by_name is not None and by_name.uid == 1


async def test_concurrent_creates_get_distinct_uids(cluster: Cluster) -> None:
    users = await asyncio.gather(*(cluster.create(f"u{i}@example.com") for i in range(8)))
    assert sorted(u.uid for u in users) == list(range(2, 10))
    counter = cluster.snapshot.record(model.USER_UID_COUNTER)
    assert counter == UidCounter(last=9)


async def test_logins_are_unique_across_emails_and_names(cluster: Cluster) -> None:
    await cluster.create("ann@example.com", name="ann")
    with pytest.raises(EmailAlreadyExists):
        await cluster.create("ANN@example.com")
    with pytest.raises(EmailAlreadyExists):
        await cluster.create("ann")  # another user's name
    with pytest.raises(NameAlreadyExists):
        await cluster.create("bob@example.com", name="Administrator")
    with pytest.raises(NameAlreadyExists):
        await cluster.create("bob@example.com", name="admin@example.com")
    racing = await asyncio.gather(
        *(cluster.create("same@example.com") for _ in range(3)), return_exceptions=True
    )
    assert sum(isinstance(r, UserRecord) for r in racing) == 1
    assert sum(isinstance(r, EmailAlreadyExists) for r in racing) == 2


async def test_uids_are_never_reused(cluster: Cluster) -> None:
    user = await cluster.create("ann@example.com")
    await cluster.delete(user.uid)
    assert cluster.snapshot.user_by_login("ann@example.com") is None
    again = await cluster.create("ann@example.com")
    assert again.uid == user.uid + 1


async def test_update_moves_the_login_index(cluster: Cluster) -> None:
    user = await cluster.create("ann@example.com", name="ann")
    await cluster.update(user.uid, email="anne@example.com", name="anne")
    assert cluster.snapshot.user_by_login("ann@example.com") is None
    assert cluster.snapshot.user_by_login("ann") is None
    found = cluster.snapshot.user_by_login("anne")
    assert found is not None and found.email == "anne@example.com"
    with pytest.raises(EmailAlreadyExists):
        await cluster.update(1, email="ANNE@example.com")
    # Changing to its own current login (any case) is fine.
    await cluster.update(user.uid, email="Anne@example.com")
    with pytest.raises(UserNotFound):
        await cluster.update(99, name="x")


async def test_password_policy(cluster: Cluster) -> None:
    with pytest.raises(PasswordTooShort):
        await cluster.create("ann@example.com", password="short")
    revision = await cluster.store.put(
        model.CLUSTER_KEY,
        ClusterRecord(name="c", password_min_length=12, password_complexity=True).encode(),
    )
    assert await wait_for_revision(cluster.snapshot, revision)
    with pytest.raises(PasswordTooShort):
        await cluster.create("ann@example.com", password="Abcdefgh1!")
    with pytest.raises(PasswordNotComplex):
        await cluster.create("ann@example.com", password="abcdefghijkl1!")
    with pytest.raises(PasswordNotComplex):
        await cluster.create("ann@example.com", password="Xann@example.com1!")
    assert await cluster.create("ann@example.com", password="Abcdefghij1!")


async def test_last_admin_can_be_neither_deleted_nor_demoted(cluster: Cluster) -> None:
    with pytest.raises(LastAdmin) as exc:
        await cluster.delete(1)
    assert exc.value.error_code == "change_last_admin_role_not_allowed"
    with pytest.raises(LastAdmin):
        await cluster.update(1, role="cluster_viewer")
    second = await cluster.create("second@example.com", role="admin")
    # Two admins demoting each other at once: exactly one may succeed.
    results = await asyncio.gather(
        cluster.update(1, role="db_viewer"),
        cluster.update(second.uid, role="db_viewer"),
        return_exceptions=True,
    )
    assert sum(isinstance(r, LastAdmin) for r in results) == 1
    admins = [u for u in cluster.snapshot.users() if u.role == "admin"]
    assert len(admins) == 1


async def test_deleted_admin_with_another_admin_left(cluster: Cluster) -> None:
    second = await cluster.create("second@example.com", role="admin")
    await cluster.delete(1, actor=second)
    assert cluster.snapshot.user(1) is None
    assert cluster.snapshot.user_by_login("admin@example.com") is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "email"),
        ({"email": "a@b", "password": "password1"}, "role"),
        ({"email": "a@b", "password": "password1", "role": "root"}, "role"),
        ({"email": 7, "password": "password1", "role": "none"}, "email"),
        ({"email": "a<b", "password": "password1", "role": "none"}, "email"),
        ({"email": " a@b", "password": "password1", "role": "none"}, "email"),
        ({"email": "a@b" * 100, "password": "password1", "role": "none"}, "email"),
        ({"email": "a@b", "password": 12345678, "role": "none"}, "password"),
        ({"email": "a@b", "password": "p" * 300, "role": "none"}, "password"),
        (
            {"email": "a@b", "password": "password1", "role": "none", "email_alerts": 1},
            "email_alerts",
        ),
        ({"email": "a@b", "password": "password1", "role_uids": [1, 2]}, "role_uids"),
        ({"email": "a@b", "password": "password1", "role_uids": [9]}, "role_uids"),
        ({"email": "a@b", "password": "password1", "role_uids": [True]}, "role_uids"),
        ({"email": "a@b", "password": "password1", "role": "admin", "role_uids": [3]}, "role_uids"),
    ],
)
def test_bad_bodies_name_the_field(body: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidSchema) as exc:
        parse_user_body(body, creating=True)
    assert exc.value.details["fields"] == [field]
    assert "12345678" not in exc.value.message


def test_role_uids_stand_for_roles() -> None:
    base = {"email": "a@b", "password": "password1"}
    assert parse_user_body({**base, "role_uids": [6]}, creating=True).role == "user_manager"
    assert parse_user_body({**base, "role_uids": []}, creating=True).role == "none"
    assert (
        parse_user_body({**base, "role": "admin", "role_uids": [1]}, creating=True).role == "admin"
    )
    assert parse_user_body({"nickname": "x"}, creating=False).given() == set()


def test_who_may_change_whom() -> None:
    admin = UserRecord(uid=1, role="admin")
    manager = UserRecord(uid=2, role="user_manager")
    viewer = UserRecord(uid=3, role="cluster_viewer")
    check_actor(admin, viewer, UserChanges(role="admin"))
    check_actor(manager, viewer, UserChanges(role="db_member", email="x@y"))
    check_actor(viewer, viewer, UserChanges(name="me", password="password1", email_alerts=False))
    forbidden = [
        (manager, admin, UserChanges(name="x")),
        (manager, viewer, UserChanges(role="admin")),
        (manager, manager, UserChanges(role="admin")),
        (manager, None, UserChanges(role="admin")),
        (viewer, viewer, UserChanges(role="admin")),
        (viewer, viewer, UserChanges(email="new@example.com")),
        (viewer, admin, UserChanges(name="x")),
    ]
    for actor, target, changes in forbidden:
        with pytest.raises(InsufficientPermissions):
            check_actor(actor, target, changes)


async def test_tokens_follow_the_user(cluster: Cluster) -> None:
    secret = await token_secret(cluster.store, cluster.snapshot)
    assert secret == await token_secret(cluster.store, cluster.snapshot)
    assert len(secret) == 32
    clock = [1_000_000.0]
    verifier = PasswordVerifier()
    auth = Authenticator(verifier, clock=lambda: clock[0])
    user = await cluster.create("ann@example.com", role="cluster_viewer")

    def token(ttl: int = 300) -> str:
        return issue_token(
            secret, user_uid=user.uid, password_hash=user.password_hash, ttl=ttl, now=clock[0]
        )

    good = token(60)
    assert auth.authenticate_token(good, cluster.snapshot).uid == user.uid
    assert (await auth.authenticate(f"JWT {good}", cluster.snapshot)).uid == user.uid
    assert (await auth.authenticate(f"Bearer {good}", cluster.snapshot)).uid == user.uid
    clock[0] += 59.9
    assert auth.authenticate_token(good, cluster.snapshot)
    clock[0] += 0.1
    with pytest.raises(Unauthorized, match="expired"):
        auth.authenticate_token(good, cluster.snapshot)

    fresh = token()
    header, payload, signature = fresh.split(".")
    tampered = f"{header}.{payload}.{signature[:-2]}{'AA' if signature[-2:] != 'AA' else 'BB'}"
    for bad in (tampered, "", "x.y.z", fresh + "x", header + "." + payload + "."):
        with pytest.raises(Unauthorized):
            auth.authenticate_token(bad, cluster.snapshot)
    with pytest.raises(Unauthorized):
        auth.authenticate_token(
            issue_token(b"k" * 32, user_uid=1, password_hash="", ttl=60, now=clock[0]),
            cluster.snapshot,
        )

    # Role changes apply at once; a changed password or a deletion ends the token.
    await cluster.update(user.uid, role="db_member")
    assert auth.authenticate_token(fresh, cluster.snapshot).role == "db_member"
    await cluster.update(user.uid, password="another-password")
    with pytest.raises(Unauthorized, match="no longer valid"):
        auth.authenticate_token(fresh, cluster.snapshot)
    verifier.close()


def test_token_lifetime_bounds() -> None:
    for ttl in (0, 86_401):
        with pytest.raises(ValueError):
            issue_token(b"k" * 32, user_uid=1, password_hash="h", ttl=ttl, now=0)
    token = issue_token(b"k" * 32, user_uid=7, password_hash="h", ttl=86_400, now=100)
    claims = verify_token(b"k" * 32, token, now=86_499)
    assert (claims.user_uid, claims.issued_at, claims.expires_at) == (7, 100, 86_500)
