"""The cluster and node routes: /v1/cluster (GET, PUT), /v1/cluster/policy (GET, PUT),
/v1/cluster/check, /v1/nodes, /v1/nodes/status, /v1/nodes/{uid}.

Reads are answered from the node's snapshot; before bootstrap they answer 503 `no_cluster`, after
it they need credentials and the role's permission (api-contract §1), and answer 503
`store_unavailable` when the snapshot has lost the store. Writes go to the store (see
`cnm.cluster.settings`) and answer once this node's snapshot shows them.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from cnm.api.auth import (
    CHECK_VIEWERS,
    CLUSTER_ADMINS,
    CLUSTER_VIEWERS,
    NODE_VIEWERS,
    require_role,
)
from cnm.api.bodies import path_uid, read_json_object
from cnm.api.context import ApiContext
from cnm.api.responses import compact
from cnm.cluster import model
from cnm.cluster.health import node_check, node_uptime, observer_for
from cnm.cluster.settings import public_cluster, public_policy, update_cluster
from cnm.cluster.snapshot import ClusterSnapshot
from cnm.cluster.writes import wait_for_revision
from cnm.errors import NodeNotFound

# Kept in the record for the cluster's own use, never shown.
_PRIVATE_NODE_FIELDS = frozenset({"node_settings", "ccs_persistent_path", "boot_time"})


def public_node(snapshot: ClusterSnapshot, record: dict[str, Any], now: float) -> dict[str, Any]:
    node = {k: v for k, v in record.items() if k not in _PRIVATE_NODE_FIELDS}
    node["uptime"] = node_uptime(record, now)
    alive = snapshot.get(model.liveness_key(int(record["uid"]))) is not None
    node["status"] = "active" if alive else "down"
    return node


def _nodes(snapshot: ClusterSnapshot) -> list[dict[str, Any]]:
    now = time.time()
    nodes = (public_node(snapshot, r, now) for r in snapshot.under(model.NODES_PREFIX))
    return sorted(nodes, key=lambda n: int(n["uid"]))


def cluster_router(context: ApiContext) -> APIRouter:
    router = APIRouter()

    @router.get("/v1/cluster")
    async def get_cluster(request: Request) -> Response:
        runtime, user = await context.require_fresh_cluster(request)
        require_role(user, CLUSTER_VIEWERS, "view the cluster")
        return compact(public_cluster(runtime.snapshot.get(model.CLUSTER_KEY) or {}))

    @router.put("/v1/cluster")
    async def put_cluster(request: Request) -> Response:
        runtime, user = await context.require_fresh_cluster(request)
        require_role(user, CLUSTER_ADMINS, "change the cluster")
        body = await read_json_object(request)
        record, revision = await update_cluster(runtime.store, body, policy=False)
        await wait_for_revision(runtime.snapshot, revision)
        return compact(public_cluster(record))

    @router.get("/v1/cluster/policy")
    async def get_policy(request: Request) -> Response:
        runtime, user = await context.require_fresh_cluster(request)
        require_role(user, CLUSTER_VIEWERS, "view the cluster policy")
        return compact(public_policy(runtime.snapshot.get(model.CLUSTER_KEY) or {}))

    @router.put("/v1/cluster/policy")
    async def put_policy(request: Request) -> Response:
        runtime, user = await context.require_fresh_cluster(request)
        require_role(user, CLUSTER_ADMINS, "change the cluster policy")
        body = await read_json_object(request)
        record, revision = await update_cluster(runtime.store, body, policy=True)
        await wait_for_revision(runtime.snapshot, revision)
        return compact(public_policy(record))

    @router.get("/v1/cluster/check")
    async def check(request: Request) -> Response:
        runtime, user = await context.require_fresh_cluster(request)
        require_role(user, CHECK_VIEWERS, "view the nodes' checks")
        snapshot = runtime.snapshot
        observer = observer_for(snapshot)
        results = [node_check(snapshot, observer, node) for node in _nodes(snapshot)]
        passed = bool(results) and all(entry["result"] for entry in results)
        return compact({"cluster_test_result": passed, "nodes": results})

    @router.get("/v1/nodes")
    async def nodes(request: Request) -> Response:
        runtime, user = await context.require_fresh_cluster(request)
        require_role(user, NODE_VIEWERS, "view nodes")
        return compact(_nodes(runtime.snapshot))

    @router.get("/v1/nodes/status")
    async def nodes_status(request: Request) -> Response:
        runtime, user = await context.require_fresh_cluster(request)
        require_role(user, NODE_VIEWERS, "view nodes")
        return compact({str(n["uid"]): {"status": n["status"]} for n in _nodes(runtime.snapshot)})

    @router.get("/v1/nodes/{uid}")
    async def node(uid: str, request: Request) -> Response:
        runtime, user = await context.require_fresh_cluster(request)
        require_role(user, NODE_VIEWERS, "view nodes")
        snapshot = runtime.snapshot
        number = path_uid(uid)
        record = snapshot.get(model.node_key(number)) if number is not None else None
        if record is None:
            raise NodeNotFound(f"node {uid} does not exist")
        return compact(public_node(snapshot, record, time.time()))

    return router
