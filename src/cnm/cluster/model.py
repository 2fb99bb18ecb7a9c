"""The cluster's records in the store: the key layout and the constants records are read with.

Everything cluster-wide lives under `/cnm/` as JSON documents. Uids are allocated from counters
in compare-and-set transactions and never reused; names and emails are kept unique by index keys
written in the same transaction as the record they point to. The record types, their
encoding and the documents written at creation are in `cluster/records.py`.
"""

from __future__ import annotations

PREFIX = "/cnm/"
CLUSTER_KEY = "/cnm/cluster"
NODES_PREFIX = "/cnm/nodes/"
USERS_PREFIX = "/cnm/users/"
USER_LOGIN_PREFIX = "/cnm/user-logins/"
LICENSE_KEY = "/cnm/license"
CA_KEY = "/cnm/secrets/ca"
# The HMAC key of the API's JWTs, made by the first POST /v1/users/authorize (cluster/writes.py).
JWT_SECRET_KEY = "/cnm/secrets/jwt"
# The password of the store's administrator (etcd's `root`), for member changes and store users
# only (store/etcd_auth.py). Readable by every node: nodes hold the CA key already.
STORE_ADMIN_KEY = "/cnm/secrets/store-admin"
# Each node's periodic heartbeat with its wall clock (cluster/health.py).
NODE_CLOCK_PREFIX = "/cnm/node-clocks/"
LIVENESS_PREFIX = "/cnm/liveness/"
# A node is alive while its liveness key exists: the key is written once per agent run on a lease
# of LIVENESS_TTL seconds that the agent keeps alive every LIVENESS_KEEPALIVE seconds, and
# vanishes when the lease expires (cluster/runtime.py). Nothing is rewritten while the node is up.
# Down is seen within LIVENESS_TTL of the death, or of the store's last leader election if that
# came later: an election re-arms every lease (docs/architecture.md, "Liveness"). 9 s: a dead
# leader's election (0.5-1 s) plus the TTL stays within the documented 10 s; a keep-alive every
# 3 s survives one that failed with 3 s to spare, and feeds the snapshot's freshness (5 s).
LIVENESS_TTL = 9
LIVENESS_KEEPALIVE = 3.0
# Node key (a random id each node keeps in its data dir) → uid: makes a retried join idempotent.
NODE_KEY_PREFIX = "/cnm/node-keys/"
# Marker of a node removed from the cluster (cluster/removal.py): the removed agent, now or when
# it comes back, sees it and leaves (back to idle). Uids are never reused, so markers never clash.
REMOVED_NODES_PREFIX = "/cnm/removed-nodes/"
# Failed sign-ins of one user from one client address, and its lockout (cluster/sign_in.py).
SIGN_IN_PREFIX = "/cnm/sign-in-failures/"
# Held by the node changing the store's membership: one change at a time (cluster/voters.py).
STORE_CHANGE_LOCK = "/cnm/locks/store-change"
NODE_UID_COUNTER = "/cnm/counters/node_uid"
USER_UID_COUNTER = "/cnm/counters/user_uid"

TRIAL_DAYS = 30
TRIAL_SHARDS = 4
DEFAULT_PASSWORD_MIN_LENGTH = 8
ADMIN_ROLE_UID = 1
# Read when the cluster record has no such setting (cluster/voters.py, cluster/membership.py).
DEFAULT_STORE_VOTERS = 5
DEFAULT_MAX_CLOCK_OFFSET = 1.0
# Seconds a voter may be down before its seat goes to a live node (cluster/voter_healing.py).
DEFAULT_VOTER_REPLACE_AFTER = 30


def sign_in_key(uid: int, client: str) -> str:
    return f"{SIGN_IN_PREFIX}{uid}/{client}"


def node_key(uid: int) -> str:
    return f"{NODES_PREFIX}{uid}"


def user_key(uid: int) -> str:
    return f"{USERS_PREFIX}{uid}"


def login_key(login: str) -> str:
    """Index of users by email/username: logins are case-insensitive."""
    return f"{USER_LOGIN_PREFIX}{login.casefold()}"


def liveness_key(uid: int) -> str:
    return f"{LIVENESS_PREFIX}{uid}"


def uid_from_key(key: str, prefix: str) -> int | None:
    """The uid that ends a per-node key under `prefix` (`/cnm/liveness/7` → 7), else None."""
    tail = key[len(prefix) :] if key.startswith(prefix) else ""
    return int(tail) if tail.isascii() and tail.isdigit() else None


def node_clock_key(uid: int) -> str:
    return f"{NODE_CLOCK_PREFIX}{uid}"


def node_key_index(node_key: str) -> str:
    return f"{NODE_KEY_PREFIX}{node_key}"


def removed_node_key(uid: int) -> str:
    return f"{REMOVED_NODES_PREFIX}{uid}"
