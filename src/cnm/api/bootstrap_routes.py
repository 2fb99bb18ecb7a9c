"""The bootstrap routes: GET /v1/bootstrap (and the docs' /v1/boostrap), POST an action, and
POST validate/{action}."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from cnm import SOFTWARE_VERSION
from cnm.api.context import ApiContext, read_body
from cnm.api.errors import validation_failure_response
from cnm.api.openapi import ACTION_PARAMETER, OPEN_UNTIL_BOOTSTRAP, operation
from cnm.api.responses import empty_ok, json_bytes
from cnm.api.routing import ApiRouter
from cnm.api.status_body import StatusBody
from cnm.node.data_dir import default_ccs_path
from cnm.node.facts import StoragePaths, local_node_info


def bootstrap_router(context: ApiContext) -> ApiRouter:
    router = ApiRouter()
    body = StatusBody()

    def status_document() -> dict[str, Any]:
        runtime = context.manager.runtime
        # While the agent resumes at start, the local state it resumes from says who it is.
        local = runtime.local if runtime is not None else context.manager.resuming
        if local is not None:
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
        return {"bootstrap_status": context.manager.status.to_api(), "local_node_info": info}

    async def get_status(request: Request) -> Response:
        await context.authenticate_for_status(request)
        runtime = context.manager.runtime
        sources = (
            context.manager.status,
            runtime,
            runtime.local if runtime else context.manager.resuming,
        )
        return json_bytes(body.render(sources, status_document))

    router.add(
        "/v1/bootstrap",
        get_status,
        method="GET",
        **operation(
            "The bootstrap status and this machine's facts",
            ok="BootstrapInfo",
            errors=(401, 503),
            security=OPEN_UNTIL_BOOTSTRAP,
        ),
    )
    router.add("/v1/boostrap", get_status, method="GET", include_in_schema=False)

    # An unknown `action` is a 404 (docs/api-contract.md §1), answered by the manager.
    @router.post(
        "/v1/bootstrap/validate/{action}",
        **operation(
            "Run the checks of a bootstrap action; change nothing",
            ok=None,
            errors=(400, 401, 404, 406, 409, 413, 503),
            body="BootstrapRequest",
            parameters=[ACTION_PARAMETER],
            security=OPEN_UNTIL_BOOTSTRAP,
            failure="BootstrapFailureBody",
        ),
    )
    async def validate(request: Request) -> Response:
        await context.authenticate_if_bootstrapped(request)
        action = request.path_params["action"]
        failure = await context.manager.validate(action, await read_body(request))
        if failure is None:
            return empty_ok()
        return validation_failure_response(failure)

    @router.post(
        "/v1/bootstrap/{action}",
        **operation(
            "Start a bootstrap action (then poll GET /v1/bootstrap)",
            ok=None,
            errors=(400, 401, 404, 409, 413, 503),
            body="BootstrapRequest",
            parameters=[ACTION_PARAMETER],
            security=OPEN_UNTIL_BOOTSTRAP,
        ),
    )
    async def start(request: Request) -> Response:
        await context.authenticate_if_bootstrapped(request)
        context.manager.submit(request.path_params["action"], await read_body(request))
        return empty_ok()

    return router
