"""Authentication and permissions of API requests once the node is in a cluster.

Before bootstrap there is nothing to authenticate against and any `Authorization` header is
ignored (real clients send the credentials they are about to install). After it, every route
needs either HTTP Basic credentials of an active cluster user (the username is the user's email
or name) or `Authorization: JWT <token>` from POST /v1/users/authorize (`Bearer` is accepted as
a synonym). Everything is answered from the cluster snapshot, never with a store round trip:
password hashes and the token secret come from it, password verification runs off the event loop
and successes are cached briefly (see `PasswordVerifier`, flushed cluster-wide on any user
change), failures never; a Basic header seen to succeed is then recognised by its MAC alone
(`RecentSignIns`), the address checks below still applied. A token carries no role: the role
is read from the user's current record, so a changed or deleted user is refused at once.

Password sign-ins are defended in three layers (README "Security model"): a client address
with too many recent failures is refused at once (429, `FailureLimiter`, local to the node); a
(user, address) pair with `lockout_threshold` failures is locked cluster-wide (401
`sign_in_locked`, cluster/sign_in.py); and the verification queue is bounded (429,
`PasswordVerifier`). None of them ever costs an argon2 run.

The permission table (docs/api-contract.md §1) is the role sets below; `require_role` raises 403.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import logging
import math
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Protocol

from cnm.cluster import sign_in
from cnm.cluster.records import UserRecord
from cnm.cluster.snapshot import ClusterSnapshot
from cnm.cluster.users import ROLE_UIDS, USER_MANAGERS
from cnm.errors import InsufficientPermissions, SignInLocked, TooManyRequests, Unauthorized
from cnm.logs import event
from cnm.security.passwords import GoneCheck, PasswordVerifier, hash_password
from cnm.security.tokens import TokenClaims, decode_secret, password_version, verify_token
from cnm.store.base import Store

log = logging.getLogger(__name__)

# Every role but `none`.
ANY_ROLE = frozenset(ROLE_UIDS)
CLUSTER_VIEWERS = ANY_ROLE  # view_cluster_info
CLUSTER_ADMINS = frozenset({"admin"})  # update_cluster, update_node
CHECK_VIEWERS = frozenset({"admin", "cluster_member", "cluster_viewer"})  # view_all_nodes_checks
NODE_VIEWERS = ANY_ROLE  # view_all_nodes_info, view_node_info
NODE_REMOVERS = frozenset({"admin"})  # remove a node (POST /v1/nodes/{uid}/actions/remove)
LICENSE_VIEWERS = ANY_ROLE  # view_license
LICENSE_INSTALLERS = frozenset({"admin", "user_manager"})  # install_new_license
USER_ADMINS = USER_MANAGERS  # view_all_users_info, create_new_user, update_user, delete_user

TOKEN_SCHEMES = frozenset({"jwt", "bearer"})
# How long a sign-in refused without a password check (a locked pair, an address over its
# failure rate) waits for its answer: it costs the node a sleeping coroutine, not CPU, and holds
# a client that guesses one request at a time to a couple of guesses a second.
REFUSAL_DELAY = 0.5
MAX_VERIFIED_TOKENS = 10_000


# Verifying against this when the user does not exist keeps the answer's timing from telling
# which usernames exist.
@functools.cache
def _dummy_hash() -> str:
    # Made on first use, not at import: hashing costs tens of milliseconds of agent start-up.
    return hash_password("cnm-no-such-user")


def _locked(client: str, seconds: float) -> SignInLocked:
    wait = max(1, math.ceil(seconds))
    return SignInLocked(
        f"sign-in locked: too many failed sign-ins for this user from {client}; retry in "
        f"{wait} s or ask an admin to unlock it",
        retry_after=wait,
    )


def require_role(user: UserRecord, roles: Collection[str], action: str) -> None:
    if user.role not in roles:
        raise InsufficientPermissions(
            f"role {user.role!r} may not {action}", required_roles=sorted(roles)
        )


def parse_basic(header: str | None) -> tuple[str, str]:
    if not header:
        raise Unauthorized(
            "authentication required: send HTTP Basic credentials of a cluster user or "
            "'Authorization: JWT <token>'"
        )
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "basic" or not token.strip():
        raise Unauthorized(
            f"unsupported authorization scheme {scheme!r}: send HTTP Basic credentials or "
            "'Authorization: JWT <token>'"
        )
    try:
        # A header is read as latin-1, so any byte can arrive here; b64decode raises a plain
        # ValueError (not binascii.Error) for a non-ASCII str.
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        raise Unauthorized(
            "malformed Basic credentials: expected base64 (ASCII only) of user:password in UTF-8"
        ) from None
    username, colon, password = decoded.partition(":")
    if not colon or not username:
        raise Unauthorized("malformed Basic credentials: expected base64 of user:password")
    return username, password


class UserDirectory(Protocol):
    """Where users are looked up: the snapshot, or a node's local copy (cluster/quorum.py)."""

    def user_by_login(self, login: str) -> UserRecord | None: ...


@dataclass(frozen=True)
class SignInAttempt:
    """Where a sign-in comes from: the client's address (None: unknown, nothing is counted),
    the store to count failures in, and how to tell that the client has gone."""

    client: str | None = None
    store: Store | None = None
    gone: GoneCheck | None = None


class FailureLimiter:
    """Failed sign-ins per client address, a token bucket each (`burst` failures, refilled at
    `per_second`): an address past it is refused before any password check. Local to the node
    (the store-wide count is the lockout's); at most `max_addresses` tracked, oldest dropped."""

    def __init__(
        self, *, burst: float = 10, per_second: float = 1.0, max_addresses: int = 10_000
    ) -> None:
        self._burst = burst
        self._rate = per_second
        self._max = max_addresses
        # address -> (tokens left, when counted)
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def _tokens(self, client: str, now: float) -> float:
        tokens, then = self._buckets.get(client, (self._burst, now))
        return min(self._burst, tokens + (now - then) * self._rate)

    def check(self, client: str, now: float) -> None:
        tokens = self._tokens(client, now)
        if tokens < 1:
            wait = math.ceil((1 - tokens) / self._rate)
            raise TooManyRequests(
                f"too many failed sign-ins from {client}; retry in {wait} s", retry_after=wait
            )

    def allows(self, client: str, now: float) -> bool:
        """Whether `check` would let `client` through now."""
        return self._tokens(client, now) >= 1

    def failed(self, client: str, now: float) -> None:
        tokens = self._tokens(client, now)
        self._buckets.pop(client, None)  # re-added at the back: the oldest go first
        self._buckets[client] = (tokens - 1, now)
        while len(self._buckets) > self._max:
            self._buckets.popitem(last=False)


@dataclass
class _Recent:
    user: UserRecord
    generation: int
    expires: float


class RecentSignIns:
    """Basic credentials that signed in recently, by a MAC of the whole header (a random key
    per process: no password is kept, and a memory dump gives nothing faster to attack than the
    argon2 hashes). A poller sends the same header with every request; found here, it costs one
    keyed BLAKE2b and a lookup instead of decoding, the verifier's three-part HMAC and its lock
    (most of what authenticating GET /v1/bootstrap cost). An entry answers only while the
    user's record is the very object it was checked against (any change to the user replaces
    it), the verifier was not flushed since (`PasswordVerifier.generation`), and within the
    verifier's sliding TTL. Only successes get in; the address checks still run
    (`Authenticator`)."""

    def __init__(
        self,
        verifier: PasswordVerifier,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_entries: int = MAX_VERIFIED_TOKENS,
    ) -> None:
        self._verifier = verifier
        self._clock = clock
        self._max = max_entries
        self._key = secrets.token_bytes(32)
        self._entries: OrderedDict[bytes, _Recent] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def key(self, header: str) -> bytes:
        # Keyed BLAKE2b is a MAC by design, and Python's own (no OpenSSL): OpenSSL 3 looks the
        # algorithm up on every HMAC, which profiled at a tenth of this route's time.
        data = header.encode("utf-8", "surrogatepass")
        return hashlib.blake2b(data, key=self._key, digest_size=32).digest()

    def user(self, key: bytes, snapshot: ClusterSnapshot) -> UserRecord | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        now = self._clock()
        if (
            now >= entry.expires
            or entry.generation != self._verifier.generation
            or snapshot.user(entry.user.uid) is not entry.user
        ):
            del self._entries[key]
            return None
        entry.expires = now + self._verifier.ttl
        self._entries.move_to_end(key)  # the least recently used go first
        return entry.user

    def remember(self, key: bytes, user: UserRecord, generation: int) -> None:
        """`user` signed in with the header of `key`, checked while the verifier was at
        `generation` (nothing is remembered when it has been flushed since)."""
        if generation != self._verifier.generation or self._verifier.ttl <= 0:
            return
        self._entries[key] = _Recent(user, generation, self._clock() + self._verifier.ttl)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)


class Authenticator:
    def __init__(
        self,
        verifier: PasswordVerifier,
        *,
        clock: Callable[[], float] = time.time,
        limiter: FailureLimiter | None = None,
        refusal_delay: float = REFUSAL_DELAY,
    ) -> None:
        self.verifier = verifier
        self.limiter = limiter or FailureLimiter()
        self._refusal_delay = refusal_delay
        self._clock = clock
        self._secret: tuple[str, bytes] = ("", b"")
        # Tokens whose signature verified, with their claims: a client sends the same token
        # with every request, and PyJWT's checks cost ~60 us, a fifth of a whole request.
        # Only verified tokens get in (no growth from garbage), expiry is checked on every use.
        self._verified: OrderedDict[str, TokenClaims] = OrderedDict()
        self.recent = RecentSignIns(verifier)

    def recognise(
        self, header: str | None, snapshot: ClusterSnapshot, client: str | None
    ) -> UserRecord | None:
        """The user of credentials decided without waiting for anything: a token (its user,
        or `Unauthorized`), or a Basic header that signed in recently and whose user needs no
        check of the address `client`. None: only the password path (`authenticate`) can say.
        What a poller sends on every request ends here, with no coroutine and no request
        object made for it."""
        scheme, _, token = (header or "").strip().partition(" ")
        if scheme.lower() in TOKEN_SCHEMES:
            return self.authenticate_token(token.strip(), snapshot)
        if not header:
            return None
        known = self.recent.user(self.recent.key(header), snapshot)
        if known is not None and self._unhindered(known, snapshot, client):
            return known
        return None

    async def authenticate(
        self,
        header: str | None,
        snapshot: ClusterSnapshot,
        attempt: SignInAttempt | None = None,
    ) -> UserRecord:
        """The user the credentials belong to, or `Unauthorized`."""
        attempt = attempt or SignInAttempt()
        known = self.recognise(header, snapshot, attempt.client)
        if known is not None:
            return known
        return await self.password_sign_in(header, snapshot, attempt)

    async def password_sign_in(
        self, header: str | None, snapshot: ClusterSnapshot, attempt: SignInAttempt
    ) -> UserRecord:
        """The password path of `authenticate`, for a header `recognise` did not answer: its
        Basic credentials checked, and remembered when they sign in."""
        username, password = parse_basic(header)
        generation = self.verifier.generation
        user = await self.authenticate_password(username, password, snapshot, attempt)
        if header:
            self.recent.remember(self.recent.key(header), user, generation)
        return user

    def _unhindered(self, user: UserRecord, snapshot: ClusterSnapshot, client: str | None) -> bool:
        """Whether a sign-in of `user` from `client` needs no check of the address: no
        failures counted for the pair (so no lock, nothing to clear) and the address is not
        over its failure rate. Otherwise the full path decides."""
        if client is None:
            return True
        return sign_in.failures_of(snapshot, user.uid, client) is None and self.limiter.allows(
            client, self._clock()
        )

    async def authenticate_password(
        self,
        username: str,
        password: str,
        users: UserDirectory,
        attempt: SignInAttempt | None = None,
    ) -> UserRecord:
        """Check a username and password against `users`: the snapshot, or (the store without
        quorum) the node's local copy, where failures are neither counted nor locked."""
        attempt = attempt or SignInAttempt()
        client = attempt.client
        user = users.user_by_login(username)
        now = self._clock()
        # The lockout lives in the store: only a snapshot of it can say or count.
        snapshot = users if isinstance(users, ClusterSnapshot) else None
        if user is not None and client is not None and snapshot is not None:
            left = sign_in.locked_for(snapshot, user.uid, client, now)
            if left > 0:
                await asyncio.sleep(self._refusal_delay)
                raise _locked(client, left)
        if client is not None:
            try:
                self.limiter.check(client, now)
            except TooManyRequests:
                await asyncio.sleep(self._refusal_delay)
                raise
        password_hash = user.password_hash if user else _dummy_hash()
        verified = await self.verifier.verify(username, password, password_hash, gone=attempt.gone)
        if verified and user is not None and user.status == "active":
            if client is not None and attempt.store is not None and snapshot is not None:
                await sign_in.clear_failures(attempt.store, snapshot, user.uid, client)
            return user
        if client is not None and not verified:
            self.limiter.failed(client, now)
            if user is not None and attempt.store is not None and snapshot is not None:
                record = await sign_in.record_failure(
                    attempt.store, snapshot, user.uid, client, now
                )
                if record.locked_until > now:
                    log.warning(
                        "sign-ins of user %d from %s locked after %d failures",
                        user.uid,
                        client,
                        record.failures,
                        extra=event("sign_in_locked", user=user.uid, client=client),
                    )
                    raise _locked(client, record.locked_until - now)
        raise Unauthorized("invalid username or password")

    def _remember(self, token: str, claims: TokenClaims, now: float) -> None:
        self._verified[token] = claims
        if len(self._verified) > MAX_VERIFIED_TOKENS:
            for cached, known in list(self._verified.items()):
                if now >= known.expires_at:
                    del self._verified[cached]
            while len(self._verified) > MAX_VERIFIED_TOKENS:
                self._verified.popitem(last=False)

    def token_claims(self, header: str | None) -> TokenClaims | None:
        """The claims of the JWT in `header`, once `authenticate` accepted it; None for other
        credentials."""
        scheme, _, token = (header or "").strip().partition(" ")
        if scheme.lower() not in TOKEN_SCHEMES:
            return None
        return self._verified.get(token.strip())

    def authenticate_token(self, token: str, snapshot: ClusterSnapshot) -> UserRecord:
        record = snapshot.jwt_secret()
        if not token or record is None:
            raise Unauthorized("invalid token: send a token from POST /v1/users/authorize")
        stored = record.secret
        if self._secret[0] != stored:
            self._secret = (stored, decode_secret(stored))
            self._verified.clear()
        now = self._clock()
        claims = self._verified.get(token)
        if claims is None or now >= claims.expires_at:
            claims = verify_token(self._secret[1], token, now=now)
            self._remember(token, claims, now)
        user = snapshot.user(claims.user_uid)
        if (
            user is None
            or user.status != "active"
            or password_version(user.password_hash) != claims.password_version
        ):
            raise Unauthorized(
                "token no longer valid: its user was deleted or changed its password; "
                "authorize again"
            )
        return user
