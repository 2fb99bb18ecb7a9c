"""The shapes of the API's bodies as JSON Schema, for the OpenAPI document only.

These pydantic models are never used to parse or serialize a request or a response: bodies are
parsed by `cnm.json_body` with the bootstrap schema (`cnm.bootstrap.schema`) or the strict
readers of `cnm.cluster.fields`, and answers are built as dicts and written by
`api/responses.py` (compact JSON, no validation on the way out). The models only describe what
those produce, so that a client generator or a fuzzer (tests/api/test_openapi_fuzz.py checks
every answer against them) gets exact types. Every object allows fields beyond those listed
(records keep fields a newer version wrote; bodies ignore unknown fields), and in request bodies
an explicit `null` means the same as an absent field, as the parsers read it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel

from cnm.bootstrap.status import BootstrapState
from cnm.cluster.license import MAX_LICENSE_CHARS
from cnm.cluster.records import NodeStatus, StoreRole
from cnm.cluster.settings import PROXY_POLICIES
from cnm.cluster.users import MAX_LOGIN_CHARS, MAX_PASSWORD_CHARS, ROLE_UIDS, ROLES
from cnm.security.tokens import MAX_TTL, MIN_TTL

Role = Literal[ROLES]  # type: ignore[valid-type]
ProxyPolicy = Literal[PROXY_POLICIES]  # type: ignore[valid-type]
Placement = Literal["dense", "sparse"]
Login = Annotated[str, Field(min_length=1, max_length=MAX_LOGIN_CHARS)]
# At least the smallest password_min_length a cluster can set (8): a shorter one is always refused.
Password = Annotated[str, Field(min_length=8, max_length=MAX_PASSWORD_CHARS)]
RoleUid = Annotated[int, Field(ge=min(ROLE_UIDS.values()), le=max(ROLE_UIDS.values()))]
Ttl = Annotated[int, Field(ge=MIN_TTL, le=MAX_TTL)]


class _Doc(BaseModel):
    model_config = ConfigDict(extra="allow")


# --- errors ---------------------------------------------------------------------------------------


class ErrorBody(_Doc):
    """An error (docs/api-errors.md shape 1): its structured details sit beside the two keys."""

    description: str = Field(description="What is wrong and what to do about it.")
    error_code: str = Field(description="Stable identifier; scripts match on it.")


class FailureDetails(_Doc):
    message: str


class BootstrapFailureBody(_Doc):
    """A failed bootstrap check (docs/api-errors.md shape 2), as `bootstrap_status` shows it."""

    state: Literal["error"]
    error_code: str
    error_details: FailureDetails


# --- bootstrap ------------------------------------------------------------------------------------


class BootstrapStatusBody(_Doc):
    state: BootstrapState
    start_time: str | None = None
    end_time: str | None = None
    phase: str | None = Field(None, description="While an action runs.")
    ca_fingerprint: str | None = Field(None, description="The cluster CA a join trusted.")
    error_code: str | None = Field(None, description="In state `error`.")
    error_details: dict[str, Any] | None = Field(None, description="In state `error`.")


class Address(_Doc):
    address: str
    format: Literal["ipv4", "ipv6"]
    if_name: str
    private: bool


class LocalNodeInfo(_Doc):
    uid: str = Field(description='The node\'s uid as a string ("1"); "" before bootstrap.')
    software_version: str
    cores: int
    total_memory: int
    uptime: int
    architecture: str
    os_family: str
    os_name: str
    os_semantic_version: str
    os_version: str
    short_hostname: str
    fips_enabled: bool
    persistent_storage_path: str
    persistent_storage_size: float
    ephemeral_storage_path: str
    ephemeral_storage_size: float
    bigredis_storage_path: str
    bigredis_storage_size: float | None = None
    supported_bigstore_drivers: list[str]
    available_addresses: list[Address]
    available_addrs: list[Address]


class BootstrapInfo(_Doc):
    bootstrap_status: BootstrapStatusBody
    local_node_info: LocalNodeInfo


# --- the cluster ----------------------------------------------------------------------------------


class ClusterObject(_Doc):
    name: str | None = None
    created_time: str | None = None
    rack_aware: bool | None = None
    cnm_http_port: int | None = None
    cnm_https_port: int | None = None
    http_support: bool | None = None
    upgrade_in_progress: bool | None = None
    wait_command: bool | None = None
    password_min_length: int | None = None
    password_complexity: bool | None = None
    uuid: str | None = None
    ca_fingerprint: str | None = None


class ClusterUpdate(_Doc):
    """The settings PUT /v1/cluster may change; every other field of the cluster object may be
    sent with its current value (400 `read_only_field` otherwise)."""

    password_min_length: Annotated[int, Field(ge=8, le=256)] | None = None
    password_complexity: bool | None = None
    wait_command: bool | None = None


class PolicyObject(_Doc):
    default_shards_placement: str
    shards_overbooking: bool
    default_sharded_proxy_policy: str
    default_non_sharded_proxy_policy: str
    rack_aware: bool


class PolicyUpdate(_Doc):
    """The settings PUT /v1/cluster/policy may change (`rack_aware` is read-only)."""

    default_shards_placement: Placement | None = None
    shards_overbooking: bool | None = None
    default_sharded_proxy_policy: ProxyPolicy | None = None
    default_non_sharded_proxy_policy: ProxyPolicy | None = None


class NodeCheck(_Doc):
    node_uid: str
    result: bool
    error: str | None = Field(None, description="Why the node failed its check.")


class ClusterCheck(_Doc):
    cluster_test_result: bool
    nodes: list[NodeCheck]


class Node(_Doc):
    uid: int
    status: NodeStatus
    store_role: StoreRole | None = None
    addr: str | None = None
    external_addr: list[str] | None = None
    rack_id: str | None = None
    second_rack_id: str | None = None
    accept_servers: bool | None = None
    max_listeners: int | None = None
    max_redis_servers: int | None = None
    bigstore_enabled: bool | None = None
    bigstore_driver: str | None = None
    shard_count: int | None = None
    software_version: str | None = None
    cores: int | None = None
    total_memory: int | None = None
    uptime: int
    architecture: str | None = None
    persistent_storage_size: float | None = None
    ephemeral_storage_size: float | None = None
    bigredis_storage_size: float | None = None


class NodeList(RootModel[list[Node]]):
    pass


class NodeStatusEntry(_Doc):
    status: NodeStatus


class NodesStatus(RootModel[dict[str, NodeStatusEntry]]):
    """Each node's status by its uid (as a string)."""


# --- licenses -------------------------------------------------------------------------------------


class LicenseObject(_Doc):
    license: str | None = None
    key: str | None = None
    owner: str | None = None
    cluster_name: str | None = None
    activation_date: str | None = None
    expiration_date: str | None = None
    shards_limit: int | None = None
    nodes_limit: int | None = Field(None, description="0: no limit.")
    features: list[str] | None = None
    trial: bool | None = None
    expired: bool


class LicenseUpdate(_Doc):
    """Also accepted: the armoured text itself as the body (`text/plain`)."""

    license: Annotated[str, Field(max_length=MAX_LICENSE_CHARS)]


# --- users ----------------------------------------------------------------------------------------


class User(_Doc):
    uid: int
    email: str
    role: Role
    name: str | None = None
    role_uids: list[int] | None = None
    status: str | None = None
    auth_method: str | None = None
    password_issue_date: str | None = None
    email_alerts: bool | None = None


class UserList(RootModel[list[User]]):
    pass


class UserUpdate(_Doc):
    """Logins (`email`, `name`) must not contain `& < > "` or control characters, nor start or
    end with a space. `role_uids` is `[]` (role `none`) or one role uid; when both are given
    they must agree. A non-admin may change only its own name, password and email alerts."""

    email: Login | None = None
    name: Login | None = None
    password: Password | None = None
    role: Role | None = None
    role_uids: Annotated[list[RoleUid], Field(max_length=1)] | None = None
    email_alerts: bool | None = None


class UserCreate(UserUpdate):
    """`email` and `password` are required, and `role` or `role_uids`."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "anyOf": [
                {"required": ["role"], "properties": {"role": {"type": "string"}}},
                {"required": ["role_uids"], "properties": {"role_uids": {"type": "array"}}},
            ]
        },
    )
    email: Login
    password: Password


class AuthorizeBody(_Doc):
    """Without an `Authorization` header, `username` and `password` are the credentials."""

    username: Annotated[str, Field(max_length=1024)] | None = None
    password: Annotated[str, Field(max_length=1024)] | None = None
    ttl: Ttl | None = Field(None, description="Seconds; default 300.")


class RefreshBody(_Doc):
    ttl: Ttl | None = Field(None, description="Seconds; default 300.")


class Token(_Doc):
    access_token: str = Field(description="Send as `Authorization: JWT <token>`.")


class BackupAnswer(_Doc):
    """POST /v1/cluster/backup: the snapshot just written (docs/api-contract.md §11)."""

    file: str
    time: str
    revision: int
    node_uid: int
    cluster_uuid: str


class NodeRemoval(_Doc):
    """POST /v1/nodes/{uid}/actions/remove: what was done (docs/api-contract.md §9)."""

    action: str
    node_uid: int
    addr: str
    store_role: str
    store_member_removed: str | None
    records_removed: list[str]
    description: str


class SignInFailure(_Doc):
    """One (user, client address) pair's failed sign-ins and its lockout."""


class SignInFailures(RootModel[list[SignInFailure]]):
    """GET /v1/users/{uid}/sign_in_failures."""


class UnlockBody(_Doc):
    """POST /v1/users/{uid}/unlock: one client address, or none for every one."""

    client: str | None = Field(default=None, min_length=1, max_length=64)


class Unlocked(_Doc):
    unlocked: list[str]
