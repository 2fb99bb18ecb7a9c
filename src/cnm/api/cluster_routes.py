"""The cluster and node routes: /v1/cluster (GET, PUT), /v1/cluster/policy (GET, PUT),
/v1/cluster/check, /v1/nodes, /v1/nodes/status, /v1/nodes/{uid}.

Reads are answered from the node's snapshot; before bootstrap they answer 503 `no_cluster`, after
it they need credentials and the role's permission (docs/api-contract.md §1), and answer 503
`store_unavailable` when the snapshot has lost the store. Writes go to the store (see
`cnm.cluster.settings`) and answer once this node's snapshot shows them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from cnm.api.auth import (
    CHECK_VIEWERS,
    CLUSTER_ADMINS,
    CLUSTER_VIEWERS,
    NODE_VIEWERS,
    require_role,
)
from cnm.api.bodies import path_uid, read_json_object
from cnm.api.context import ApiContext
from cnm.api.openapi import operation, uid_parameter
from cnm.api.responses import compact
from cnm.api.routing import ApiRouter
from cnm.cluster.backup import backup_now, latest_backup
from cnm.cluster.health import node_check, node_uptime, observer_for
from cnm.cluster.records import ClusterRecord, NodeRecord, NodeStatus
from cnm.cluster.repair import failed_entry, failed_nodes, status_since
from cnm.cluster.settings import public_cluster, public_policy, update_cluster
from cnm.cluster.snapshot import ClusterSnapshot
from cnm.cluster.writes import wait_for_revision
from cnm.errors import NodeNotFound

# Kept in the record for the cluster's own use, never shown.
_PRIVATE_NODE_FIELDS = frozenset(
    {"node_settings", "ccs_persistent_path", "boot_time", "down_since"}
)


def public_node(snapshot: ClusterSnapshot, record: NodeRecord, now: float) -> dict[str, Any]:
    """The node object of the API: the record's fields but the private ones, its uptime, and its
    status from its liveness lease."""
    node = {k: v for k, v in record.document().items() if k not in _PRIVATE_NODE_FIELDS}
    node["uptime"] = node_uptime(record, now)
    node["status"] = node_status(snapshot, record).value
    # Since when it has that status (cluster/repair.py says how it is known); null if unknown.
    node["status_since"] = status_since(snapshot, record)
    return node


def node_status(snapshot: ClusterSnapshot, record: NodeRecord) -> NodeStatus:
    return NodeStatus.ACTIVE if snapshot.is_alive(record.uid) else NodeStatus.DOWN


def _nodes(snapshot: ClusterSnapshot) -> list[dict[str, Any]]:
    now = time.time()
    return [public_node(snapshot, record, now) for record in snapshot.nodes()]


def _record_routes(
    router: ApiRouter,
    context: ApiContext,
    path: str,
    view: Callable[[ClusterSnapshot, ClusterRecord], dict[str, Any]],
    *,
    policy: bool,
    name: str,
    what: str,
    shown: str,
    update: str,
) -> None:
    """GET and PUT on one view of the cluster record. The routes are named get_{name} and
    put_{name}, as their OpenAPI operations are."""

    @router.get(
        path, name=f"get_{name}", **operation(f"Read {what}", ok=shown, errors=(401, 403, 503))
    )
    async def read(request: Request) -> Response:
        runtime, user = await context.require_fresh_cluster(request)
        require_role(user, CLUSTER_VIEWERS, f"view {what}")
        return compact(view(runtime.snapshot, runtime.snapshot.cluster() or ClusterRecord()))

    @router.put(
        path,
        name=f"put_{name}",
        **operation(
            f"Change {what}",
            ok=shown,
            errors=(400, 401, 403, 409, 413, 503),
            body=update,
        ),
    )
    async def write(request: Request) -> Response:
        runtime, user = await context.require_fresh_cluster(request)
        require_role(user, CLUSTER_ADMINS, f"change {what}")
        body = await read_json_object(request)
        record, revision = await update_cluster(runtime.store, body, policy=policy)
        await wait_for_revision(runtime.snapshot, revision)
        return compact(view(runtime.snapshot, record))


def _cluster_view(snapshot: ClusterSnapshot, record: ClusterRecord) -> dict[str, Any]:
    """The cluster object, with the time of the cluster's latest store snapshot (null: none)."""
    latest = latest_backup(snapshot)
    return {**public_cluster(record), "last_backup_time": latest.get("time") if latest else None}


def _policy_view(snapshot: ClusterSnapshot, record: ClusterRecord) -> dict[str, Any]:
    return public_policy(record)


def cluster_router(context: ApiContext) -> ApiRouter:
    router = ApiRouter()

    # /v1/cluster and /v1/cluster/policy read and write the same record, each through its own
    # view of it (`update_cluster` takes only that view's fields).
    for path, view, policy, name, what, shown, update in (
        (
            "/v1/cluster",
            _cluster_view,
            False,
            "cluster",
            "the cluster",
            "ClusterObject",
            "ClusterUpdate",
        ),
        (
            "/v1/cluster/policy",
            _policy_view,
            True,
            "policy",
            "the cluster policy",
            "PolicyObject",
            "PolicyUpdate",
        ),
    ):
        _record_routes(
            router,
            context,
            path,
            view,
            policy=policy,
            name=name,
            what=what,
            shown=shown,
            update=update,
        )

    @router.post(
        "/v1/cluster/backup",
        **operation("Write a store snapshot now (cnm)", ok="BackupAnswer", errors=(401, 403, 503)),
    )
    async def backup(request: Request) -> Response:
        """A store snapshot now, into this node's ccs_persistent_path (cnm extension)."""
        runtime, user = await context.require_fresh_cluster(request)
        require_role(user, CLUSTER_ADMINS, "back up the cluster")
        path, taken = await backup_now(
            runtime.store,
            runtime.snapshot,
            node_uid=runtime.local.node_uid,
            ccs_persistent_path=runtime.local.ccs_persistent_path,
        )
        return compact(
            {
                "file": str(path),
                "time": taken.taken,
                "revision": taken.revision,
                "node_uid": runtime.local.node_uid,
                "cluster_uuid": taken.cluster_uuid,
            }
        )

    reads = (401, 403, 503)

    @router.get(
        "/v1/cluster/check", **operation("Check every node", ok="ClusterCheck", errors=reads)
    )
    async def check(request: Request) -> Response:
        runtime, user = await context.require_fresh_cluster(request)
        require_role(user, CHECK_VIEWERS, "view the nodes' checks")
        snapshot = runtime.snapshot
        observer = observer_for(snapshot)
        results = [node_check(snapshot, observer, node) for node in snapshot.nodes()]
        passed = bool(results) and all(entry["result"] for entry in results)
        # Degraded: some node is down; only a replacement (or override_repair) may join.
        failed = [
            {**failed_entry(node), "down_since": node.down_since or None}
            for node in failed_nodes(snapshot)
        ]
        return compact(
            {
                "cluster_test_result": passed,
                "degraded": bool(failed),
                "failed_nodes": failed,
                "nodes": results,
            }
        )

    @router.get("/v1/nodes", **operation("Every node", ok="NodeList", errors=reads))
    async def nodes(request: Request) -> Response:
        runtime, user = await context.require_fresh_cluster(request)
        require_role(user, NODE_VIEWERS, "view nodes")
        return compact(_nodes(runtime.snapshot))

    @router.get(
        "/v1/nodes/status", **operation("Every node's status", ok="NodesStatus", errors=reads)
    )
    async def nodes_status(request: Request) -> Response:
        runtime, user = await context.require_fresh_cluster(request)
        require_role(user, NODE_VIEWERS, "view nodes")
        snapshot = runtime.snapshot
        return compact(
            {str(n.uid): {"status": node_status(snapshot, n).value} for n in snapshot.nodes()}
        )

    # `uid` is read from the path parameters: anything but a known uid is a 404, not FastAPI's 422.
    @router.get(
        "/v1/nodes/{uid}",
        **operation(
            "One node", ok="Node", errors=(401, 403, 404, 503), parameters=[uid_parameter("node")]
        ),
    )
    async def node(request: Request) -> Response:
        uid = request.path_params["uid"]
        runtime, user = await context.require_fresh_cluster(request)
        require_role(user, NODE_VIEWERS, "view nodes")
        snapshot = runtime.snapshot
        number = path_uid(uid)
        record = snapshot.node(number) if number is not None else None
        if record is None:
            raise NodeNotFound(f"node {uid} does not exist")
        return compact(public_node(snapshot, record, time.time()))

    return router
