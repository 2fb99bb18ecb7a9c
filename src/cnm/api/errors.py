"""Every error that leaves the API becomes JSON here, and only here; here its status is decided.

Body shapes (compact JSON, keys sorted; docs/api-errors.md says the same for clients):

- An error: `{"description": <message>, "error_code": <code>, ...details}`: the error's
  structured details sit beside the two fields (`error_body`). An `invalid_license` also carries
  `error_details` (`{"message": .., "violation": .., ..}`), where the bootstrap status puts it.
  The status is the error class's `http_status`.
- A failed validation (`POST /v1/bootstrap/validate/{action}`, 406) and the status record
  (`GET /v1/bootstrap` → `bootstrap_status`) share one shape: `{"state": "error", "error_code":
  .., "error_details": {"message": .., ...details}}`; the status record adds its times, phase,
  notes and `retryable` (bootstrap/status.py).
- A join refusal (`POST /v1/join/node`, 406, cnm-internal): `{"description", "error_code",
  "error_details"}`, the `JoinRefusal` of cluster/handshake.py.

`CnmError` subclasses carry their status and code; Starlette's 404/405 get the same JSON shape
(a 405 with an `Allow` header naming every method of the path); anything else is a 500
`internal_error` whose log line says "please report" and whose body carries no traceback.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Match

from cnm.api.responses import compact
from cnm.bootstrap.status import BootstrapState
from cnm.cluster.handshake import JoinRefusal
from cnm.errors import (
    BootstrapFailure,
    ClientDisconnected,
    CnmError,
    HttpError,
    MethodNotAllowed,
    NoCluster,
    NotFound,
    SignInLocked,
    TooManyRequests,
    Unauthorized,
)

log = logging.getLogger(__name__)

HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
AUTH_CHALLENGE = {"WWW-Authenticate": 'Basic realm="cnm"'}
# A failure of a bootstrap check (validate) or a refused join: the request was understood but
# cannot be carried out as it stands.
FAILURE_STATUS = 406


def error_body(error: CnmError) -> dict[str, Any]:
    """`{description, error_code, ...details}` (+ `error_details` where the class asks for it)."""
    body: dict[str, Any] = {"description": error.message, "error_code": error.error_code}
    body.update(error.details)
    if error.details_in_body and isinstance(error, BootstrapFailure):
        body["error_details"] = error.error_details()
    return body


def error_response(error: CnmError) -> Response:
    headers = dict(AUTH_CHALLENGE) if isinstance(error, Unauthorized) else {}
    retry_after = error.details.get("retry_after")
    if isinstance(error, TooManyRequests | SignInLocked) and isinstance(retry_after, int):
        headers["Retry-After"] = str(retry_after)
    return compact(error_body(error), status_code=error.http_status, headers=headers or None)


def validation_failure_response(failure: BootstrapFailure) -> Response:
    """The validate route's 406: the failure as the bootstrap status would show it."""
    body = {
        "state": BootstrapState.ERROR.value,
        "error_code": failure.error_code,
        "error_details": failure.error_details(),
    }
    return compact(body, status_code=FAILURE_STATUS)


def join_refusal_response(failure: BootstrapFailure) -> Response:
    """The member's 406 to a join it refuses; the joiner raises the same failure."""
    return compact(JoinRefusal.from_failure(failure).to_wire(), status_code=FAILURE_STATUS)


def allowed_methods(request: Request) -> list[str]:
    """Every method some route of the app serves on the request's path. Starlette's 405 names
    only the first route that matched the path, and several routes may share one path."""
    # Asked of the routing itself, method by method: what a route serves is its own business.
    routes = request.app.router.routes
    return [
        method
        for method in HTTP_METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL for route in routes
        )
    ]


def install_error_handlers(app: Starlette) -> None:
    async def on_cnm_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, CnmError)
        if exc.http_status >= 500 and not isinstance(exc, NoCluster):
            log.warning("%s %s: [%s] %s", request.method, request.url.path, exc.error_code, exc)
        return error_response(exc)

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        error: CnmError
        if exc.status_code == 404:
            error = NotFound(f"no such resource: {request.url.path}")
        elif exc.status_code == 405:
            error = MethodNotAllowed(
                f"method {request.method} is not allowed on {request.url.path}"
            )
            allowed = allowed_methods(request)
            if allowed:
                return compact(
                    error_body(error), status_code=405, headers={"Allow": ", ".join(allowed)}
                )
        else:
            error = HttpError(str(exc.detail))
        # The framework's status, not the class's: http_error stands for any of them.
        return compact(error_body(error), status_code=exc.status_code, headers=exc.headers)

    async def on_client_gone(request: Request, exc: Exception) -> Response:
        # The client went away mid-request (killed, timed out): nothing is wrong here and
        # nobody reads the answer.
        log.info(
            "%s %s: the client disconnected before sending its body",
            request.method,
            request.url.path,
        )
        return error_response(ClientDisconnected("the client disconnected"))

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error on %s %s (please report)", request.method, request.url.path)
        return error_response(CnmError("internal error; the agent's log has the details"))

    app.add_exception_handler(CnmError, on_cnm_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(ClientDisconnect, on_client_gone)
    app.add_exception_handler(Exception, on_unexpected)
