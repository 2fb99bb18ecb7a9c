"""The node actions: POST /v1/nodes/{uid}/actions/remove (docs/api-contract.md §Removing a node).

Admin only (403 otherwise). The store side is cluster/removal.py; this route answers 200 with
what was done once this node's snapshot shows the removal, so a GET /v1/nodes on the same node
no longer lists the node.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from cnm.api.auth import NODE_REMOVERS, require_role
from cnm.api.bodies import path_uid
from cnm.api.context import ApiContext
from cnm.api.openapi import operation, uid_parameter
from cnm.api.responses import compact
from cnm.api.routing import ApiRouter
from cnm.cluster.removal import remove_node
from cnm.cluster.writes import wait_for_revision
from cnm.errors import NodeNotFound


def node_action_router(context: ApiContext) -> ApiRouter:
    router = ApiRouter()

    # `uid` from the path parameters: anything but a known uid is a 404, not FastAPI's 422.
    @router.post(
        "/v1/nodes/{uid}/actions/remove",
        **operation(
            "Remove a node from the cluster",
            ok="NodeRemoval",
            errors=(401, 403, 404, 409, 503),
            parameters=[uid_parameter("node")],
        ),
    )
    async def remove(request: Request) -> Response:
        uid = request.path_params["uid"]
        runtime, user = await context.require_fresh_cluster(request)
        require_role(user, NODE_REMOVERS, "remove nodes")
        number = path_uid(uid)
        if number is None:
            raise NodeNotFound(f"node {uid} does not exist")
        removal = await remove_node(
            runtime.store, runtime.snapshot, number, acting=runtime.local.node_uid
        )
        await wait_for_revision(runtime.snapshot, removal.revision)
        return compact(removal.to_api())

    return router
