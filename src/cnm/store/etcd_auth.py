"""Who a node is to etcd: its store credentials, where it keeps them, and etcd's auth vocabulary.

With etcd authentication on, every node is its own etcd user `node:<uid>` (the common name of
its certificate, so a gRPC client presenting that certificate is the same user) with the role
`cnm-node`, which may read and write the cnm keys and nothing else. Its password is 256 random
bits made by the member that admitted it and kept only in the node's data dir (0600). etcd's
JSON gateway ignores certificate common names (etcd PR 10366), so the client here always
authenticates with the password and sends etcd's token.

Changes of the store's membership and of its users need etcd's `root` role; the client takes a
short `root` session for them only (its password is a cluster secret in the store, readable by
nodes). A node's everyday calls never run as root.

The texts matched here are etcd's error messages (etcdserver/api/v3rpc/rpctypes): the gateway
gives no other handle, and they are matched in this package only.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from pathlib import Path

from cnm.errors import StoreError
from cnm.security import key_files

ROOT_USER = "root"
ROOT_ROLE = "root"
NODE_ROLE = "cnm-node"
# 256 bits: nobody guesses it, so bcrypt's cost buys nothing and etcd runs at cost 4 (fast
# authenticate, fast joins).
PASSWORD_BYTES = 32

# The token is unknown or expired (simple tokens live 300 s after their last use), or this call
# carried none although auth is on now (it was switched on after this client looked): get a
# token and try once more.
_TOKEN_REFUSED = ("invalid auth token", "user name is empty")
# Users or roles changed between etcd's permission check and its applying the call: refused
# unapplied, so the same call may simply go again.
_AUTH_CHANGED = "revision of auth store is old"
AUTH_NOT_ENABLED = "authentication is not enabled"
# A wrong password or a user that does not exist (etcd says the same for both).
AUTH_FAILED = "authentication failed"
USER_EXISTS = "user name already exists"
ROLE_EXISTS = "role name already exists"
USER_NOT_FOUND = "user name not found"


@dataclass(frozen=True)
class StoreCredentials:
    user: str
    password: str

    def __repr__(self) -> str:  # never print the password
        return f"StoreCredentials(user={self.user!r})"


def node_user(uid: int) -> str:
    """A node's etcd user: the common name of its certificate (security/pki.py)."""
    return f"node:{uid}"


def new_password() -> str:
    return secrets.token_urlsafe(PASSWORD_BYTES)


def token_refused(error: StoreError) -> bool:
    """Whether etcd refused the call for its token (get a new one), not for the user's rights."""
    lowered = error.message.lower()
    return any(text in lowered for text in _TOKEN_REFUSED)


def auth_changed_meanwhile(error: StoreError) -> bool:
    """Whether etcd refused the call, unapplied, for a change of users or roles meanwhile."""
    return _AUTH_CHANGED in error.message.lower()


def save_credentials(path: Path, credentials: StoreCredentials, *, durable: bool = True) -> None:
    """Keep the node's store credentials, readable by its own account only."""
    document = {"user": credentials.user, "password": credentials.password}
    key_files.write_private(path, json.dumps(document).encode(), durable=durable)


def load_credentials(path: Path) -> StoreCredentials | None:
    """The node's store credentials, None when it has none (a store without auth)."""
    try:
        document = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise StoreError(
            f"cannot read this node's store credentials {path}: {exc}; the node must rejoin"
        ) from None
    user, password = document.get("user"), document.get("password")
    if not isinstance(user, str) or not isinstance(password, str):
        raise StoreError(f"{path} holds no store credentials; the node must rejoin")
    return StoreCredentials(user, password)


def admin_document(password: str) -> bytes:
    """What the store's admin key holds (cluster/records.py `StoreAdminSecret`)."""
    return json.dumps({"password": password}).encode()


def admin_password(document: bytes) -> str:
    try:
        password = json.loads(document)["password"]
    except (ValueError, KeyError, TypeError):
        password = None
    if not isinstance(password, str):
        raise StoreError("the store's admin record holds no password; restore it from a backup")
    return password
