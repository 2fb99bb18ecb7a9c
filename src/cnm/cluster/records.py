"""The typed records of the cluster store: one frozen type per kind of document under `/cnm/`.

Each record type has exactly one `decode(raw: bytes)` and one `encode() -> bytes` (inherited
from `Record`). `encode` writes compact JSON with sorted keys and only the fields the record
holds: the fields present when it was decoded or constructed, plus those changed since
(`model_copy(update=...)`). A default is never written on its own, so a record that is read and
written back unchanged keeps its bytes, and the defaults here describe how an absent field is
read, not what is stored.

Forward compatibility: fields this version does not know (written by a newer one) are kept on
decode and written back by `encode`, so a read-modify-write here never drops them.

Why pydantic models (`frozen=True, extra="allow"`) rather than frozen dataclasses: decoding
validates the stored JSON in one place (a record of the wrong shape fails to decode and is
skipped by the snapshot, instead of failing later at `int(record["uid"])`), unknown fields are
kept natively (`model_extra`), and "which fields are present" (`model_fields_set`) is tracked for
us, which is what keeps the stored bytes unchanged. Secrets are left out of `repr`.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field

from cnm.clock import iso
from cnm.cluster import model

# Sizes and clock readings are stored as written (int or float); one type keeps either as is.
Number = int | float


class StoreRole(StrEnum):
    """A node's part in the cluster store (etcd); the values are the wire strings."""

    VOTER = "voter"
    LEARNER = "learner"
    CLIENT = "client"


class NodeStatus(StrEnum):
    """A node's `status` in the API: from its liveness lease, not stored in its record."""

    ACTIVE = "active"
    DOWN = "down"


class Record(BaseModel):
    """A stored JSON object. Used as is for keys under `/cnm/` of no known kind."""

    model_config = ConfigDict(frozen=True, extra="allow")

    @classmethod
    def decode(cls, raw: bytes) -> Self:
        """The record stored as `raw`; `ValueError` (pydantic's ValidationError is one) when it
        is not a JSON object of this kind's shape."""
        return cls.model_validate_json(raw)

    def encode(self) -> bytes:
        return json.dumps(self.document(), separators=(",", ":"), sort_keys=True).encode()

    def document(self) -> dict[str, Any]:
        """The fields the record holds (known and unknown), as JSON values."""
        return self.model_dump(mode="json", exclude_unset=True)

    def has(self, name: str) -> bool:
        """Whether the stored document has the field (as opposed to reading its default)."""
        return name in self.model_fields_set

    def changed(self, **fields: Any) -> Self:
        """A copy with `fields` set (and so written by `encode`). Validated like a decode."""
        return type(self).model_validate({**self.document(), **fields})


# --- the cluster ----------------------------------------------------------------------------------


class NodeSettings(Record):
    """Settings every member of a cluster must share (checked at join)."""

    socket_dir: str | None = None
    conf_dir: str | None = None
    install_dir: str | None = None
    os_user: str | None = None

    def values(self) -> dict[str, str]:
        """The settings the record holds, by name."""
        return {k: str(v) for k, v in self.document().items() if isinstance(v, str)}


class Policy(Record):
    """The cluster's policy as stored (the API shows it with defaults, cluster/settings.py)."""

    rack_aware: bool | None = None
    default_shards_placement: str | None = None
    shards_overbooking: bool | None = None
    default_sharded_proxy_policy: str | None = None
    default_non_sharded_proxy_policy: str | None = None
    # Seconds a store voter may be down before its seat is given to a live node (voter_healing).
    voter_replace_after: int | None = None
    # Sign-in protection (security/lockout.py) and the longest a JWT session may be refreshed.
    lockout_threshold: int | None = None
    lockout_counter_reset: int | None = None
    lockout_duration: int | None = None
    session_max_age: int | None = None


class ClusterRecord(Record):
    """`/cnm/cluster`."""

    name: str = ""
    uuid: str = ""
    created_time: str = ""
    rack_aware: bool = False
    policy: Policy = Field(default_factory=Policy)
    wait_command: bool = False
    cnm_http_port: int = 0
    cnm_https_port: int = 0
    http_support: bool = True
    upgrade_in_progress: bool = False
    password_min_length: int = model.DEFAULT_PASSWORD_MIN_LENGTH
    password_complexity: bool = False
    node_settings: NodeSettings = Field(default_factory=NodeSettings)
    ca_fingerprint: str = ""
    # Never written by this version; read when an operator or a later version sets them.
    store_voters: int = model.DEFAULT_STORE_VOTERS
    max_clock_offset: Number = model.DEFAULT_MAX_CLOCK_OFFSET


# --- nodes ----------------------------------------------------------------------------------------


class NodeRecord(Record):
    """`/cnm/nodes/<uid>`: the node's identity, machine facts and store role."""

    uid: int
    addr: str = ""
    external_addr: list[str] = Field(default_factory=list)
    rack_id: str = ""
    second_rack_id: str = ""
    accept_servers: bool = True
    max_listeners: int | None = None
    max_redis_servers: int | None = None
    bigstore_enabled: bool = False
    bigstore_driver: str = ""
    shard_count: int = 0
    ccs_persistent_path: str = ""
    node_settings: NodeSettings = Field(default_factory=NodeSettings)
    software_version: str = ""
    # Machine facts (node/facts.py); uptime is computed from boot_time when read.
    cores: int = 0
    total_memory: int = 0
    boot_time: int | None = None
    uptime: int | None = None
    architecture: str = ""
    os_family: str = ""
    os_name: str = ""
    os_semantic_version: str = ""
    os_version: str = ""
    short_hostname: str = ""
    persistent_storage_path: str = ""
    persistent_storage_size: Number = 0
    ephemeral_storage_path: str = ""
    ephemeral_storage_size: Number = 0
    bigredis_storage_path: str = ""
    bigredis_storage_size: Number | None = None
    # The store (cluster/voters.py).
    store_role: StoreRole = StoreRole.CLIENT
    store_client_url: str = ""
    store_peer_url: str = ""
    # Written by the admitting member, removed by the joiner once its record is complete.
    joining: bool = False
    # Degraded clusters (cluster/repair.py): when a surviving node saw this node's liveness
    # lapse (ISO 8601 Z; "" while it is up), and when a replacement machine took this uid over.
    down_since: str = ""
    replaced_at: str = ""


class LivenessRecord(Record):
    """`/cnm/liveness/<uid>`: exists while the node's liveness lease lives (the node is up);
    written once per agent run, never rewritten while the lease is kept alive."""

    uid: int
    addr: str = ""
    # When the node took this lease (ISO 8601 Z): it has been up since then.
    since: str = ""
    # A random id of the agent run that wrote it.
    run: str = ""
    # Written by agents of earlier versions, which rewrote the record every 2 s; ignored.
    renewed: Number | None = None


class NodeClockRecord(Record):
    """`/cnm/node-clocks/<uid>`: the node's periodic heartbeat with its wall clock."""

    uid: int
    wall: Number


class UidIndex(Record):
    """An index key pointing to a uid: `/cnm/node-keys/<key>` and `/cnm/user-logins/<login>`."""

    uid: int


class NodeKeyIndex(UidIndex):
    """`/cnm/node-keys/<node key>` → the node's uid (makes a retried join idempotent)."""


class UserLoginIndex(UidIndex):
    """`/cnm/user-logins/<login>` → the uid of the user whose email or name it is."""


class UidCounter(Record):
    """`/cnm/counters/{node,user}_uid`: the last uid allocated."""

    last: int = 0


class RemovedNode(Record):
    """`/cnm/removed-nodes/<uid>`: node `uid` was removed from the cluster (cluster/removal.py)."""

    uid: int
    addr: str = ""
    removed_at: Number = 0
    reason: str = ""


class StoreChangeLock(Record):
    """`/cnm/locks/store-change`: who changes the store's membership, since when."""

    uid: int
    since: Number = 0


# --- users, license, secrets ----------------------------------------------------------------------


class JoinVerifierRecord(BaseModel):
    """A user's verifier for the join's password proof (security/join_proof.py): salt and
    argon2id parameters, StoredKey and ServerKey (base64). As secret as the password hash."""

    model_config = ConfigDict(frozen=True, extra="allow")

    salt: str
    time_cost: int
    memory_cost: int
    parallelism: int
    stored_key: str
    server_key: str


class UserRecord(Record):
    """`/cnm/users/<uid>`. The password hash never leaves the node (cluster/users.py)."""

    uid: int
    name: str = ""
    email: str = ""
    role: str = "none"
    role_uids: list[int] | None = None
    status: str = "active"
    auth_method: str = "regular"
    email_alerts: bool = True
    password_hash: str = Field(default="", repr=False)
    password_issue_date: str = ""
    # Set with the password (and at the first Basic sign-in of users made before it existed).
    join_verifier: JoinVerifierRecord | None = Field(default=None, repr=False)

    @property
    def active_admin(self) -> bool:
        return self.role == "admin" and self.status == "active"


class SignInFailures(Record):
    """`/cnm/sign-in-failures/<user uid>/<client address>`: failed sign-ins of one user from one
    address within the current window, and until when the pair is locked (unix times)."""

    uid: int = 0
    client: str = ""
    failures: int = 0
    window_start: float = 0.0
    locked_until: float = 0.0


class LicenseRecord(Record):
    """`/cnm/license`: the installed license's terms and armoured text, or the trial."""

    license: str = Field(default="", repr=False)
    key: str = Field(default="", repr=False)
    owner: str = ""
    cluster_name: str = ""
    activation_date: str = ""
    expiration_date: str = ""
    shards_limit: int | None = None
    # null in records of older versions; 0 and null both mean no limit (cluster/license.py).
    nodes_limit: int | None = None
    features: list[str] = Field(default_factory=list)
    trial: bool = False


class CaSecret(Record):
    """`/cnm/secrets/ca`: the cluster CA, certificate and private key (PEM)."""

    cert_pem: str
    key_pem: str = Field(repr=False)


class JwtSecret(Record):
    """`/cnm/secrets/jwt`: the HMAC key of the API's tokens (security/tokens.py encoding)."""

    secret: str = Field(repr=False)


class StoreAdminSecret(Record):
    """`/cnm/secrets/store-admin`: the password of the store's `root` user, taken only for
    member changes and store users (store/etcd_auth.py reads the same shape)."""

    password: str = Field(repr=False)


# --- the documents written at creation ---------------------------------------------------------


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
) -> ClusterRecord:
    return ClusterRecord.model_validate(
        {
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
            "password_min_length": model.DEFAULT_PASSWORD_MIN_LENGTH,
            "password_complexity": False,
            "node_settings": node_settings,
            "ca_fingerprint": ca_fingerprint,
        }
    )


def admin_user_record(
    *,
    email: str,
    password_hash: str,
    created: datetime,
    join_verifier: JoinVerifierRecord | None = None,
) -> UserRecord:
    # The verifier only when there is one: records written before it existed stay the same.
    extra = {"join_verifier": join_verifier} if join_verifier is not None else {}
    return UserRecord(
        uid=1,
        name="Administrator",
        email=email,
        role="admin",
        role_uids=[model.ADMIN_ROLE_UID],
        status="active",
        auth_method="regular",
        password_hash=password_hash,
        password_issue_date=iso(created),
        **extra,
    )


def trial_license(*, cluster_name: str, activated: datetime) -> LicenseRecord:
    return LicenseRecord(
        license="",
        key="",
        owner="",
        cluster_name=cluster_name,
        activation_date=iso(activated),
        expiration_date=iso(activated + timedelta(days=model.TRIAL_DAYS)),
        shards_limit=model.TRIAL_SHARDS,
        # 0 = no limit: typed clients parse it as an integer, so never null (cluster/license.py).
        nodes_limit=0,
        features=["trial"],
        trial=True,
    )


# --- by key ---------------------------------------------------------------------------------------

_EXACT: dict[str, type[Record]] = {
    model.CLUSTER_KEY: ClusterRecord,
    model.LICENSE_KEY: LicenseRecord,
    model.CA_KEY: CaSecret,
    model.JWT_SECRET_KEY: JwtSecret,
    model.STORE_ADMIN_KEY: StoreAdminSecret,
    model.NODE_UID_COUNTER: UidCounter,
    model.USER_UID_COUNTER: UidCounter,
    model.STORE_CHANGE_LOCK: StoreChangeLock,
}
_PREFIXES: tuple[tuple[str, type[Record]], ...] = (
    (model.NODES_PREFIX, NodeRecord),
    (model.USERS_PREFIX, UserRecord),
    (model.USER_LOGIN_PREFIX, UserLoginIndex),
    (model.LIVENESS_PREFIX, LivenessRecord),
    (model.NODE_CLOCK_PREFIX, NodeClockRecord),
    (model.NODE_KEY_PREFIX, NodeKeyIndex),
    (model.REMOVED_NODES_PREFIX, RemovedNode),
    (model.SIGN_IN_PREFIX, SignInFailures),
)


def kind_of(key: str) -> type[Record]:
    """The record type stored at `key` (`Record` for keys of no known kind)."""
    exact = _EXACT.get(key)
    if exact is not None:
        return exact
    for prefix, kind in _PREFIXES:
        if key.startswith(prefix):
            return kind
    return Record


def decode_at(key: str, raw: bytes) -> Record:
    """The record stored at `key`, of its kind; `ValueError` when it does not decode."""
    return kind_of(key).decode(raw)
