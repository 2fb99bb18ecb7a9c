"""The sign-in lockout of a user (cluster/sign_in.py), for those who manage users:

- `GET /v1/users/{uid}/sign_in_failures`: the user's counted (user, client address) pairs:
  `[{"client", "failures", "locked", "locked_until"}]` (`locked_until` ISO 8601 UTC, or null).
- `POST /v1/users/{uid}/unlock`, body `{}` or `{"client": "<address>"}`: forget the failures and
  lock of every pair of the user, or of one; answers `{"unlocked": [<address>, ...]}`.

Both need an admin or a user manager (docs/api-contract.md §1, manage users).
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import Response

from cnm.api.auth import USER_ADMINS, require_role
from cnm.api.bodies import path_uid, read_json_object
from cnm.api.context import ApiContext
from cnm.api.openapi import operation, uid_parameter
from cnm.api.responses import compact
from cnm.api.routing import ApiRouter
from cnm.cluster import fields, sign_in
from cnm.cluster.writes import wait_for_revision
from cnm.errors import UserNotFound
from cnm.logs import event

log = logging.getLogger(__name__)


def sign_in_router(context: ApiContext) -> ApiRouter:
    router = ApiRouter()

    def user_uid(uid: str) -> int:
        number = path_uid(uid)
        if number is None:
            raise UserNotFound(f"user {uid} does not exist")
        return number

    # `uid` from the path parameters: anything but a known uid is a 404, not FastAPI's 422.
    @router.get(
        "/v1/users/{uid}/sign_in_failures",
        **operation(
            "A user's failed sign-ins by client address (cnm)",
            ok="SignInFailures",
            errors=(401, 403, 404, 503),
            parameters=[uid_parameter("user")],
        ),
    )
    async def failures(request: Request) -> Response:
        uid = request.path_params["uid"]
        runtime, actor = await context.require_fresh_cluster(request)
        require_role(actor, USER_ADMINS, "view sign-in failures")
        number = user_uid(uid)
        if runtime.snapshot.user(number) is None:
            raise UserNotFound(f"user {uid} does not exist")
        now = time.time()
        return compact(
            [
                {
                    "client": record.client,
                    "failures": record.failures,
                    "locked": record.locked_until > now,
                    "locked_until": _iso(record.locked_until) if record.locked_until else None,
                }
                for record in sign_in.pairs_of(runtime.snapshot, number)
            ]
        )

    @router.post(
        "/v1/users/{uid}/unlock",
        **operation(
            "Unlock a user's sign-ins (cnm)",
            ok="Unlocked",
            errors=(400, 401, 403, 404, 413, 503),
            body="UnlockBody",
            body_required=False,
            parameters=[uid_parameter("user")],
        ),
    )
    async def unlock(request: Request) -> Response:
        uid = request.path_params["uid"]
        runtime, actor = await context.require_fresh_cluster(request)
        require_role(actor, USER_ADMINS, "unlock users")
        number = user_uid(uid)
        if runtime.snapshot.user(number) is None:
            raise UserNotFound(f"user {uid} does not exist")
        body = await read_json_object(request, empty_allowed=True)
        client = fields.string(body, "client", max_chars=64, min_chars=1)
        clients, revision = await sign_in.unlock(runtime.store, runtime.snapshot, number, client)
        if revision:
            await wait_for_revision(runtime.snapshot, revision)
            log.info(
                "user %s unlocked sign-ins of user %d from %s",
                actor.uid,
                number,
                ", ".join(clients),
                extra=event("sign_in_unlocked", user=number, client=clients, by=actor.uid),
            )
        return compact({"unlocked": clients})

    return router


def _iso(unix: float) -> str:
    return datetime.fromtimestamp(unix, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
