"""The member's half of the join handshake (cnm-internal routes under /v1/join/).

- `GET /v1/join/ca`: the cluster CA certificate, unauthenticated (it is public); the joiner
  compares its fingerprint with the one it was told to expect before sending any credential.
- `POST /v1/join/time`: one NTP-style exchange (`t1` in; receive and send times out) so the
  joiner can measure its clock offset over several round trips.
- `POST /v1/join/node`: admission: checks, uid, signed certificate, store endpoints.
- `POST /v1/join/renew`: a node's certificate renewal, authenticated by its current certificate.
- `POST /v1/join/auth/start` and `/finish`: the password proof (cluster/join_auth.py), bound to
  this member's HTTPS certificate; it ends with an admission token.
The time and node POSTs need an admin: the proof's token (`X-Cnm-Join-Token`), or Basic
credentials (joiners of earlier versions). A refusal carries the bootstrap error code and
details.
The messages are the types of cluster/handshake.py; error bodies come from api/errors.py.
"""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import Response

from cnm.api.auth import CLUSTER_ADMINS
from cnm.api.context import ApiContext, read_body
from cnm.api.errors import join_refusal_response
from cnm.api.responses import compact
from cnm.api.routing import ApiRouter
from cnm.cluster.handshake import (
    JOIN_TOKEN_HEADER,
    CaAnswer,
    TimeReply,
    parse_auth_finish,
    parse_auth_start,
    parse_join_request,
    parse_renew_request,
    parse_time_request,
)
from cnm.cluster.join_auth import JoinAuthenticator
from cnm.cluster.runtime import ClusterRuntime
from cnm.errors import BootstrapFailure, InsufficientPermissions, NoCluster, Unauthorized
from cnm.node.data_dir import DataDir
from cnm.security import cert_facts, join_proof, signing


def join_router(context: ApiContext) -> ApiRouter:
    router = ApiRouter(include_in_schema=False)

    proofs = JoinAuthenticator()

    def served_binding() -> bytes:
        """tls-server-end-point of the certificate this node's HTTPS serves in a cluster."""
        cert = DataDir(context.config.data_dir).cluster_tls.cert_file.read_bytes()
        return join_proof.tls_server_end_point(cert_facts.certificate_der(cert))

    async def admin(request: Request) -> None:
        token = request.headers.get(JOIN_TOKEN_HEADER)
        if token is not None:
            runtime = await in_cluster()
            if proofs.admitted(runtime.snapshot, token) is None:
                raise Unauthorized("the join token is unknown or expired; prove the password again")
            return
        _, user = await context.require_cluster(request)
        if user.role not in CLUSTER_ADMINS:
            raise InsufficientPermissions(
                f"user {user.email!r} is not an admin; joining a node needs an admin's credentials"
            )

    async def in_cluster() -> ClusterRuntime:
        """The runtime, for the routes whose authentication is the proof itself."""
        runtime = await context.runtime_after_resume()
        if runtime is None:
            raise NoCluster("this node is not part of a cluster: it cannot admit nodes")
        runtime.snapshot.require_fresh()
        return runtime

    @router.post("/v1/join/auth/start")
    async def auth_start(request: Request) -> Response:
        runtime = await in_cluster()
        asked = parse_auth_start(await read_body(request))
        return compact(proofs.start(runtime.snapshot, asked).to_wire())

    @router.post("/v1/join/auth/finish")
    async def auth_finish(request: Request) -> Response:
        runtime = await in_cluster()
        asked = parse_auth_finish(await read_body(request))
        try:
            proof = proofs.finish(runtime.snapshot, asked, served_binding())
        except BootstrapFailure as failure:
            return join_refusal_response(failure)
        return compact(proof.to_wire())

    @router.post("/v1/join/renew")
    async def renew(request: Request) -> Response:
        # Authenticated by the node's current certificate (cluster/membership.py).
        runtime = await in_cluster()
        asked = parse_renew_request(await read_body(request))
        return compact((await runtime.admissions.renew(asked)).to_wire())

    @router.get("/v1/join/ca")
    async def ca(request: Request) -> Response:
        runtime = await context.runtime_after_resume()
        if runtime is not None and not runtime.snapshot.loaded:
            # Back in the cluster but not read it yet (a store without quorum): not "no cluster".
            runtime.snapshot.require_fresh()
        record = runtime.snapshot.ca() if runtime else None
        if record is None:
            raise NoCluster("this node is not part of a cluster: it cannot admit nodes")
        # A join's first request: the signer (security/signing.py) starts now and is ready
        # by the time the admission that needs it comes, after the password proof.
        signing.warm()
        cert = record.cert_pem
        answer = CaAnswer(ca_pem=cert, ca_fingerprint=cert_facts.fingerprint_sha256(cert.encode()))
        return compact(answer.to_wire())

    @router.post("/v1/join/time")
    async def clock(request: Request) -> Response:
        received = time.time()
        await admin(request)
        asked = parse_time_request(await read_body(request))
        return compact(TimeReply(t1=asked.t1, t2=received, t3=time.time()).to_wire())

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
            return join_refusal_response(failure)
        context.metrics.admission(join_request.addr, None, uid=grant.uid)
        return compact(grant.to_wire())

    return router
