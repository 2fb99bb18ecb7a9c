"""The app factory: one FastAPI app per agent, built from an `ApiContext` (no globals): the API's
routers, the web console's, the OpenAPI document (authenticated after bootstrap), and the
security headers every answer carries."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import Response

from cnm import __version__
from cnm.api.bootstrap_routes import bootstrap_router
from cnm.api.client_watch import WatchClients
from cnm.api.cluster_routes import cluster_router
from cnm.api.context import ApiContext
from cnm.api.errors import install_error_handlers
from cnm.api.join_routes import join_router
from cnm.api.license_routes import license_router
from cnm.api.node_action_routes import node_action_router
from cnm.api.openapi import install_openapi
from cnm.api.responses import compact
from cnm.api.security_headers import SecurityHeaders
from cnm.api.sign_in_routes import sign_in_router
from cnm.api.users_routes import users_router
from cnm.api.web_routes import web_router
from cnm.ops.http import install_metrics


def create_app(context: ApiContext) -> FastAPI:
    app = FastAPI(
        title="cnm",
        version=__version__,
        docs_url=None,
        redoc_url=None,
        # Served by the route below instead, so that it needs credentials after bootstrap.
        openapi_url=None,
        # operationId = the route function's name (`get_user`), what a client generator names
        # its methods after; FastAPI's default appends the path and method.
        generate_unique_id_function=lambda route: route.name,
        # FastAPI's own OpenTelemetry hooks are never configured by cnm (its metrics are
        # Prometheus, cnm.ops), yet enabled they look up the global providers on every request:
        # a tenth of a GET /v1/bootstrap.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    install_error_handlers(app)
    app.include_router(bootstrap_router(context))
    app.include_router(cluster_router(context))
    app.include_router(users_router(context))
    app.include_router(sign_in_router(context))
    app.include_router(license_router(context))
    app.include_router(join_router(context))
    app.include_router(node_action_router(context))
    install_metrics(app, context)
    app.include_router(web_router())

    @app.get("/v1/openapi.json", include_in_schema=False)
    async def openapi(request: Request) -> Response:
        # Like every route: open before bootstrap, credentials of any user after it.
        await context.authenticate_if_bootstrapped(request)
        return compact(app.openapi())

    app.add_middleware(SecurityHeaders)
    app.add_middleware(WatchClients)
    install_openapi(app)
    return app
