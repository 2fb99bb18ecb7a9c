"""The API's JSON Web Tokens: `Authorization: JWT <token>` (docs/api-contract.md §1).

Tokens are HS256 JWTs (PyJWT) signed with the cluster's secret, a random 32-byte key kept in the
store (`/cnm/secrets/jwt`) so that every node accepts a token any node issued. Claims: `iss`
("cnm"), `sub` (the user's uid, a string as RFC 7519 wants), `iat`, `exp`, `jti`, and `pwv`, a
short digest of the user's password hash: changing a password ends every token issued before,
at once and on every node, and `auth_time` (OpenID Connect's name): when the user last gave its
password. A refreshed token keeps the `auth_time` of the token it replaces, so refreshing cannot
stretch a session past the cluster's `session_max_age` (policy); tokens without it (issued by an
older version) count from their `iat`. The role is not in the token; it is read from the
user's record at each request, so a changed role or a deleted user takes effect at once too.

Lifetimes are 1..86400 s, 300 by default. Verification takes the time as an argument so tests
need no sleeping, and has no leeway: an expired token is refused.

PyJWT is imported on first use, not with this module: it loads the `cryptography` library
(ten MiB of resident memory) whether or not an RSA or EC algorithm is ever used, and an agent
that no client has sent a token to has no use for it.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import secrets
import uuid
from dataclasses import dataclass

from cnm.errors import Unauthorized

DEFAULT_TTL = 300
MIN_TTL = 1
MAX_TTL = 86_400
ISSUER = "cnm"
ALGORITHM = "HS256"


def new_secret() -> str:
    """A new cluster token secret, as stored (base64 of 32 random bytes)."""
    return base64.b64encode(secrets.token_bytes(32)).decode()


def decode_secret(stored: str) -> bytes:
    return base64.b64decode(stored)


@functools.lru_cache(maxsize=256)
def password_version(password_hash: str) -> str:
    """A digest of the stored hash: not the hash (which stays secret), just enough to tell that
    the password changed. Remembered per hash: every token request compares it."""
    return hashlib.sha256(password_hash.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class TokenClaims:
    user_uid: int
    password_version: str
    issued_at: int
    expires_at: int
    auth_time: int


def issue_token(
    secret: bytes,
    *,
    user_uid: int,
    password_hash: str,
    ttl: int,
    now: float,
    auth_time: int | None = None,
) -> str:
    if not MIN_TTL <= ttl <= MAX_TTL:
        raise ValueError(f"ttl must be {MIN_TTL}..{MAX_TTL}")
    issued = int(now)
    claims = {
        "auth_time": issued if auth_time is None else auth_time,
        "iss": ISSUER,
        "sub": str(user_uid),
        "iat": issued,
        "exp": issued + ttl,
        "jti": uuid.uuid4().hex,
        "pwv": password_version(password_hash),
    }
    import jwt

    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify_token(secret: bytes, token: str, *, now: float) -> TokenClaims:
    """The claims of a token this cluster issued that has not expired at `now`; `Unauthorized`
    for a token that is malformed, altered, signed with another key, or expired."""
    import jwt

    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            issuer=ISSUER,
            # Expiry is checked below against `now`, never against PyJWT's own clock; `iat` is
            # not checked at all: a token from a node whose clock is a little ahead is fine.
            options={
                "require": ["exp", "iat", "sub", "pwv"],
                "verify_exp": False,
                "verify_iat": False,
            },
        )
    except jwt.InvalidTokenError:
        raise Unauthorized("invalid token: send a token from POST /v1/users/authorize") from None
    try:
        user_uid = int(claims["sub"])
        expires_at = int(claims["exp"])
        issued_at = int(claims["iat"])
        version = str(claims["pwv"])
        auth_time = int(claims.get("auth_time", issued_at))
    except (TypeError, ValueError):
        raise Unauthorized("invalid token: send a token from POST /v1/users/authorize") from None
    if now >= expires_at:
        raise Unauthorized("token expired: get a new one from POST /v1/users/authorize")
    return TokenClaims(
        user_uid=user_uid,
        password_version=version,
        issued_at=issued_at,
        expires_at=expires_at,
        auth_time=auth_time,
    )
