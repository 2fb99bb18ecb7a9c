"""The wire format of etcd's v3 JSON gateway, for store/etcd.py: request bodies (keys and values
in base64, compares, transaction operations), decoders of its answers (key-values, members), the
texts by which etcd's refusals are told apart (the gateway gives no other handle), and the TLS
context a node presents to etcd."""

from __future__ import annotations

import base64
import ssl
from typing import Any

from cnm.errors import StoreError
from cnm.store.base import (
    Compare,
    CompareTarget,
    Delete,
    KeyValue,
    Member,
    MembershipChangeRefused,
    MembershipRefusal,
    Op,
    Put,
    prefix_end,
)

# gRPC codes that mean "the cluster cannot serve right now" (no leader, timeout, stopping).
UNAVAILABLE_CODES = {4, 14}
_COMPARE_RESULT = {"=": "EQUAL", "!=": "NOT_EQUAL", ">": "GREATER", "<": "LESS"}
_COMPARE_FIELD = {
    CompareTarget.VERSION: "version",
    CompareTarget.CREATE: "create_revision",
    CompareTarget.MOD: "mod_revision",
    CompareTarget.VALUE: "value",
}


# etcd's refusals of a member change (etcdserver/api/v3rpc/rpctypes), by the text of its message:
# the gateway gives no other handle. Matched here only; callers see `MembershipRefusal`.
_MEMBERSHIP_REFUSALS = (
    ("unhealthy cluster", MembershipRefusal.UNHEALTHY_CLUSTER),
    ("too many learner", MembershipRefusal.TOO_MANY_LEARNERS),
    ("peer urls already exists", MembershipRefusal.PEER_URL_EXISTS),
    # etcd derives a new member's ID from its peer URLs, so a second add of the same URLs is
    # often refused for the ID before the URLs are compared.
    ("member id already exist", MembershipRefusal.PEER_URL_EXISTS),
    ("can only promote a learner", MembershipRefusal.NOT_A_LEARNER),
)
NOT_IN_SYNC = "in sync with leader"
MEMBER_NOT_FOUND = "member not found"
LEASE_NOT_FOUND = "lease not found"
# etcd refuses a call whose permission was checked at one auth revision and applied at a later
# one (a user or role changed in between: joins and removals make such changes) without
# applying it; it is sent again this many times.
AUTH_RACE_RETRIES = 8


def membership_refusal(error: StoreError) -> MembershipChangeRefused | None:
    """The typed refusal an etcd error about a member change stands for, or None when it is not
    one (a transport failure stays `StoreUnavailable`)."""
    lowered = error.message.lower()
    for text, reason in _MEMBERSHIP_REFUSALS:
        if text in lowered:
            return MembershipChangeRefused(error.message, reason)
    return None


def b64(text: str | bytes) -> str:
    raw = text.encode("utf-8", "surrogateescape") if isinstance(text, str) else text
    return base64.b64encode(raw).decode("ascii")


def unb64(text: str) -> bytes:
    return base64.b64decode(text)


def kv_from(raw: dict[str, Any]) -> KeyValue:
    return KeyValue(
        key=unb64(raw["key"]).decode("utf-8", "surrogateescape"),
        value=unb64(raw.get("value", "")),
        create_revision=int(raw.get("create_revision", 0)),
        mod_revision=int(raw.get("mod_revision", 0)),
        version=int(raw.get("version", 0)),
        lease=int(raw.get("lease", 0)),
    )


def member_from(raw: dict[str, Any]) -> Member:
    return Member(
        id=int(raw["ID"]),
        name=raw.get("name", ""),
        peer_urls=tuple(raw.get("peerURLs") or ()),
        client_urls=tuple(raw.get("clientURLs") or ()),
        is_learner=bool(raw.get("isLearner", False)),
    )


def range_body(key: str, prefix: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"key": b64(key)}
    if prefix:
        body["range_end"] = b64(prefix_end(key))
    return body


def compare_body(compare: Compare) -> dict[str, Any]:
    value = compare.value
    encoded: str = b64(value) if isinstance(value, bytes) else str(value)
    return {
        "key": b64(compare.key),
        "target": compare.target.value,
        "result": _COMPARE_RESULT[compare.op],
        _COMPARE_FIELD[compare.target]: encoded,
    }


def op_body(op: Op) -> dict[str, Any]:
    if isinstance(op, Put):
        put: dict[str, Any] = {"key": b64(op.key), "value": b64(op.value)}
        if op.lease:
            put["lease"] = str(op.lease)
        return {"request_put": put}
    if isinstance(op, Delete):
        return {"request_delete_range": range_body(op.key, op.prefix)}
    return {"request_range": range_body(op.key, op.prefix)}


def client_tls_context(ca_file: str, cert_file: str, key_file: str) -> ssl.SSLContext:
    """Mutual TLS towards etcd: trust only the cluster CA, present this node's certificate."""
    context = ssl.create_default_context(cafile=ca_file)
    context.load_cert_chain(cert_file, key_file)
    return context
