"""The cluster's records in the store: key layout and the documents written at creation.

Everything cluster-wide lives under `/cnm/` as JSON documents. Uids are allocated from counters
in compare-and-set transactions and never reused; names and emails are kept unique by index keys
written in the same transaction as the record they point to.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from cnm.clock import iso

PREFIX = "/cnm/"
CLUSTER_KEY = "/cnm/cluster"
NODES_PREFIX = "/cnm/nodes/"
USERS_PREFIX = "/cnm/users/"
USER_LOGIN_PREFIX = "/cnm/user-logins/"
LICENSE_KEY = "/cnm/license"
CA_KEY = "/cnm/secrets/ca"
# The HMAC key of the API's JWTs, made by the first POST /v1/users/authorize (cluster/writes.py).
JWT_SECRET_KEY = "/cnm/secrets/jwt"
# Each node's periodic heartbeat with its wall clock (cluster/health.py).
NODE_CLOCK_PREFIX = "/cnm/node-clocks/"
LIVENESS_PREFIX = "/cnm/liveness/"
# Node key (a random id each node keeps in its data dir) → uid: makes a retried join idempotent.
NODE_KEY_PREFIX = "/cnm/node-keys/"
# Held by the node changing the store's membership: one change at a time (cluster/voters.py).
STORE_CHANGE_LOCK = "/cnm/locks/store-change"
NODE_UID_COUNTER = "/cnm/counters/node_uid"
USER_UID_COUNTER = "/cnm/counters/user_uid"

TRIAL_DAYS = 30
TRIAL_SHARDS = 4
DEFAULT_PASSWORD_MIN_LENGTH = 8
ADMIN_ROLE_UID = 1


def node_key(uid: int) -> str:
    return f"{NODES_PREFIX}{uid}"


def user_key(uid: int) -> str:
    return f"{USERS_PREFIX}{uid}"


def login_key(login: str) -> str:
    """Index of users by email/username: logins are case-insensitive."""
    return f"{USER_LOGIN_PREFIX}{login.casefold()}"


def encode(document: dict[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":"), sort_keys=True).encode()


def decode(raw: bytes) -> dict[str, Any]:
    value = json.loads(raw)
    if not isinstance(value, dict):
        raise ValueError("store record is not a JSON object")
    return value


def cluster_record(
    *,
    name: str,
    uuid: str,
    created: datetime,
    rack_aware: bool,
    policy: dict[str, Any],
    wait_command: bool,
    http_port: int,
    https_port: int,
    node_settings: dict[str, str],
    ca_fingerprint: str,
) -> dict[str, Any]:
    return {
        "name": name,
        "uuid": uuid,
        "created_time": iso(created),
        "rack_aware": rack_aware,
        "policy": policy,
        "wait_command": wait_command,
        "cnm_http_port": http_port,
        "cnm_https_port": https_port,
        "http_support": True,
        "upgrade_in_progress": False,
        "password_min_length": DEFAULT_PASSWORD_MIN_LENGTH,
        "password_complexity": False,
        "node_settings": node_settings,
        "ca_fingerprint": ca_fingerprint,
    }


def admin_user_record(*, email: str, password_hash: str, created: datetime) -> dict[str, Any]:
    return {
        "uid": 1,
        "name": "Administrator",
        "email": email,
        "role": "admin",
        "role_uids": [ADMIN_ROLE_UID],
        "status": "active",
        "auth_method": "regular",
        "password_hash": password_hash,
        "password_issue_date": iso(created),
    }


def trial_license(*, cluster_name: str, activated: datetime) -> dict[str, Any]:
    return {
        "license": "",
        "key": "",
        "owner": "",
        "cluster_name": cluster_name,
        "activation_date": iso(activated),
        "expiration_date": iso(activated + timedelta(days=TRIAL_DAYS)),
        "shards_limit": TRIAL_SHARDS,
        # 0 = no limit: typed clients parse it as an integer, so never null (cluster/license.py).
        "nodes_limit": 0,
        "features": ["trial"],
        "trial": True,
    }


def liveness_key(uid: int) -> str:
    return f"{LIVENESS_PREFIX}{uid}"


def node_clock_key(uid: int) -> str:
    return f"{NODE_CLOCK_PREFIX}{uid}"


def node_key_index(node_key: str) -> str:
    return f"{NODE_KEY_PREFIX}{node_key}"
