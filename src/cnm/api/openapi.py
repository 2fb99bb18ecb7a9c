"""The OpenAPI document (`GET /v1/openapi.json`): what each operation takes and answers.

Routes declare their documentation with `operation(...)` (keyword arguments for `ApiRouter`'s
route decorators, api/routing.py): the request body's schema, path parameters, the statuses the
route really answers with their bodies, and who may call it. None of it changes how a request is
handled: path parameters are read from `request.path_params` and bodies by `cnm.json_body`, and
answers are written by `api/responses.py`. `build_document(routes)` makes the document from the
routes (operationId = the route's name, what a client generator names its methods after), adds
the body schemas (`api/openapi_models.py`, the bootstrap object of `cnm.bootstrap.schema`), the
error codes and the security schemes; the app builds it on first request.
tests/api/test_openapi_fuzz.py runs Schemathesis against it; docs/api-contract.md §1 lists the
same routes.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from starlette.routing import BaseRoute

from cnm.api.routing import ApiRoute
from cnm.bootstrap.schema import MAX_STRING_CHARS, BootstrapRequest
from cnm.bootstrap.validation import ACTIONS
from cnm.errors import ERROR_CLASSES
from cnm.json_body import MAX_BODY_BYTES, MAX_JSON_DEPTH

OPENAPI_VERSION = "3.1.0"
REF = "#/components/schemas/{model}"
DESCRIPTION = (
    "The bootstrap REST API of Redis Enterprise Software as cnm answers it "
    "(docs/api-contract.md). Answers are compact JSON with sorted keys; error bodies "
    "are described in docs/api-errors.md. A method a path does not list answers 405 "
    "`method_not_allowed` with an `Allow` header; a path not listed answers 404 "
    "`not_found`. What the schemas cannot say: an integer is a JSON integer (`1.0` is "
    "a 400), no string may hold a NUL character, and a password must also meet the "
    "cluster's `password_min_length` (at least 8)."
)
JSON = "application/json"

# Security requirements: before bootstrap the bootstrap routes ignore credentials (`{}`: none),
# after it every route needs Basic or a JWT (docs/api-contract.md §1).
BASIC, JWT = "basic", "jwt"
Security = list[dict[str, list[str]]]
CREDENTIALS: Security = [{BASIC: []}, {JWT: []}]
OPEN_UNTIL_BOOTSTRAP: Security = [{}, *CREDENTIALS]
SECURITY_SCHEMES = {
    BASIC: {
        "type": "http",
        "scheme": "basic",
        "description": "A cluster user's email (or name) and password.",
    },
    JWT: {
        "type": "apiKey",
        "in": "header",
        "name": "Authorization",
        "description": "`JWT <token>` with a token from POST /v1/users/authorize "
        "(`Bearer <token>` is accepted too).",
    },
}

_ERROR_REASONS = {
    400: "Bad request: `invalid_schema` naming the field (or the line and column of bad "
    "JSON), `read_only_field`, `password_too_short`, `password_not_complex`, `bad_request`.",
    401: "Missing or wrong credentials (after bootstrap): `unauthorized`.",
    403: "The user's role may not do this: `insufficient_permissions` (`required_roles`).",
    404: "No such object: `not_found`, `node_not_found`, `user_not_found`.",
    406: "The request was understood but refused: violated license terms (`invalid_license` "
    "with `error_details`) or `change_last_admin_role_not_allowed`.",
    409: "Conflict: `bootstrap_in_progress`, `already_bootstrapped`, `email_already_exists`, "
    "`name_already_exists`, or `store_contention` (send it again).",
    429: "Too many sign-in attempts or password checks at once: `too_many_requests`, with "
    "`Retry-After` (seconds).",
    413: f"`payload_too_large`: the body is larger than {MAX_BODY_BYTES} bytes (`limit`).",
    503: "`no_cluster` (the node is not in a cluster yet), `store_unavailable` (it cannot "
    "reach or has not read the cluster store) or `signer_unavailable` (its certificate signer "
    "process did not answer: send the request again).",
}
_UNAUTHORIZED_HEADERS = {
    "WWW-Authenticate": {
        "description": 'Always `Basic realm="cnm"`.',
        "schema": {"type": "string"},
    }
}

# Routes name their models (`operation(ok="User")`) instead of importing them: the models of
# api/openapi_models.py are documentation only, and building their pydantic classes costs the
# agent about two MiB for its whole life, so they are imported when the document is first built.
Model = type[BaseModel] | str


def body_models() -> tuple[type[BaseModel], ...]:
    """Every request body model the document refers to by name."""
    from cnm.api import openapi_models as m

    return (
        BootstrapRequest,
        m.ClusterUpdate,
        m.PolicyUpdate,
        m.UserCreate,
        m.UserUpdate,
        m.LicenseUpdate,
        m.AuthorizeBody,
        m.RefreshBody,
    )


def response_models() -> tuple[type[BaseModel], ...]:
    """Every answer model the document refers to by name."""
    from cnm.api import openapi_models as m

    return (
        m.ErrorBody,
        m.BootstrapFailureBody,
        m.BootstrapInfo,
        m.ClusterObject,
        m.PolicyObject,
        m.ClusterCheck,
        m.Node,
        m.NodeList,
        m.NodesStatus,
        m.LicenseObject,
        m.User,
        m.UserList,
        m.Token,
    )


def ref(model: Model) -> dict[str, str]:
    return {"$ref": REF.format(model=model if isinstance(model, str) else model.__name__)}


def json_content(model: Model) -> dict[str, Any]:
    return {JSON: {"schema": ref(model)}}


def path_parameter(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": schema,
        "description": description,
    }


ACTION_PARAMETER = path_parameter(
    "action",
    {"type": "string", "enum": list(ACTIONS)},
    "The bootstrap action; any other value is a 404 `not_found`.",
)


def uid_parameter(what: str) -> dict[str, Any]:
    return path_parameter(
        "uid", {"type": "integer", "minimum": 0}, f"The {what}'s uid; an unknown one is a 404."
    )


def operation(
    summary: str,
    *,
    ok: Model | None,
    errors: Iterable[int],
    body: Model | None = None,
    body_required: bool = True,
    text_body: bool = False,
    parameters: Iterable[dict[str, Any]] = (),
    security: Security | None = None,
    failure: Model | None = None,
    description: str | None = None,
) -> dict[str, Any]:
    """Keyword arguments for a route decorator (api/routing.py): its documentation only.

    `ok` is the 200 body (None: 200 with an empty body); `errors` the error statuses it answers
    with the error body; `failure` a 406 body other than the error body; `body` the request
    body's model (`text_body`: the body may also be plain text)."""
    responses: dict[str, Any] = {"200": {"description": "Success"}}
    if ok is not None:
        responses["200"]["content"] = json_content(ok)
    statuses = set(errors)
    if 401 in statuses:
        # Every password check may be refused at once when too many are queued, or after too
        # many failures from the client's address (api/auth.py).
        statuses.add(429)
    for status in sorted(statuses):
        entry: dict[str, Any] = {
            "description": _ERROR_REASONS[status],
            "content": json_content(failure if status == 406 and failure else "ErrorBody"),
        }
        if status == 401:
            entry["headers"] = _UNAUTHORIZED_HEADERS
        responses[str(status)] = entry
    extra: dict[str, Any] = {
        "responses": responses,
        "security": CREDENTIALS if security is None else security,
    }
    if body is not None:
        content = json_content(body)
        if text_body:
            content["text/plain"] = {"schema": {"type": "string"}}
        extra["requestBody"] = {"required": body_required, "content": content}
    if parameters:
        extra["parameters"] = list(parameters)
    kwargs: dict[str, Any] = {"summary": summary, "openapi_extra": extra}
    if description:
        kwargs["description"] = description
    return kwargs


# --- the document ---------------------------------------------------------------------------------


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` or null, unless it already allows null."""
    if schema.get("type") == "null" or any(
        option.get("type") == "null" for option in schema.get("anyOf", ())
    ):
        return schema
    annotations: dict[str, Any] = {
        k: schema.pop(k) for k in ("description", "default", "title") if k in schema
    }
    return {"anyOf": [schema, {"type": "null"}], **annotations}


def _null_means_absent(definition: dict[str, Any]) -> None:
    # The body parsers treat `"field": null` as an absent field, at every level of an object
    # (so a required field may not be null).
    properties = definition.get("properties", {})
    required = set(definition.get("required", ()))
    for name, schema in properties.items():
        if name not in required:
            properties[name] = _nullable(schema)


def _body_schemas() -> dict[str, Any]:
    _, top = models_json_schema(
        [(model, "validation") for model in body_models()], ref_template=REF
    )
    definitions: dict[str, Any] = top.get("$defs", {})
    for definition in definitions.values():
        _null_means_absent(definition)
    nodes = definitions["ClusterSpec"]["properties"]["nodes"]
    # One documentation example sends `"nodes": "1.1.1.1"`: a single string is a one-item list.
    options = nodes["anyOf"]
    options.insert(1, {"type": "string", "maxLength": MAX_STRING_CHARS})
    definitions["BootstrapRequest"]["description"] = (
        "The bootstrap object (docs/api-contract.md §2). Every field is optional to the "
        "parser; what an action needs is checked afterwards (`config_error`). Unknown fields "
        "are ignored, `null` means absent. No string may hold a NUL character or an unpaired "
        f"surrogate; nesting at most {MAX_JSON_DEPTH} levels."
    )
    return definitions


def _response_schemas() -> dict[str, Any]:
    _, top = models_json_schema(
        [(model, "serialization") for model in response_models()], ref_template=REF
    )
    definitions: dict[str, Any] = top.get("$defs", {})
    codes = sorted(ERROR_CLASSES)
    definitions["ErrorBody"]["properties"]["error_code"]["enum"] = codes
    definitions["BootstrapFailureBody"]["properties"]["error_code"]["enum"] = codes
    return definitions


def _paths(routes: Iterable[BaseRoute]) -> dict[str, dict[str, Any]]:
    """Each documented route's operation, under its path template and method."""
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        if not isinstance(route, ApiRoute) or not route.include_in_schema:
            continue
        op: dict[str, Any] = {"operationId": route.name}
        if route.summary:
            op["summary"] = route.summary
        # Without a description of its own, the handler's docstring describes the operation.
        description = route.description or inspect.getdoc(route.endpoint)
        if description:
            op["description"] = description
        op.update(route.openapi_extra)
        paths.setdefault(route.path_format, {})[route.method.lower()] = op
    return paths


def build_document(routes: Iterable[BaseRoute], *, title: str, version: str) -> dict[str, Any]:
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": title, "version": version, "description": DESCRIPTION},
        "paths": _paths(routes),
        "components": {
            "schemas": {**_response_schemas(), **_body_schemas()},
            "securitySchemes": SECURITY_SCHEMES,
        },
    }
