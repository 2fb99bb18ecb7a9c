"""The member's half of the join handshake (cnm-internal routes under /v1/join/).

- `GET /v1/join/ca`: the cluster CA certificate, unauthenticated (it is public); the joiner
  compares its fingerprint with the one it was told to expect before sending any credential.
- `POST /v1/join/time`: one NTP-style exchange (`t1` in; receive and send times out) so the
  joiner can measure its clock offset over several round trips.
- `POST /v1/join/node`: admission: checks, uid, signed certificate, store endpoints.
Both POSTs need an admin's credentials; a refusal carries the bootstrap error code and details.
"""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from fastapi.responses import Response

from cnm.api.auth import CLUSTER_ADMINS
from cnm.api.context import ApiContext, read_body
from cnm.api.responses import compact
from cnm.cluster import model
from cnm.cluster.membership import parse_join_request
from cnm.errors import BadRequest, BootstrapFailure, InsufficientPermissions, NoCluster
from cnm.security import pki


def join_router(context: ApiContext) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    async def admin(request: Request) -> None:
        _, user = await context.require_cluster(request)
        if user.get("role") not in CLUSTER_ADMINS:
            raise InsufficientPermissions(
                f"user {user.get('email')!r} is not an admin; joining a node needs an admin's "
                "credentials"
            )

    @router.get("/v1/join/ca")
    async def ca() -> Response:
        runtime = context.manager.runtime
        record = runtime.snapshot.get(model.CA_KEY) if runtime else None
        if record is None:
            raise NoCluster("this node is not part of a cluster: it cannot admit nodes")
        cert = str(record["cert_pem"]).encode()
        return compact({"ca_pem": cert.decode(), "ca_fingerprint": pki.fingerprint_sha256(cert)})

    @router.post("/v1/join/time")
    async def clock(request: Request) -> Response:
        received = time.time()
        await admin(request)
        try:
            t1 = float((await request.json())["t1"])
        except (ValueError, KeyError, TypeError):
            raise BadRequest("t1: expected the sender's clock reading in seconds") from None
        return compact({"t1": t1, "t2": received, "t3": time.time()})

    @router.post("/v1/join/node")
    async def admit(request: Request) -> Response:
        await admin(request)
        runtime = context.manager.runtime
        assert runtime is not None
        join_request = parse_join_request(await read_body(request))
        try:
            grant = await runtime.admissions.admit(join_request, member_addr=context.config.addr)
        except BootstrapFailure as failure:
            context.metrics.admission(join_request.addr, failure.error_code)
            body = {
                "description": failure.message,
                "error_code": failure.error_code,
                "error_details": failure.error_details(),
            }
            return compact(body, status_code=406)
        context.metrics.admission(join_request.addr, None, uid=grant["uid"])
        return compact(grant)

    return router
