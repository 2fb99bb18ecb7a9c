"""Every error that leaves the API becomes JSON here, and only here.

`CnmError` subclasses carry their status and code; Starlette's 404/405 get the same JSON shape
(405 keeps its `Allow` header); anything else is a 500 `internal_error` whose log line says
"please report" and whose body carries no traceback.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from cnm.api.responses import compact
from cnm.errors import CnmError, NoCluster, Unauthorized

log = logging.getLogger(__name__)

AUTH_CHALLENGE = {"WWW-Authenticate": 'Basic realm="cnm"'}


def error_response(error: CnmError) -> Response:
    headers = AUTH_CHALLENGE if isinstance(error, Unauthorized) else None
    return compact(error.to_body(), status_code=error.http_status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    async def on_cnm_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, CnmError)
        if exc.http_status >= 500 and not isinstance(exc, NoCluster):
            log.warning("%s %s: [%s] %s", request.method, request.url.path, exc.error_code, exc)
        return error_response(exc)

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 404:
            body = {
                "description": f"no such resource: {request.url.path}",
                "error_code": "not_found",
            }
        elif exc.status_code == 405:
            body = {
                "description": f"method {request.method} is not allowed on {request.url.path}",
                "error_code": "method_not_allowed",
            }
        else:
            body = {"description": str(exc.detail), "error_code": "http_error"}
        return compact(body, status_code=exc.status_code, headers=exc.headers)

    async def on_validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        fields = [".".join(str(p) for p in e.get("loc", ())) for e in exc.errors()]
        body = {
            "description": "invalid request: " + ", ".join(fields),
            "error_code": "invalid_schema",
        }
        return compact(body, status_code=400)

    async def on_client_gone(request: Request, exc: Exception) -> Response:
        # The client went away mid-request (killed, timed out): nothing is wrong here and
        # nobody reads the answer.
        log.info(
            "%s %s: the client disconnected before sending its body",
            request.method,
            request.url.path,
        )
        return compact(
            {"description": "the client disconnected", "error_code": "client_disconnected"},
            status_code=400,
        )

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error on %s %s (please report)", request.method, request.url.path)
        body = {
            "description": "internal error; the agent's log has the details",
            "error_code": "internal_error",
        }
        return compact(body, status_code=500)

    app.add_exception_handler(CnmError, on_cnm_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(ClientDisconnect, on_client_gone)
    app.add_exception_handler(Exception, on_unexpected)
