"""The member's side of the join's password proof, and the admission tokens it hands out.

`JoinAuthenticator` holds, in this agent's memory only, the proof sessions it started (30 s)
and the admission tokens it issued (120 s): a token is good on this member only, for the
joiner that proved an active admin's password over a TLS channel whose binding is this
member's certificate (security/join_proof.py). Users' verifiers are in their records
(`UserRecord.join_verifier`), made when a password is set (`verifier_record`).

An unknown user, or one without a verifier yet, gets a challenge like any other (a salt derived
from the name with a key derived from the cluster's JWT secret, the same on every member), and
the same refusal after its proof: the exchange does not tell whether a login exists.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from cnm.cluster import model
from cnm.cluster.handshake import AuthChallenge, AuthFinish, AuthProof, AuthStart
from cnm.cluster.records import JoinVerifierRecord, UserRecord
from cnm.cluster.snapshot import ClusterSnapshot
from cnm.cluster.writes import update_record
from cnm.errors import AccessDenied, ConnectError, InsufficientPermissions, Unauthorized
from cnm.logs import event
from cnm.security import join_proof
from cnm.store.base import Store

log = logging.getLogger(__name__)

SESSION_SECONDS = 30.0
TOKEN_SECONDS = 120.0
MAX_SESSIONS = 1024


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unb64(text: str, field: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise Unauthorized(f"{field}: not base64") from None


def verifier_record(verifier: join_proof.Verifier) -> JoinVerifierRecord:
    return JoinVerifierRecord(
        salt=b64(verifier.salt),
        time_cost=verifier.time_cost,
        memory_cost=verifier.memory_cost,
        parallelism=verifier.parallelism,
        stored_key=b64(verifier.stored_key),
        server_key=b64(verifier.server_key),
    )


async def make_verifier_record(password: str) -> JoinVerifierRecord:
    """A new verifier for `password`, made off the event loop (one argon2id run)."""
    return verifier_record(await asyncio.to_thread(join_proof.make_verifier, password))


@dataclass(frozen=True)
class _Session:
    username: str
    uid: int | None
    client_nonce: str
    server_nonce: str
    salt: bytes
    params: tuple[int, int, int]
    expires: float


class JoinAuthenticator:
    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._fake_key = secrets.token_bytes(32)
        self._sessions: dict[str, _Session] = {}
        self._tokens: dict[str, tuple[int, float]] = {}

    def _prune(self, now: float) -> None:
        for table in (self._sessions, self._tokens):
            expired = [k for k, v in table.items() if _expiry(v) <= now]
            for key in expired:
                del table[key]

    def start(self, snapshot: ClusterSnapshot, asked: AuthStart) -> AuthChallenge:
        now = self._clock()
        self._prune(now)
        if len(self._sessions) >= MAX_SESSIONS:
            oldest = min(self._sessions, key=lambda k: self._sessions[k].expires)
            del self._sessions[oldest]
        user = snapshot.user_by_login(asked.username)
        record = user.join_verifier if user is not None else None
        if record is not None and user is not None:
            salt = unb64(record.salt, "salt")
            params = (record.time_cost, record.memory_cost, record.parallelism)
            uid: int | None = user.uid
        else:
            # Keyed by a cluster-wide secret when there is one, so every member answers the
            # same salt for the same unknown name, as they do for a real one.
            jwt = snapshot.jwt_secret()
            key = (
                hashlib.sha256(b"cnm-join-fake-salt" + jwt.secret.encode()).digest()
                if jwt
                else self._fake_key
            )
            fake = hmac.digest(key, asked.username.encode("utf-8", "replace"), "sha256")
            salt = fake[: join_proof.SALT_BYTES]
            params = (join_proof.TIME_COST, join_proof.MEMORY_COST, join_proof.PARALLELISM)
            uid = None
        session = secrets.token_urlsafe(24)
        server_nonce = join_proof.new_nonce()
        self._sessions[session] = _Session(
            asked.username, uid, asked.client_nonce, server_nonce, salt, params,
            now + SESSION_SECONDS,
        )  # fmt: skip
        return AuthChallenge(
            session=session,
            server_nonce=server_nonce,
            salt=b64(salt),
            time_cost=params[0],
            memory_cost=params[1],
            parallelism=params[2],
        )

    def finish(self, snapshot: ClusterSnapshot, asked: AuthFinish, binding: bytes) -> AuthProof:
        """The member's ServerSignature and a token, or the refusal: `connect_error` when the
        joiner saw another certificate than this member's (a machine in the middle), 401 for a
        wrong proof, 403 for a proven user who is not an admin."""
        now = self._clock()
        self._prune(now)
        session = self._sessions.pop(asked.session, None)
        if session is None:
            raise Unauthorized("the join's proof session is unknown or expired; start again")
        if not hmac.compare_digest(unb64(asked.channel_binding, "channel_binding"), binding):
            raise ConnectError(
                "channel binding mismatch: the TLS certificate the joining node saw is not "
                "this member's, so something between them terminates TLS (a machine in the "
                "middle); the join is refused"
            )
        message = join_proof.auth_message(
            username=session.username,
            client_nonce=session.client_nonce,
            server_nonce=session.server_nonce,
            salt=session.salt,
            time_cost=session.params[0],
            memory_cost=session.params[1],
            parallelism=session.params[2],
            binding=binding,
        )
        user = snapshot.user(session.uid) if session.uid is not None else None
        verifier = user.join_verifier if user is not None else None
        proof = unb64(asked.client_proof, "client_proof")
        if (
            user is None
            or verifier is None
            or unb64(verifier.salt, "salt") != session.salt
            or not join_proof.check_client_proof(unb64(verifier.stored_key, "k"), message, proof)
        ):
            raise AccessDenied(
                f"wrong username or password for {session.username!r} (a user made before "
                "this version of cnm must sign in once with its password, e.g. GET /v1/cluster, "
                "before it can join nodes)"
            )
        if not user.active_admin:
            raise InsufficientPermissions(
                f"user {session.username!r} is not an admin; joining a node needs an admin"
            )
        token = secrets.token_urlsafe(32)
        self._tokens[_token_key(token)] = (user.uid, now + TOKEN_SECONDS)
        signature = join_proof.server_signature(unb64(verifier.server_key, "k"), message)
        return AuthProof(server_signature=b64(signature), token=token, expires_in=TOKEN_SECONDS)

    def admitted(self, snapshot: ClusterSnapshot, token: str) -> UserRecord | None:
        """The active admin a valid token was issued to, or None."""
        now = self._clock()
        self._prune(now)
        entry = self._tokens.get(_token_key(token))
        if entry is None:
            return None
        user = snapshot.user(entry[0])
        return user if user is not None and user.active_admin else None


def _token_key(token: str) -> str:
    # Kept hashed: a dump of this table does not give usable tokens.
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


def _expiry(value: _Session | tuple[int, float]) -> float:
    return value.expires if isinstance(value, _Session) else value[1]


async def ensure_join_verifier(store: Store, user: UserRecord, password: str) -> None:
    """Give a user made before verifiers existed its verifier, from a password that was just
    verified against `user.password_hash`; nothing when the password changed meanwhile or a
    verifier is there already."""
    record = await make_verifier_record(password)

    def change(current: UserRecord) -> UserRecord:
        if current.password_hash != user.password_hash or current.join_verifier is not None:
            return current
        return current.changed(join_verifier=record)

    await update_record(store, model.user_key(user.uid), UserRecord, change)
    log.info(
        "made the join verifier of user %d at its sign-in",
        user.uid,
        extra=event("join_verifier_made", uid=user.uid),
    )
