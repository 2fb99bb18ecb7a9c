"""The app factory: one Starlette app per agent, built from an `ApiContext` (no globals): the
API's routes, the web console's, the OpenAPI document (authenticated after bootstrap), and the
security headers every answer carries."""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response

from cnm import __version__
from cnm.api.bootstrap_routes import bootstrap_router
from cnm.api.client_watch import WatchClients
from cnm.api.cluster_routes import cluster_router
from cnm.api.context import ApiContext
from cnm.api.errors import install_error_handlers
from cnm.api.join_routes import join_router
from cnm.api.license_routes import license_router
from cnm.api.node_action_routes import node_action_router
from cnm.api.openapi import build_document
from cnm.api.responses import compact
from cnm.api.routing import ApiRoute
from cnm.api.security_headers import SecurityHeaders
from cnm.api.sign_in_routes import sign_in_router
from cnm.api.users_routes import users_router
from cnm.api.web_routes import web_router
from cnm.ops.http import install_metrics


class ApiApp(Starlette):
    """The agent's ASGI app; `openapi()` is its OpenAPI document, made on first use (the
    documentation models cost memory an agent that is never asked does not spend)."""

    _document: dict[str, Any] | None = None

    def openapi(self) -> dict[str, Any]:
        if self._document is None:
            self._document = build_document(self.routes, title="cnm", version=__version__)
        return self._document


def create_app(context: ApiContext) -> ApiApp:
    routers = (
        bootstrap_router(context),
        cluster_router(context),
        users_router(context),
        sign_in_router(context),
        license_router(context),
        join_router(context),
        node_action_router(context),
    )
    app = ApiApp(routes=[route for router in routers for route in router.routes])
    install_error_handlers(app)
    install_metrics(app, context)
    app.router.routes.extend(web_router().routes)

    async def openapi(request: Request) -> Response:
        # Like every route: open before bootstrap, credentials of any user after it.
        await context.authenticate_if_bootstrapped(request)
        return compact(app.openapi())

    app.router.routes.append(
        ApiRoute("/v1/openapi.json", openapi, method="GET", include_in_schema=False)
    )
    app.add_middleware(SecurityHeaders)
    app.add_middleware(WatchClients)
    return app
