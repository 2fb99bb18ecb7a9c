"""ApiContext: what the routes need from the agent, passed to the app factory (no globals)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

from starlette.requests import Request
from starlette.types import Scope

from cnm.api.auth import Authenticator, SignInAttempt, parse_basic
from cnm.api.client_watch import watch_of
from cnm.bootstrap.manager import BootstrapManager
from cnm.bootstrap.status import BootstrapState
from cnm.cluster.join_auth import ensure_join_verifier
from cnm.cluster.quorum import LocalUsers
from cnm.cluster.records import UserRecord
from cnm.cluster.runtime import ClusterRuntime
from cnm.config import NodeConfig
from cnm.errors import NoCluster, PayloadTooLarge, StoreUnavailable
from cnm.json_body import MAX_BODY_BYTES
from cnm.ops.metrics import AgentMetrics

log = logging.getLogger(__name__)


# Seconds a request waits for the agent to bring its cluster back at start before it is
# answered 503 `store_unavailable` (`ApiContext.runtime_after_resume`): a resume with a
# quorum takes a second or two; this stays under common client timeouts (httpx's 5 s).
RESUME_WAIT = 3.0


@dataclass
class ApiContext:
    config: NodeConfig
    manager: BootstrapManager
    authenticator: Authenticator
    # This agent's Prometheus registry and instruments (cnm.ops): one per app, never global.
    metrics: AgentMetrics = field(default_factory=AgentMetrics)
    # Users whose join verifier is being made, and those tasks (kept referenced).
    _upgrading: set[int] = field(default_factory=set)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def authenticate_if_bootstrapped(self, request: Request) -> UserRecord | None:
        """Before the node is in a cluster anything goes; after, valid credentials only."""
        runtime = self.manager.runtime
        if runtime is None:
            runtime = await self.runtime_after_resume()
        if runtime is None:
            if self.manager.status.state is BootstrapState.COMPLETED:
                raise StoreUnavailable(
                    "this node belongs to a cluster but could not bring its cluster store back "
                    "at start; see the agent's log, fix the cause and restart the agent"
                )
            return None
        return await self._authenticate(request, runtime)

    async def runtime_after_resume(self) -> ClusterRuntime | None:
        """The cluster runtime, or None. While the agent brings its cluster back at start (it
        listens before its store member and snapshot are up, daemon.py), a request waits for
        that, up to RESUME_WAIT seconds, rather than being refused: a client that saw this
        node `completed` and goes on to the cluster routes gets its answer, a little late.
        503 only when the resume takes longer (a store without quorum)."""
        if self.manager.runtime is None and self.manager.resuming is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(RESUME_WAIT):
                    await self.manager.resumed.wait()
            if self.manager.runtime is None and self.manager.resuming is not None:
                raise StoreUnavailable(
                    "this node is starting: it is bringing its cluster store member back and "
                    "reading the cluster; retry in a few seconds"
                )
        return self.manager.runtime

    async def authenticate_for_status(self, request: Request) -> UserRecord | None:
        """For the node's own GET /v1/bootstrap: like `authenticate_if_bootstrapped`, but while
        the store does not serve, checked against the last users this node knew (its data
        dir's copy of their verifiers), so an operator can still see the node's state."""
        runtime = self.manager.runtime
        if runtime is not None and runtime.snapshot.loaded:  # a node in a serving cluster
            return await self._user_of(request, runtime)
        store_down = (
            runtime is None and self.manager.status.state is BootstrapState.COMPLETED
        ) or (runtime is not None and not runtime.snapshot.loaded)
        known = LocalUsers.load(self.config.data_dir) if store_down else None
        if known is None:
            return await self.authenticate_if_bootstrapped(request)
        username, password = parse_basic(request.headers.get("authorization"))
        return await self.authenticator.authenticate_password(username, password, known)

    async def _unavailable(self, runtime: ClusterRuntime, cause: StoreUnavailable) -> Exception:
        return await runtime.quorum.store_unavailable(runtime.snapshot, runtime.local, cause)

    async def _authenticate(self, request: Request, runtime: ClusterRuntime) -> UserRecord:
        if not runtime.snapshot.loaded:
            # Without the users there is nothing to check credentials against; a 401 would
            # wrongly tell the client its password is bad.
            raise await self._unavailable(
                runtime,
                StoreUnavailable(
                    "this node has not read the cluster store yet (its store members are "
                    "still starting); retry in a few seconds"
                ),
            )
        return await self._user_of(request, runtime)

    async def _user_of(self, request: Request, runtime: ClusterRuntime) -> UserRecord:
        """The user of the request's credentials, once the snapshot has the users."""
        header = authorization_of(request.scope)
        snapshot = runtime.snapshot
        user = self.authenticator.recognise(header, snapshot, client_of(request.scope))
        if user is None:
            attempt = sign_in_attempt(request, runtime)
            user = await self.authenticator.password_sign_in(header, snapshot, attempt)
        if user.join_verifier is None:
            self._make_join_verifier(runtime, user, header)
        return user

    def _make_join_verifier(
        self, runtime: ClusterRuntime, user: UserRecord, header: str | None
    ) -> None:
        """A user made before join verifiers existed gets one at its first Basic sign-in (the
        only moment a node holds its password), in the background."""
        if not (header or "").strip().lower().startswith("basic ") or user.uid in self._upgrading:
            return
        _, password = parse_basic(header)
        self._upgrading.add(user.uid)

        async def upgrade() -> None:
            try:
                await ensure_join_verifier(runtime.store, user, password)
            except Exception:  # the next sign-in tries again
                log.warning("could not make the join verifier of user %d", user.uid, exc_info=True)
            finally:
                self._upgrading.discard(user.uid)

        task = asyncio.get_running_loop().create_task(upgrade())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def require_cluster(self, request: Request) -> tuple[ClusterRuntime, UserRecord]:
        """For the cluster routes: 503 `no_cluster` before bootstrap, else the user."""
        runtime = await self.runtime_after_resume()
        if runtime is None:
            raise NoCluster(
                "this node is not part of a cluster yet: create one with POST "
                "/v1/bootstrap/create_cluster or join one with POST /v1/bootstrap/join_cluster"
            )
        return runtime, await self._authenticate(request, runtime)

    async def require_fresh_cluster(self, request: Request) -> tuple[ClusterRuntime, UserRecord]:
        """`require_cluster`, then 503 `store_unavailable` when the snapshot lost the store."""
        runtime, user = await self.require_cluster(request)
        try:
            runtime.snapshot.require_fresh()
        except StoreUnavailable as stale:
            raise await self._unavailable(runtime, stale) from None
        return runtime, user


def sign_in_attempt(request: Request, runtime: ClusterRuntime) -> SignInAttempt:
    """Where this request's sign-in comes from (`client_of`), the store to count its failures
    in, and how to tell that its client has gone."""
    watch = watch_of(request.scope)
    return SignInAttempt(
        client=client_of(request.scope),
        store=runtime.store,
        gone=watch.gone if watch is not None else None,
    )


def client_of(scope: Scope) -> str | None:
    """The peer address of the request's connection. No forwarding header is trusted: anyone
    could send one."""
    client = scope.get("client")
    return str(client[0]) if client else None


def authorization_of(scope: Scope) -> str | None:
    """The request's `Authorization` header, read straight from the ASGI scope (the server
    gives header names in lower case), as Starlette's `request.headers` would give it without
    making that object for the one header every authenticated request reads."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            return str(value.decode("latin-1"))
    return None


async def read_body(request: Request) -> bytes:
    """The request body, refusing more than the limit without reading it all into memory."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise PayloadTooLarge(
            f"request body larger than {MAX_BODY_BYTES} bytes", limit=MAX_BODY_BYTES
        )
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise PayloadTooLarge(
                f"request body larger than {MAX_BODY_BYTES} bytes", limit=MAX_BODY_BYTES
            )
        chunks.append(chunk)
    return b"".join(chunks)
