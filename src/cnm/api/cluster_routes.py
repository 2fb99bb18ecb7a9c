"""Read-only cluster routes served from the snapshot: cluster, check, nodes, licence, users.

Before bootstrap they answer 503 `no_cluster`; after it they need credentials and the role's
permission (api-contract §1), and answer 503 `store_unavailable` when the snapshot has lost the
store. Writes (PUT cluster, users, licence) are not served yet.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from cnm import SOFTWARE_VERSION
from cnm.api.context import ApiContext
from cnm.api.responses import compact
from cnm.clock import parse_iso
from cnm.cluster import model
from cnm.cluster.runtime import ClusterRuntime
from cnm.errors import InsufficientPermissions, NodeNotFound, UserNotFound

ALL_ROLES = {
    "admin",
    "cluster_member",
    "cluster_viewer",
    "db_member",
    "db_viewer",
    "user_manager",
}
NODE_VIEWERS = ALL_ROLES
CHECK_VIEWERS = {"admin", "cluster_member", "cluster_viewer"}
USER_MANAGERS = {"admin", "user_manager"}

_CLUSTER_FIELDS = (
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


def _allow(user: dict[str, Any], roles: set[str], action: str) -> None:
    if user.get("role") not in roles:
        raise InsufficientPermissions(
            f"role {user.get('role')!r} may not {action}", required_roles=sorted(roles)
        )


def public_user(user: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in user.items() if k != "password_hash"}


def public_node(runtime: ClusterRuntime, record: dict[str, Any]) -> dict[str, Any]:
    node = {k: v for k, v in record.items() if k not in ("node_settings", "ccs_persistent_path")}
    uid = int(record["uid"])
    alive = runtime.snapshot.get(model.liveness_key(uid)) is not None
    node["status"] = "active" if alive else "down"
    node.setdefault("software_version", SOFTWARE_VERSION)
    return node


def cluster_router(context: ApiContext) -> APIRouter:
    router = APIRouter()

    async def fresh(request: Request) -> tuple[ClusterRuntime, dict[str, Any]]:
        runtime, user = await context.require_cluster(request)
        runtime.snapshot.require_fresh()
        return runtime, user

    @router.get("/v1/cluster")
    async def get_cluster(request: Request) -> Response:
        runtime, user = await fresh(request)
        _allow(user, ALL_ROLES, "view the cluster")
        record = runtime.snapshot.get(model.CLUSTER_KEY) or {}
        return compact({k: record[k] for k in _CLUSTER_FIELDS if k in record})

    @router.get("/v1/cluster/policy")
    async def get_policy(request: Request) -> Response:
        runtime, user = await fresh(request)
        _allow(user, ALL_ROLES, "view the cluster policy")
        record = runtime.snapshot.get(model.CLUSTER_KEY) or {}
        policy = dict(record.get("policy") or {})
        policy["rack_aware"] = bool(record.get("rack_aware", False))
        return compact(policy)

    @router.get("/v1/cluster/check")
    async def check(request: Request) -> Response:
        runtime, user = await fresh(request)
        _allow(user, CHECK_VIEWERS, "view node checks")
        results = []
        for record in runtime.snapshot.under(model.NODES_PREFIX):
            node = public_node(runtime, record)
            entry: dict[str, Any] = {"node_uid": str(node["uid"]), "result": True}
            if node["status"] != "active":
                entry = {**entry, "result": False, "error": "node is down (no liveness lease)"}
            results.append(entry)
        return compact(
            {
                "cluster_test_result": all(r["result"] for r in results) and bool(results),
                "nodes": results,
            }
        )

    @router.get("/v1/nodes")
    async def nodes(request: Request) -> Response:
        runtime, user = await fresh(request)
        _allow(user, NODE_VIEWERS, "view nodes")
        records = runtime.snapshot.under(model.NODES_PREFIX)
        listed = sorted((public_node(runtime, r) for r in records), key=lambda n: n["uid"])
        return compact(listed)

    @router.get("/v1/nodes/status")
    async def nodes_status(request: Request) -> Response:
        runtime, user = await fresh(request)
        _allow(user, NODE_VIEWERS, "view nodes")
        statuses = {
            str(node["uid"]): {"status": node["status"]}
            for node in (
                public_node(runtime, r) for r in runtime.snapshot.under(model.NODES_PREFIX)
            )
        }
        return compact(statuses)

    @router.get("/v1/nodes/{uid}")
    async def node(uid: str, request: Request) -> Response:
        runtime, user = await fresh(request)
        _allow(user, NODE_VIEWERS, "view nodes")
        record = runtime.snapshot.get(model.node_key(int(uid))) if uid.isdigit() else None
        if record is None:
            raise NodeNotFound(f"node {uid} does not exist")
        return compact(public_node(runtime, record))

    @router.get("/v1/license")
    async def license_(request: Request) -> Response:
        runtime, user = await fresh(request)
        _allow(user, ALL_ROLES, "view the licence")
        record = dict(runtime.snapshot.get(model.LICENSE_KEY) or {})
        expires = record.get("expiration_date")
        record["expired"] = bool(expires) and parse_iso(str(expires)) <= datetime.now(UTC)
        return compact(record)

    @router.get("/v1/users")
    async def users(request: Request) -> Response:
        runtime, user = await fresh(request)
        _allow(user, USER_MANAGERS, "view users")
        return compact([public_user(u) for u in runtime.snapshot.under(model.USERS_PREFIX)])

    @router.get("/v1/users/{uid}")
    async def get_user(uid: str, request: Request) -> Response:
        runtime, user = await fresh(request)
        if not (uid.isdigit() and int(uid) == user.get("uid")):
            _allow(user, USER_MANAGERS, "view other users")
        record = runtime.snapshot.get(model.user_key(int(uid))) if uid.isdigit() else None
        if record is None:
            raise UserNotFound(f"user {uid} does not exist")
        return compact(public_user(record))

    return router
