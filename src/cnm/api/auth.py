"""Authentication of API requests once the node is in a cluster.

Before bootstrap there is nothing to authenticate against and any `Authorization` header is
ignored (real clients send the credentials they are about to install). After it, every route
needs HTTP Basic credentials of an active cluster user; the username is the user's email or
name. Password hashes come from the cluster snapshot; verification runs off the event loop and
successes are cached briefly (see `PasswordVerifier`), failures never.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from cnm.cluster.snapshot import ClusterSnapshot
from cnm.errors import Unauthorized
from cnm.security.passwords import PasswordVerifier, hash_password

# Verifying against this when the user does not exist keeps the answer's timing from telling
# which usernames exist.
_DUMMY_HASH = hash_password("cnm-no-such-user")


def parse_basic(header: str | None) -> tuple[str, str]:
    if not header:
        raise Unauthorized("authentication required: send HTTP Basic credentials of a cluster user")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "basic" or not token.strip():
        raise Unauthorized(
            f"unsupported authorization scheme {scheme!r}: send HTTP Basic credentials"
        )
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise Unauthorized(
            "malformed Basic credentials: expected base64 of user:password"
        ) from None
    username, colon, password = decoded.partition(":")
    if not colon or not username:
        raise Unauthorized("malformed Basic credentials: expected base64 of user:password")
    return username, password


class Authenticator:
    def __init__(self, verifier: PasswordVerifier) -> None:
        self.verifier = verifier

    async def authenticate(self, header: str | None, snapshot: ClusterSnapshot) -> dict[str, Any]:
        """The user the credentials belong to, or `Unauthorized`."""
        username, password = parse_basic(header)
        user = snapshot.user_by_login(username)
        password_hash = str(user.get("password_hash", "")) if user else _DUMMY_HASH
        verified = await self.verifier.verify(username, password, password_hash)
        if not verified or user is None or user.get("status", "active") != "active":
            raise Unauthorized("invalid username or password")
        return user
