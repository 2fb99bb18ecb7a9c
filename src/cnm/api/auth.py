"""Authentication and permissions of API requests once the node is in a cluster.

Before bootstrap there is nothing to authenticate against and any `Authorization` header is
ignored (real clients send the credentials they are about to install). After it, every route
needs either HTTP Basic credentials of an active cluster user (the username is the user's email
or name) or `Authorization: JWT <token>` from POST /v1/users/authorize (`Bearer` is accepted as
a synonym). Everything is answered from the cluster snapshot, never with a store round trip:
password hashes and the token secret come from it, password verification runs off the event loop
and successes are cached briefly (see `PasswordVerifier`, flushed cluster-wide on any user
change), failures never. A token carries no role: the role is read from the user's current
record, so a changed or deleted user is refused at once.

The permission table (docs/api-contract.md §1) is the role sets below; `require_role` raises 403.
"""

from __future__ import annotations

import base64
import functools
import time
from collections import OrderedDict
from collections.abc import Callable, Collection

from cnm.cluster.records import UserRecord
from cnm.cluster.snapshot import ClusterSnapshot
from cnm.cluster.users import ROLE_UIDS, USER_MANAGERS
from cnm.errors import InsufficientPermissions, Unauthorized
from cnm.security.passwords import PasswordVerifier, hash_password
from cnm.security.tokens import TokenClaims, decode_secret, password_version, verify_token

# Every role but `none`.
ANY_ROLE = frozenset(ROLE_UIDS)
CLUSTER_VIEWERS = ANY_ROLE  # view_cluster_info
CLUSTER_ADMINS = frozenset({"admin"})  # update_cluster, update_node
CHECK_VIEWERS = frozenset({"admin", "cluster_member", "cluster_viewer"})  # view_all_nodes_checks
NODE_VIEWERS = ANY_ROLE  # view_all_nodes_info, view_node_info
LICENSE_VIEWERS = ANY_ROLE  # view_license
LICENSE_INSTALLERS = frozenset({"admin", "user_manager"})  # install_new_license
USER_ADMINS = USER_MANAGERS  # view_all_users_info, create_new_user, update_user, delete_user

TOKEN_SCHEMES = frozenset({"jwt", "bearer"})
MAX_VERIFIED_TOKENS = 10_000


# Verifying against this when the user does not exist keeps the answer's timing from telling
# which usernames exist.
@functools.cache
def _dummy_hash() -> str:
    # Made on first use, not at import: hashing costs tens of milliseconds of agent start-up.
    return hash_password("cnm-no-such-user")


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


class Authenticator:
    def __init__(
        self, verifier: PasswordVerifier, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.verifier = verifier
        self._clock = clock
        self._secret: tuple[str, bytes] = ("", b"")
        # Tokens whose signature verified, with their claims: a client sends the same token
        # with every request, and PyJWT's checks cost ~60 us, a fifth of a whole request.
        # Only verified tokens get in (no growth from garbage), expiry is checked on every use.
        self._verified: OrderedDict[str, TokenClaims] = OrderedDict()

    async def authenticate(self, header: str | None, snapshot: ClusterSnapshot) -> UserRecord:
        """The user the credentials belong to, or `Unauthorized`."""
        scheme, _, token = (header or "").strip().partition(" ")
        if scheme.lower() in TOKEN_SCHEMES:
            return self.authenticate_token(token.strip(), snapshot)
        username, password = parse_basic(header)
        return await self.authenticate_password(username, password, snapshot)

    async def authenticate_password(
        self, username: str, password: str, snapshot: ClusterSnapshot
    ) -> UserRecord:
        user = snapshot.user_by_login(username)
        password_hash = user.password_hash if user else _dummy_hash()
        verified = await self.verifier.verify(username, password, password_hash)
        if not verified or user is None or user.status != "active":
            raise Unauthorized("invalid username or password")
        return user

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
