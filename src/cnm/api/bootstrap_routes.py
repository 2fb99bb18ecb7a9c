"""The bootstrap routes: GET /v1/bootstrap (and the docs' /v1/boostrap), POST an action, and
POST validate/{action}."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from cnm import SOFTWARE_VERSION
from cnm.api.context import ApiContext, read_body
from cnm.api.errors import validation_failure_response
from cnm.api.responses import compact, empty_ok
from cnm.node.data_dir import default_ccs_path
from cnm.node.facts import StoragePaths, local_node_info


def bootstrap_router(context: ApiContext) -> APIRouter:
    router = APIRouter()

    async def get_status(request: Request) -> Response:
        await context.authenticate_for_status(request)
        runtime = context.manager.runtime
        if runtime is not None:
            local = runtime.local
            uid: str | None = str(local.node_uid)
            paths = StoragePaths(
                local.persistent_path,
                local.ephemeral_path,
                local.bigstore_path,
                local.ccs_persistent_path,
            )
        else:
            uid = None
            config = context.config
            paths = StoragePaths(
                str(config.persistent_path),
                str(config.ephemeral_path),
                str(config.bigstore_path),
                str(default_ccs_path(config.persistent_path)),
            )
        info = local_node_info(
            uid=uid, paths=paths, software_version=SOFTWARE_VERSION, addr=context.config.addr
        )
        return compact(
            {"bootstrap_status": context.manager.status.to_api(), "local_node_info": info}
        )

    router.add_api_route("/v1/bootstrap", get_status, methods=["GET"])
    router.add_api_route("/v1/boostrap", get_status, methods=["GET"], include_in_schema=False)

    @router.post("/v1/bootstrap/validate/{action}")
    async def validate(action: str, request: Request) -> Response:
        await context.authenticate_if_bootstrapped(request)
        failure = context.manager.validate(action, await read_body(request))
        if failure is None:
            return empty_ok()
        return validation_failure_response(failure)

    @router.post("/v1/bootstrap/{action}")
    async def start(action: str, request: Request) -> Response:
        await context.authenticate_if_bootstrapped(request)
        context.manager.submit(action, await read_body(request))
        return empty_ok()

    return router
