"""The user routes: /v1/users (GET, POST), /v1/users/{uid} (GET, PUT, DELETE), and the tokens:
POST /v1/users/authorize and POST /v1/users/refresh_jwt.

Permissions (docs/api-contract.md §1): admin and user_manager manage users; any user may read itself
and change its own name, password (giving `current_password`) and email alerts; every
authenticated user may get a token.
Writes answer once this node's snapshot shows them, and take effect on every node as soon as its
snapshot does (the auth cache is flushed cluster-wide on any user change, see daemon.py).
"""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from cnm.api.auth import USER_ADMINS, require_role
from cnm.api.bodies import path_uid, read_json_object
from cnm.api.context import ApiContext, sign_in_attempt
from cnm.api.openapi import CREDENTIALS, operation, uid_parameter
from cnm.api.responses import compact, empty_ok
from cnm.api.routing import ApiRouter
from cnm.clock import utc_now
from cnm.cluster import fields
from cnm.cluster.records import ClusterRecord, UserRecord
from cnm.cluster.settings import policy_value
from cnm.cluster.users import (
    check_actor,
    create_user,
    delete_user,
    parse_user_body,
    public_user,
    update_user,
)
from cnm.cluster.writes import token_secret, wait_for_revision
from cnm.errors import (
    InsufficientPermissions,
    InvalidSchema,
    NoCluster,
    Unauthorized,
    UserNotFound,
    WrongCurrentPassword,
)
from cnm.security.tokens import DEFAULT_TTL, MAX_TTL, MIN_TTL, issue_token


def users_router(context: ApiContext) -> ApiRouter:
    router = ApiRouter()

    uid = [uid_parameter("user")]

    @router.get("/v1/users", **operation("Every user", ok="UserList", errors=(401, 403, 503)))
    async def list_users(request: Request) -> Response:
        runtime, user = await context.require_fresh_cluster(request)
        require_role(user, USER_ADMINS, "view users")
        return compact([public_user(record) for record in runtime.snapshot.users()])

    @router.post(
        "/v1/users",
        **operation(
            "Create a user",
            ok="User",
            errors=(400, 401, 403, 409, 413, 503),
            body="UserCreate",
        ),
    )
    async def post_user(request: Request) -> Response:
        runtime, actor = await context.require_fresh_cluster(request)
        require_role(actor, USER_ADMINS, "create users")
        changes = parse_user_body(await read_json_object(request), creating=True)
        check_actor(actor, None, changes)
        record, revision = await create_user(runtime.store, runtime.snapshot, changes, utc_now())
        await wait_for_revision(runtime.snapshot, revision)
        return compact(public_user(record))

    def _own_or_admin(actor: UserRecord, uid: str, action: str) -> int:
        number = path_uid(uid)
        if actor.role not in USER_ADMINS and (number is None or number != actor.uid):
            raise InsufficientPermissions(
                f"role {actor.role!r} may {action} only its own user",
                required_roles=sorted(USER_ADMINS),
            )
        if number is None:
            raise UserNotFound(f"user {uid} does not exist")
        return number

    # `uid` is read from the path parameters: anything but a known uid is a 404, not FastAPI's 422.
    @router.get(
        "/v1/users/{uid}",
        **operation("One user", ok="User", errors=(401, 403, 404, 503), parameters=uid),
    )
    async def get_user(request: Request) -> Response:
        uid = request.path_params["uid"]
        runtime, actor = await context.require_fresh_cluster(request)
        number = _own_or_admin(actor, uid, "view")
        record = runtime.snapshot.user(number)
        if record is None:
            raise UserNotFound(f"user {uid} does not exist")
        return compact(public_user(record))

    @router.put(
        "/v1/users/{uid}",
        **operation(
            "Change a user",
            ok="User",
            errors=(400, 401, 403, 404, 406, 409, 413, 503),
            body="UserUpdate",
            parameters=uid,
        ),
    )
    async def put_user(request: Request) -> Response:
        uid = request.path_params["uid"]
        runtime, actor = await context.require_fresh_cluster(request)
        number = _own_or_admin(actor, uid, "change")
        body = await read_json_object(request)
        changes = parse_user_body(body, creating=False)
        if changes.password is not None and number == actor.uid:
            await _check_current_password(actor, body)
        record, revision = await update_user(
            runtime.store, runtime.snapshot, number, changes, actor, utc_now()
        )
        await wait_for_revision(runtime.snapshot, revision)
        return compact(public_user(record))

    async def _check_current_password(actor: UserRecord, body: dict[str, Any]) -> None:
        # A stolen session (a JWT, a browser left open) must not be enough to take the account
        # over: changing one's own password needs the current one. An admin resetting another
        # user's password does not (that user may have forgotten it).
        current = fields.string(body, "current_password", max_chars=1024, secret=True)
        if current is None:
            raise InvalidSchema(
                "current_password: required to change your own password",
                fields=["current_password"],
            )
        login = actor.email or actor.name
        if not await context.authenticator.verifier.verify(login, current, actor.password_hash):
            raise WrongCurrentPassword("current_password: does not match your current password")

    @router.delete(
        "/v1/users/{uid}",
        **operation(
            "Delete a user", ok=None, errors=(401, 403, 404, 406, 409, 503), parameters=uid
        ),
    )
    async def remove_user(request: Request) -> Response:
        uid = request.path_params["uid"]
        runtime, actor = await context.require_fresh_cluster(request)
        require_role(actor, USER_ADMINS, "delete users")
        number = path_uid(uid)
        if number is None:
            raise UserNotFound(f"user {uid} does not exist")
        revision = await delete_user(runtime.store, runtime.snapshot, number, actor)
        await wait_for_revision(runtime.snapshot, revision)
        return empty_ok()

    async def _token(request: Request, *, body_credentials: bool) -> Response:
        runtime = context.manager.runtime
        if runtime is None:
            raise NoCluster("this node is not part of a cluster yet: there are no users")
        snapshot = runtime.snapshot
        header = request.headers.get("authorization")
        if header or not body_credentials:
            user = await context.authenticator.authenticate(
                header, snapshot, sign_in_attempt(request, runtime)
            )
            body = await read_json_object(request, empty_allowed=True)
        else:
            # The documented body form: {"username": ..., "password": ..., "ttl": ...}.
            body = await read_json_object(request, empty_allowed=True)
            username = fields.string(body, "username", max_chars=1024, secret=True)
            password = fields.string(body, "password", max_chars=1024, secret=True)
            if not username or password is None:
                raise Unauthorized(
                    "authentication required: send HTTP Basic credentials, or username and "
                    "password in the body"
                )
            user = await context.authenticator.authenticate_password(
                username, password, snapshot, sign_in_attempt(request, runtime)
            )
        ttl = fields.integer(body, "ttl", minimum=MIN_TTL, maximum=MAX_TTL)
        snapshot.require_fresh()
        now = int(time.time())
        previous = context.authenticator.token_claims(header)
        # A refreshed token keeps the session's start: a session ends `session_max_age` after
        # the password was last given, however often it is refreshed.
        auth_time = previous.auth_time if previous is not None else now
        max_age = policy_value(snapshot.cluster() or ClusterRecord(), "session_max_age")
        left = auth_time + max_age - now
        if left < MIN_TTL:
            raise Unauthorized(
                f"session older than session_max_age ({max_age} s): authorize again with a password"
            )
        secret = await token_secret(runtime.store, snapshot)
        token = issue_token(
            secret,
            user_uid=user.uid,
            password_hash=user.password_hash,
            ttl=min(DEFAULT_TTL if ttl is None else ttl, left),
            now=now,
            auth_time=auth_time,
        )
        return compact({"access_token": token})

    @router.post(
        "/v1/users/authorize",
        **operation(
            "Get a token",
            ok="Token",
            errors=(400, 401, 409, 413, 503),
            body="AuthorizeBody",
            body_required=False,
            security=[*CREDENTIALS, {}],
        ),
    )
    async def authorize(request: Request) -> Response:
        return await _token(request, body_credentials=True)

    @router.post(
        "/v1/users/refresh_jwt",
        **operation(
            "Get a new token",
            ok="Token",
            errors=(400, 401, 409, 413, 503),
            body="RefreshBody",
            body_required=False,
        ),
    )
    async def refresh_jwt(request: Request) -> Response:
        return await _token(request, body_credentials=False)

    return router
