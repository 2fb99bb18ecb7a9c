"""Cluster users: roles, the user object, body checks, and create / update / delete in the store.

A user record lives at `/cnm/users/<uid>`; its email and its name are both logins, kept unique
(case-insensitively) by index keys `/cnm/user-logins/<login>` written in the same transaction.
Uids come from the counter `/cnm/counters/user_uid` under a compare-and-set guard (a lost race is
retried with the next uid) and are never reused. Passwords are stored as argon2id hashes only and
never leave the node (`public_user`).

The last active admin can be neither deleted nor demoted: the transaction that would remove an
admin compares the records of every other admin as read, so two concurrent demotions of the last
two admins cannot both succeed.

Roles and their uids (cnm's choice, fixed): admin 1, cluster_member 2, cluster_viewer 3,
db_member 4, db_viewer 5, user_manager 6; `none` has no role uid. A user_manager manages users
but may not create, change or delete an admin, nor make anyone an admin (no escalation).
"""

from __future__ import annotations

import asyncio
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cnm.clock import iso
from cnm.cluster import fields, model
from cnm.cluster.join_auth import make_verifier_record
from cnm.cluster.records import ClusterRecord, UserLoginIndex, UserRecord
from cnm.cluster.snapshot import ClusterSnapshot
from cnm.cluster.writes import UidClaim, allocate_uid, cas_retry
from cnm.errors import (
    EmailAlreadyExists,
    InsufficientPermissions,
    InvalidSchema,
    LastAdmin,
    NameAlreadyExists,
    PasswordNotComplex,
    PasswordTooShort,
    UserNotFound,
)
from cnm.security.passwords import hash_password
from cnm.store.base import Compare, Delete, Get, KeyValue, Op, Put, Store, TxnResult

ROLE_UIDS: dict[str, int] = {
    "admin": model.ADMIN_ROLE_UID,
    "cluster_member": 2,
    "cluster_viewer": 3,
    "db_member": 4,
    "db_viewer": 5,
    "user_manager": 6,
}
ROLES = (*ROLE_UIDS, "none")
USER_MANAGERS = frozenset({"admin", "user_manager"})
PUBLIC_FIELDS = (
    "uid",
    "name",
    "email",
    "role",
    "role_uids",
    "status",
    "auth_method",
    "password_issue_date",
    "email_alerts",
)
MAX_LOGIN_CHARS = 254
MAX_PASSWORD_CHARS = 256
MAX_PASSWORD_MIN_LENGTH = 256
FORBIDDEN_LOGIN_CHARS = frozenset('&<>"')


def public_user(record: UserRecord) -> dict[str, Any]:
    """The user object of the API: never the password hash."""
    document = record.document()
    user = {name: document[name] for name in PUBLIC_FIELDS if name in document}
    user.setdefault("role_uids", _role_uids(record.role))
    user.setdefault("email_alerts", True)
    user.setdefault("status", "active")
    return user


def _role_uids(role: str) -> list[int]:
    return [ROLE_UIDS[role]] if role in ROLE_UIDS else []


# --- bodies ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UserChanges:
    """The fields a POST or PUT sets; None = not given."""

    email: str | None = None
    name: str | None = None
    password: str | None = None
    role: str | None = None
    email_alerts: bool | None = None

    def given(self) -> set[str]:
        return {name for name, value in vars(self).items() if value is not None}


def _invisible(char: str) -> bool:
    # Unicode's "other" categories: control (C0, DEL, C1), format (zero-width, bidi overrides),
    # surrogate, private use, unassigned. A login made of them cannot be typed or read back.
    return unicodedata.category(char).startswith("C")


def _login(body: Mapping[str, Any], field: str, *, required: bool) -> str | None:
    value = fields.string(body, field, max_chars=MAX_LOGIN_CHARS, min_chars=1, required=required)
    if value is not None and (
        value != value.strip() or any(c in FORBIDDEN_LOGIN_CHARS or _invisible(c) for c in value)
    ):
        raise InvalidSchema(
            f'{field}: must not contain any of & < > " nor control characters, nor start or end '
            "with spaces",
            fields=[field],
        )
    return value


def _role(body: Mapping[str, Any]) -> str | None:
    role = fields.choice(body, "role", ROLES)
    uids = fields.integer_list(body, "role_uids")
    if uids is None:
        return role
    by_uid = {uid: name for name, uid in ROLE_UIDS.items()}
    if len(uids) > 1 or any(uid not in by_uid for uid in uids):
        raise InvalidSchema(
            "role_uids: expected [] or one of "
            + ", ".join(f"[{uid}] ({name})" for uid, name in sorted(by_uid.items())),
            fields=["role_uids"],
        )
    from_uids = by_uid[uids[0]] if uids else "none"
    if role is not None and role != from_uids:
        raise InvalidSchema(
            f"role_uids: {uids} is role {from_uids!r}, not {role!r}", fields=["role_uids"]
        )
    return from_uids


def parse_user_body(body: Mapping[str, Any], *, creating: bool) -> UserChanges:
    """The changes a POST (`creating`: email, password and role required) or PUT asks for.
    Unknown fields are ignored."""
    changes = UserChanges(
        email=_login(body, "email", required=creating),
        name=_login(body, "name", required=False),
        password=fields.string(
            body, "password", max_chars=MAX_PASSWORD_CHARS, required=creating, secret=True
        ),
        role=_role(body),
        email_alerts=fields.boolean(body, "email_alerts"),
    )
    if creating and changes.role is None:
        raise InvalidSchema("role: required (one of " + ", ".join(ROLES) + ")", fields=["role"])
    return changes


def check_password(password: str, cluster: ClusterRecord, logins: set[str]) -> None:
    """The cluster's password policy: minimum length, and complexity when it is on (upper and
    lower case letters, a digit, another character, and no login inside it)."""
    minimum = cluster.password_min_length
    if len(password) < minimum:
        raise PasswordTooShort(
            f"password: must be at least {minimum} characters", fields=["password"]
        )
    if cluster.password_complexity:
        classes = (str.isupper, str.islower, str.isdigit, lambda c: not c.isalnum())
        missing = not all(any(test(c) for c in password) for test in classes)
        folded = password.casefold()
        if missing or any(login and login.casefold() in folded for login in logins):
            raise PasswordNotComplex(
                "password: must mix upper and lower case letters, digits and other characters, "
                "and must not contain the user's email or name",
                fields=["password"],
            )


def check_actor(actor: UserRecord, target: UserRecord | None, changes: UserChanges) -> None:
    """Whether `actor` may make `changes` to `target` (None: a new user). 403 otherwise."""
    role = actor.role
    is_self = target is not None and target.uid == actor.uid
    if role not in USER_MANAGERS:
        own = {"name", "password", "email_alerts"}
        if not is_self or not changes.given() <= own:
            raise InsufficientPermissions(
                f"role {role!r} may change only its own name, password and email alerts",
                required_roles=sorted(USER_MANAGERS),
            )
        return
    target_admin = target is not None and target.role == "admin"
    if role == "user_manager" and (changes.role == "admin" or target_admin):
        raise InsufficientPermissions(
            "a user_manager may not create, change or delete admins",
            required_roles=["admin"],
        )


def check_actor_may_delete(actor: UserRecord, target: UserRecord) -> None:
    if actor.role not in USER_MANAGERS:
        raise InsufficientPermissions(
            f"role {actor.role!r} may not delete users",
            required_roles=sorted(USER_MANAGERS),
        )
    if actor.role == "user_manager" and target.role == "admin":
        raise InsufficientPermissions(
            "a user_manager may not create, change or delete admins", required_roles=["admin"]
        )


def _check_logins_free(snapshot: ClusterSnapshot, changes: UserChanges, uid: int | None) -> None:
    for field, error in (("email", EmailAlreadyExists), ("name", NameAlreadyExists)):
        login = getattr(changes, field)
        if login is None:
            continue
        owner = snapshot.user_by_login(login)
        if owner is not None and owner.uid != uid:
            raise error(f"{field}: {login!r} is already the email or name of another user")


def _logins(record: UserRecord) -> dict[str, str]:
    """index key -> field, email first."""
    keys: dict[str, str] = {}
    for field, value in (("email", record.email), ("name", record.name)):
        if value:
            keys.setdefault(model.login_key(value), field)
    return keys


def _taken(result: TxnResult, added: list[tuple[str, str]], uid: int) -> None:
    """After a lost transaction: 409 when one of the new logins belongs to someone else."""
    for (_, field), read in zip(added, result.reads, strict=False):
        if read and UserLoginIndex.decode(read[0].value).uid != uid:
            error = EmailAlreadyExists if field == "email" else NameAlreadyExists
            raise error(f"{field}: already the email or name of another user")


# --- writes ---------------------------------------------------------------------------------------


async def create_user(
    store: Store, snapshot: ClusterSnapshot, changes: UserChanges, now: datetime
) -> tuple[UserRecord, int]:
    """Create a user; (record, revision of the write)."""
    assert changes.email is not None and changes.password is not None
    _check_logins_free(snapshot, changes, None)
    cluster = snapshot.cluster() or ClusterRecord()
    check_password(changes.password, cluster, {changes.email, changes.name or ""})
    password_hash, verifier = await asyncio.gather(
        asyncio.to_thread(hash_password, changes.password),
        make_verifier_record(changes.password),
    )
    role = changes.role or "none"
    # The last attempt's record and new logins, for `lost` and the answer.
    made: list[tuple[UserRecord, list[tuple[str, str]]]] = []

    def claim(uid: int) -> UidClaim:
        record = UserRecord(
            uid=uid,
            name=changes.name or changes.email or "",
            email=changes.email or "",
            role=role,
            role_uids=_role_uids(role),
            status="active",
            auth_method="regular",
            email_alerts=True if changes.email_alerts is None else changes.email_alerts,
            password_hash=password_hash,
            password_issue_date=iso(now),
            join_verifier=verifier,
        )
        added = list(_logins(record).items())
        made[:] = [(record, added)]
        return UidClaim(
            compares=[Compare.absent(model.user_key(uid)), *(Compare.absent(k) for k, _ in added)],
            ops=[
                Put(model.user_key(uid), record.encode()),
                *(Put(key, UserLoginIndex(uid=uid).encode()) for key, _ in added),
            ],
            reads=[Get(key) for key, _ in added],
        )

    def lost(result: TxnResult) -> None:
        record, added = made[0]
        _taken(result, added, record.uid)

    allocated = await allocate_uid(
        store,
        model.USER_UID_COUNTER,
        claim,
        lost=lost,
        # Uids in use count too: never hand out one a record already has.
        above=max((user.uid for user in snapshot.users()), default=0),
        what="the users",
    )
    return made[0][0], allocated.revision


async def _read_users(store: Store) -> dict[int, tuple[KeyValue, UserRecord]]:
    items, _ = await store.get_prefix(model.USERS_PREFIX)
    users = {}
    for kv in items:
        record = UserRecord.decode(kv.value)
        users[record.uid] = (kv, record)
    return users


def _last_admin_guard(
    users: Mapping[int, tuple[KeyValue, UserRecord]], uid: int, action: str
) -> list[Compare]:
    """Compares that keep every other active admin as read; 406 when there is none."""
    others = [kv for other, (kv, r) in users.items() if other != uid and r.active_admin]
    if not others:
        raise LastAdmin(
            f"user {uid} is the cluster's last admin and cannot be {action}; make another "
            "user admin first"
        )
    return [Compare.mod(kv.key, "=", kv.mod_revision) for kv in others]


async def update_user(
    store: Store,
    snapshot: ClusterSnapshot,
    uid: int,
    changes: UserChanges,
    actor: UserRecord,
    now: datetime,
) -> tuple[UserRecord, int]:
    """Apply `changes` to user `uid`; (record, revision of the write)."""
    current = snapshot.user(uid)
    if current is None:
        raise UserNotFound(f"user {uid} does not exist")
    check_actor(actor, current, changes)
    _check_logins_free(snapshot, changes, uid)
    password_hash = None
    verifier = None
    if changes.password is not None:
        logins = {changes.email or current.email, changes.name or current.name}
        check_password(changes.password, snapshot.cluster() or ClusterRecord(), logins)
        password_hash, verifier = await asyncio.gather(
            asyncio.to_thread(hash_password, changes.password),
            make_verifier_record(changes.password),
        )
    updates: dict[str, Any] = {
        field: getattr(changes, field)
        for field in ("email", "name", "email_alerts")
        if getattr(changes, field) is not None
    }
    if changes.role is not None:
        updates.update(role=changes.role, role_uids=_role_uids(changes.role))
    if password_hash is not None:
        updates.update(
            password_hash=password_hash, password_issue_date=iso(now), join_verifier=verifier
        )

    async def attempt() -> tuple[UserRecord, int] | None:
        users = await _read_users(store)
        if uid not in users:
            raise UserNotFound(f"user {uid} does not exist")
        kv, old = users[uid]
        record = old.changed(**updates)
        if record == old:
            return record, 0
        compares = [Compare.mod(kv.key, "=", kv.mod_revision)]
        if old.active_admin and not record.active_admin:
            compares += _last_admin_guard(users, uid, "demoted")
        old_logins, new_logins = _logins(old), _logins(record)
        added = [(k, f) for k, f in new_logins.items() if k not in old_logins]
        ops: list[Op] = [Put(kv.key, record.encode())]
        ops += [Delete(key) for key in old_logins if key not in new_logins]
        ops += [Put(key, UserLoginIndex(uid=uid).encode()) for key, _ in added]
        result = await store.txn(
            [*compares, *(Compare.absent(k) for k, _ in added)],
            ops,
            [Get(key) for key, _ in added],
        )
        if result.succeeded:
            return record, result.revision
        _taken(result, added, uid)
        return None

    return await cas_retry(attempt, what=f"user {uid}")


async def delete_user(store: Store, snapshot: ClusterSnapshot, uid: int, actor: UserRecord) -> int:
    """Delete user `uid` and its logins; the revision of the write."""
    current = snapshot.user(uid)
    if current is None:
        raise UserNotFound(f"user {uid} does not exist")
    check_actor_may_delete(actor, current)

    async def attempt() -> int | None:
        users = await _read_users(store)
        if uid not in users:
            raise UserNotFound(f"user {uid} does not exist")
        kv, old = users[uid]
        compares = [Compare.mod(kv.key, "=", kv.mod_revision)]
        if old.active_admin:
            compares += _last_admin_guard(users, uid, "deleted")
        ops: list[Op] = [Delete(kv.key), *(Delete(key) for key in _logins(old))]
        result = await store.txn(compares, ops)
        return result.revision if result.succeeded else None

    return await cas_retry(attempt, what=f"user {uid}")
