"""The cluster object and its policy as the API shows them, and the settings a PUT may change.

GET /v1/cluster shows the fields of docs/api-contract.md §6 (plus the cluster uuid and the CA
certificate's SHA-256 fingerprint). PUT /v1/cluster may change `password_min_length` (8..256),
`password_complexity`, `wait_command` and `http_support` (false closes every node's HTTP port);
PUT /v1/cluster/policy may change `default_shards_placement`, `shards_overbooking`, the two proxy
policies, `voter_replace_after` (1..86400 s, cluster/voter_healing.py), the store snapshots'
`backup_interval` (10..86400 s) and `backup_keep` (1..1000), the sign-in lockout
(`lockout_threshold`, `lockout_counter_reset`, `lockout_duration`, seconds) and
`session_max_age` (seconds a JWT session may be refreshed for). Every other field of
the object is fixed: sending it with its current value is fine (clients write back what they
read), sending another value is a 400 `read_only_field` naming it (`name` and `rack_aware` are
fixed for ever). Unknown fields are ignored, as in the bootstrap object. A write is a
compare-and-set on the cluster record, retried when another write came first.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from cnm.cluster import fields, model
from cnm.cluster.records import ClusterRecord
from cnm.cluster.writes import update_record
from cnm.errors import NoCluster, ReadOnlyField
from cnm.store.base import Store

CLUSTER_FIELDS = (
    "name",
    "created_time",
    "rack_aware",
    "cnm_http_port",
    "cnm_https_port",
    "http_support",
    "upgrade_in_progress",
    "wait_command",
    "password_min_length",
    "password_complexity",
    "uuid",
    "ca_fingerprint",
)
PROXY_POLICIES = ("single", "all-master-shards", "all-nodes")
POLICY_DEFAULTS: dict[str, Any] = {
    "default_shards_placement": "dense",
    "shards_overbooking": False,
    "default_sharded_proxy_policy": "single",
    "default_non_sharded_proxy_policy": "single",
    "voter_replace_after": model.DEFAULT_VOTER_REPLACE_AFTER,
    # Store snapshots of every voter (cluster/backup.py): seconds between two, files kept.
    "backup_interval": 300,
    "backup_keep": 5,
    # Vault's defaults: 5 failed sign-ins within 15 minutes lock the (user, address) pair
    # for 15 minutes.
    "lockout_threshold": 5,
    "lockout_counter_reset": 900,
    "lockout_duration": 900,
    "session_max_age": 86_400,
}
DAY = 86_400
_FIXED_REASONS = {
    "name": "the cluster name is fixed at creation",
    "rack_aware": "rack awareness is fixed at creation",
}

Reader = Callable[[Mapping[str, Any], str], Any]


def public_cluster(record: ClusterRecord) -> dict[str, Any]:
    """GET /v1/cluster: the shown fields the record holds."""
    document = record.document()
    return {name: document[name] for name in CLUSTER_FIELDS if name in document}


def policy_value(record: ClusterRecord, name: str) -> int:
    """An integer setting of the policy, its default when unset."""
    value = record.policy.document().get(name)
    return int(POLICY_DEFAULTS[name] if value is None else value)


def public_policy(record: ClusterRecord) -> dict[str, Any]:
    """GET /v1/cluster/policy: the stored policy over the defaults, and the cluster's
    rack awareness."""
    policy = {**POLICY_DEFAULTS, **record.policy.document()}
    policy["rack_aware"] = record.rack_aware
    return policy


def _cluster_readers() -> dict[str, Reader]:
    return {
        "password_min_length": lambda body, f: fields.integer(body, f, minimum=8, maximum=256),
        "password_complexity": fields.boolean,
        "wait_command": fields.boolean,
        "http_support": fields.boolean,
    }


def _policy_readers() -> dict[str, Reader]:
    return {
        "default_shards_placement": lambda body, f: fields.choice(body, f, ("dense", "sparse")),
        "shards_overbooking": fields.boolean,
        "default_sharded_proxy_policy": lambda body, f: fields.choice(body, f, PROXY_POLICIES),
        "default_non_sharded_proxy_policy": lambda b, f: fields.choice(b, f, PROXY_POLICIES),
        "voter_replace_after": lambda body, f: fields.integer(body, f, minimum=1, maximum=86400),
        "backup_interval": lambda body, f: fields.integer(body, f, minimum=10, maximum=86_400),
        "backup_keep": lambda body, f: fields.integer(body, f, minimum=1, maximum=1_000),
        "lockout_threshold": lambda body, f: fields.integer(body, f, minimum=1, maximum=1000),
        "lockout_counter_reset": lambda body, f: fields.integer(body, f, minimum=1, maximum=DAY),
        "lockout_duration": lambda body, f: fields.integer(body, f, minimum=1, maximum=DAY),
        "session_max_age": lambda body, f: fields.integer(body, f, minimum=60, maximum=30 * DAY),
    }


def _changes(
    body: Mapping[str, Any], current: Mapping[str, Any], readers: Mapping[str, Reader]
) -> dict[str, Any]:
    """The changed settings of `body` against the object `current` as shown."""
    for name, value in body.items():
        if name in readers or name not in current or value is None:
            continue
        if value != current[name] or type(value) is not type(current[name]):
            reason = _FIXED_REASONS.get(name, f"{name} cannot be changed")
            raise ReadOnlyField(f"{name}: {reason}", fields=[name])
    changes = {}
    for name, read in readers.items():
        value = read(body, name)
        if value is not None:
            changes[name] = value
    return changes


def cluster_changes(body: Mapping[str, Any], record: ClusterRecord) -> dict[str, Any]:
    return _changes(body, public_cluster(record), _cluster_readers())


def policy_changes(body: Mapping[str, Any], record: ClusterRecord) -> dict[str, Any]:
    return _changes(body, public_policy(record), _policy_readers())


async def update_cluster(
    store: Store, body: Mapping[str, Any], *, policy: bool
) -> tuple[ClusterRecord, int]:
    """Apply a PUT of the cluster (or of its `policy`); (new record, revision of the write:
    0 when nothing changed)."""

    def change(record: ClusterRecord) -> ClusterRecord:
        if policy:
            changes = policy_changes(body, record)
            return record.changed(policy=record.policy.changed(**changes)) if changes else record
        changes = cluster_changes(body, record)
        return record.changed(**changes) if changes else record

    missing = NoCluster("the cluster record is missing from the store")
    return await update_record(store, model.CLUSTER_KEY, ClusterRecord, change, missing=missing)
