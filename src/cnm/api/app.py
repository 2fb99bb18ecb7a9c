"""The app factory: one FastAPI app per agent, built from an `ApiContext` (no globals)."""

from __future__ import annotations

from fastapi import FastAPI

from cnm import __version__
from cnm.api.bootstrap_routes import bootstrap_router
from cnm.api.cluster_routes import cluster_router
from cnm.api.context import ApiContext
from cnm.api.errors import install_error_handlers


def create_app(context: ApiContext) -> FastAPI:
    app = FastAPI(
        title="cnm",
        version=__version__,
        docs_url=None,
        redoc_url=None,
        openapi_url="/v1/openapi.json",
    )
    install_error_handlers(app)
    app.include_router(bootstrap_router(context))
    app.include_router(cluster_router(context))
    return app
