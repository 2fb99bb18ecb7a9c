"""GET /metrics and the HTTP middleware that counts every request.

`install_metrics(app, context)` is the only call the app factory makes: it registers the
scrape-time collector on the context's registry, subscribes the metrics to the bootstrap
manager's transitions, adds the middleware and the route.

The middleware is plain ASGI (no BaseHTTPMiddleware: that one costs every request a task and a
stream copy). It labels a request with the template of the route that served it (`/v1/nodes/
{uid}`, never `/v1/nodes/7`), read from the scope after routing; a request no route matched is
`unmatched`, so a scanner cannot grow the label set.

/metrics follows the API's rule: open before the node is in a cluster, then HTTP Basic (what
Prometheus' `basic_auth` sends) or a JWT of any user with a role.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cnm.api.auth import CLUSTER_VIEWERS, require_role
from cnm.api.context import ApiContext
from cnm.api.routing import ApiRouter
from cnm.ops.collector import StateCollector
from cnm.ops.metrics import AgentMetrics

METRICS_PATH = "/metrics"
UNMATCHED = "unmatched"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})
_SCHEMES = frozenset({"basic", "jwt", "bearer"})


def route_label(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED


def scheme_label(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme = value.split(b" ", 1)[0].decode("latin-1").lower()
            return scheme if scheme in _SCHEMES else "other"
    return "none"


class MetricsMiddleware:
    def __init__(self, app: ASGIApp, metrics: AgentMetrics) -> None:
        self.app = app
        self.metrics = metrics
        # The labelled children by (route, method, status): `labels()` validates and locks on
        # every call, three times the cost of the increments themselves. Bounded like the labels.
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets when the app raises before answering

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            self._count(scope, status, time.perf_counter() - started)

    def _count(self, scope: Scope, status: int, elapsed: float) -> None:
        route = route_label(scope)
        method = str(scope.get("method", "GET"))
        key = (route, method, status)
        children = self._children.get(key)
        if children is None:
            method = method if method in _METHODS else "other"
            children = (
                self.metrics.http_requests.labels(route, method, str(status)),
                self.metrics.http_duration.labels(route, method),
            )
            if method != "other":
                self._children[key] = children
        children[0].inc()
        children[1].observe(elapsed)
        if status == 401:
            self.metrics.sign_in_failures.labels(scheme_label(scope)).inc()


def metrics_router(context: ApiContext, metrics: AgentMetrics) -> ApiRouter:
    # Not in the OpenAPI document: it is the Prometheus text format, not the JSON API.
    router = ApiRouter(include_in_schema=False)

    @router.get(METRICS_PATH)
    async def scrape(request: Request) -> Response:
        user = await context.authenticate_if_bootstrapped(request)
        if user is not None:
            require_role(user, CLUSTER_VIEWERS, "read the metrics")
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return router


def install_metrics(app: Starlette, context: ApiContext) -> None:
    """Wire the metrics of one agent (`context.metrics`) into its app."""
    metrics = context.metrics
    metrics.registry.register(
        StateCollector(context.manager, context.authenticator.verifier, metrics)
    )
    context.manager.listeners.append(metrics.on_bootstrap_transition)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.router.routes.extend(metrics_router(context, metrics).routes)
