"""The API's routes: Starlette routes that also carry their OpenAPI operation.

Every handler is `async def handler(request) -> Response`: it reads its path parameters from
`request.path_params` and its body with `cnm.json_body`, and writes its answer with
`api/responses.py`, so the web framework only has to route. Starlette does that (docs/
architecture.md, "The web framework": FastAPI's validation, dependency injection and telemetry
cost the agent about 12 MiB and a few percent of every request, and cnm used none of them).

`ApiRouter` collects the routes of one part of the API with decorators named after the HTTP
method; `operation(...)` (api/openapi.py) gives each route its documentation, which
`api/openapi.py` turns into the document. A GET route answers GET only: HEAD gets the same 405
as any other method a path does not list (Starlette would add HEAD to every GET route).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

Endpoint = Callable[[Request], Awaitable[Response]]


class ApiRoute(Route):
    """A route with its OpenAPI operation: `summary`, `description` and `openapi_extra` (the
    operation's other fields: responses, security, requestBody, parameters)."""

    def __init__(
        self,
        path: str,
        endpoint: Endpoint,
        *,
        method: str,
        name: str | None = None,
        include_in_schema: bool = True,
        summary: str | None = None,
        description: str | None = None,
        openapi_extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(
            path, endpoint, methods=[method], name=name, include_in_schema=include_in_schema
        )
        assert self.methods is not None
        self.methods.discard("HEAD")
        self.method = method
        self.summary = summary
        self.description = description
        self.openapi_extra = openapi_extra or {}


class ApiRouter:
    """The routes of one part of the API, in the order they were declared (the order they
    match in). `include_in_schema=False` keeps all of them out of the OpenAPI document."""

    def __init__(self, *, include_in_schema: bool = True) -> None:
        self.routes: list[ApiRoute] = []
        self._in_schema = include_in_schema

    def add(
        self,
        path: str,
        endpoint: Endpoint,
        *,
        method: str,
        include_in_schema: bool = True,
        **doc: Any,
    ) -> None:
        self.routes.append(
            ApiRoute(
                path,
                endpoint,
                method=method,
                include_in_schema=include_in_schema and self._in_schema,
                **doc,
            )
        )

    def _decorator(
        self, method: str, path: str, doc: dict[str, Any]
    ) -> Callable[[Endpoint], Endpoint]:
        def register(endpoint: Endpoint) -> Endpoint:
            self.add(path, endpoint, method=method, **doc)
            return endpoint

        return register

    def get(self, path: str, **doc: Any) -> Callable[[Endpoint], Endpoint]:
        return self._decorator("GET", path, doc)

    def post(self, path: str, **doc: Any) -> Callable[[Endpoint], Endpoint]:
        return self._decorator("POST", path, doc)

    def put(self, path: str, **doc: Any) -> Callable[[Endpoint], Endpoint]:
        return self._decorator("PUT", path, doc)

    def delete(self, path: str, **doc: Any) -> Callable[[Endpoint], Endpoint]:
        return self._decorator("DELETE", path, doc)
