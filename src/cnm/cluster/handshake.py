"""The join handshake's messages, typed once for both sides (cnm-internal routes /v1/join/*).

The joiner (bootstrap/join.py, bootstrap/member_link.py) builds these and reads the member's
answers into them; the member (api/join_routes.py, cluster/membership.py) reads the joiner's
into them and answers with them. Neither side builds or reads the JSON by hand.

The JSON field names are the wire format between cnm versions and never change: a mixed-version
cluster joins nodes during a rolling upgrade. Models ignore fields they do not know (a newer
peer may send more) and are frozen. On the wire:

- `GET /v1/join/ca` → `CaAnswer`.
- `POST /v1/join/time`: `TimeRequest` → `TimeReply` (one NTP-style exchange).
- `POST /v1/join/node`: `JoinRequest` → 200 `JoinGrant`, or 406 `JoinRefusal`: the bootstrap
  failure's code with its details under `error_details` (the joiner raises the same failure, so
  its own status record shows what the member said). Other statuses carry the API's ordinary
  error body (api/errors.py).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cnm.errors import BootstrapFailure, InvalidSchema, failure_class
from cnm.json_body import parse_object

# Peers of other versions may add fields: ignore them rather than refuse the join.
_WIRE = ConfigDict(extra="ignore", frozen=True)


class WireMessage(BaseModel):
    model_config = _WIRE

    def to_wire(self) -> dict[str, Any]:
        """The message as the JSON document sent on the wire."""
        return self.model_dump(mode="json")


def _fields(exc: ValidationError) -> list[str]:
    return list(dict.fromkeys(".".join(str(p) for p in e["loc"]) or "body" for e in exc.errors()))


class CaAnswer(WireMessage):
    """The cluster CA, public: the joiner checks its fingerprint before sending credentials."""

    ca_pem: str
    ca_fingerprint: str


class TimeRequest(WireMessage):
    t1: float


class TimeReply(WireMessage):
    """`t1` echoed, `t2` when the member received the request, `t3` when it answered."""

    t1: float
    t2: float
    t3: float


def parse_time_request(raw: bytes) -> TimeRequest:
    """A bad body is a 400 `invalid_schema` like any other route's (cnm.json_body)."""
    value = parse_object(raw).get("t1")
    if isinstance(value, int | float) and not isinstance(value, bool) and abs(value) < 1e15:
        return TimeRequest(t1=float(value))
    raise InvalidSchema("t1: expected the sender's clock reading in seconds", fields=["t1"])


class ClockReading(WireMessage):
    offset_ms: float
    uncertainty_ms: float = Field(ge=0)


class JoinRequest(WireMessage):
    """The joiner's facts and its node key (POST /v1/join/node); a CSR from joiners before
    0.1.0's member-made node keys."""

    node_key: str = Field(min_length=16, max_length=128, pattern=r"^[0-9a-f]+$")
    addr: str = Field(max_length=64)
    external_addr: list[str] = Field(default_factory=list, max_length=64)
    rack_id: str | None = Field(default=None, max_length=63)
    second_rack_id: str | None = Field(default=None, max_length=63)
    node_settings: dict[str, str] = Field(default_factory=dict)
    software_version: str = Field(max_length=64)
    required_version: str | None = Field(default=None, max_length=64)
    # Absent: the member makes the node's key with its certificate and sends both in the grant,
    # as it does the store client's (the joiner then needs no X.509 library; tls_trust.py).
    csr_pem: str | None = Field(default=None, max_length=16384)
    clock: ClockReading
    # The joiner's own node record (facts the member does not check), stored at admission.
    record: dict[str, Any] = Field(default_factory=dict)
    # Added for repair (cluster/repair.py); absent from older joiners, which then join as plain
    # new nodes. `replace_uid`: the failed node to replace (`node.identity.uid`);
    # `override_repair`: join as a new node although the cluster has failed nodes; memory and
    # flash (bytes) are checked against the failed node's.
    replace_uid: int | None = Field(default=None, ge=0, le=2**31 - 1)
    override_repair: bool = False
    total_memory: int | None = Field(default=None, ge=0)
    flash_size: int | None = Field(default=None, ge=0)


def parse_join_request(raw: bytes) -> JoinRequest:
    """A bad body is a 400 `invalid_schema` naming the fields, like any other route's."""
    document = parse_object(raw)
    try:
        return JoinRequest.model_validate(document)
    except ValidationError as exc:
        fields = _fields(exc)
        raise InvalidSchema(f"invalid join request: {', '.join(fields)}", fields=fields) from None


class JoinGrant(WireMessage):
    """The member's admission: the node's uid, its certificate and where the store is."""

    uid: int
    cert_pem: str
    # The certificate's key when the request carried no CSR (a secret: never logged).
    key_pem: str | None = Field(default=None, repr=False)
    ca_pem: str
    ca_fingerprint: str
    store_endpoints: list[str]
    cluster_name: str | None
    cluster_uuid: str | None
    # The node's store access (store/etcd_auth.py), absent from members older than etcd auth:
    # its etcd user's password and the client certificate (with its key) it presents to etcd.
    # Secrets: sent only over the admission's authenticated channel, never logged.
    store_password: str | None = Field(default=None, repr=False)
    store_cert_pem: str | None = None
    store_key_pem: str | None = Field(default=None, repr=False)
    # The node's record as the member wrote it at admission, and that write's store revision:
    # the node completes it without reading it first. Absent (a re-admission, a replacement,
    # an older member): the node reads it.
    record: dict[str, Any] | None = None
    record_revision: int = 0
    # A liveness lease the member granted for the node as it admitted it (its TTL running
    # since then): the node puts its liveness key on it instead of granting one. 0: none.
    liveness_lease: int = 0


class JoinRefusal(WireMessage):
    """The member's refusal of an admission: a bootstrap failure, carried across. Any other
    error body of the API (`{description, error_code, ...}`) reads as one too, with no
    `error_details`."""

    # Defaults: an answer of an unexpected kind still becomes a (generic) failure.
    description: str = ""
    error_code: str = "internal_error"
    # The failure's `error_details()`: its message and structured details.
    error_details: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def from_failure(cls, failure: BootstrapFailure) -> JoinRefusal:
        return cls(
            description=failure.message,
            error_code=failure.error_code,
            error_details=failure.error_details(),
        )

    def to_failure(self) -> BootstrapFailure:
        """The same failure on the joiner: class from the error registry, message, details."""
        details = dict(self.error_details)
        message = str(details.pop("message", self.description))
        # The joiner's own status record decides retryability from the failure's class.
        details.pop("retryable", None)
        return failure_class(self.error_code)(message, **details)


# --- the password proof (issue 11 §2; security/join_proof.py) ---------------------------------
# `POST /v1/join/auth/start`: `AuthStart` → `AuthChallenge`; `POST /v1/join/auth/finish`:
# `AuthFinish` → `AuthProof` (the member's ServerSignature and an admission token the joiner
# sends as `X-Cnm-Join-Token` on /v1/join/time and /v1/join/node instead of Basic). Binary
# values are base64 (standard alphabet, padded).

JOIN_TOKEN_HEADER = "x-cnm-join-token"


class AuthStart(WireMessage):
    username: str = Field(min_length=1, max_length=254)
    client_nonce: str = Field(min_length=16, max_length=128, pattern=r"^[A-Za-z0-9_-]+$")


class AuthChallenge(WireMessage):
    session: str = Field(max_length=128)
    server_nonce: str = Field(max_length=128)
    salt: str = Field(max_length=128)
    time_cost: int = Field(ge=1)
    memory_cost: int = Field(ge=8)
    parallelism: int = Field(ge=1)


class AuthFinish(WireMessage):
    session: str = Field(min_length=1, max_length=128)
    # The joiner's tls-server-end-point binding (RFC 5929) of the member's certificate.
    channel_binding: str = Field(max_length=128)
    client_proof: str = Field(max_length=128)


class AuthProof(WireMessage):
    server_signature: str
    token: str
    expires_in: float


def parse_auth_start(raw: bytes) -> AuthStart:
    """A bad body is a 400 `invalid_schema` naming the fields, like any other route's."""
    try:
        return AuthStart.model_validate(parse_object(raw))
    except ValidationError as exc:
        fields = _fields(exc)
        raise InvalidSchema(f"invalid auth start: {', '.join(fields)}", fields=fields) from None


def parse_auth_finish(raw: bytes) -> AuthFinish:
    try:
        return AuthFinish.model_validate(parse_object(raw))
    except ValidationError as exc:
        fields = _fields(exc)
        raise InvalidSchema(f"invalid auth finish: {', '.join(fields)}", fields=fields) from None


# --- certificate renewal (issue 11 §3) -----------------------------------------------------------
# `POST /v1/join/renew`: `RenewRequest` → `RenewGrant`. The node authenticates with its current
# certificate and a signature of the new CSR made with that certificate's key; the member
# certifies the CSR's key with the names of the node's record.


class RenewRequest(WireMessage):
    cert_pem: str = Field(max_length=16384)
    csr_pem: str = Field(max_length=16384)
    # base64 ECDSA-SHA256 signature of the CSR's PEM bytes with the current certificate's key.
    signature: str = Field(max_length=512)


class RenewGrant(WireMessage):
    cert_pem: str


def parse_renew_request(raw: bytes) -> RenewRequest:
    try:
        return RenewRequest.model_validate(parse_object(raw))
    except ValidationError as exc:
        fields = _fields(exc)
        raise InvalidSchema(f"invalid renewal: {', '.join(fields)}", fields=fields) from None
