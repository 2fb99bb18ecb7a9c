"""The etcd backend of the `Store` contract, spoken over etcd's v3 JSON gateway with httpx.

Why the gateway and not gRPC: it is part of every etcd since 3.3 with the same paths in 3.4, 3.5
and 3.6, it needs no generated code, and httpx gives us mutual TLS, timeouts and connection reuse.
Answers are checked by the `error`/`code` fields of the body, never by the HTTP status alone,
because versions differ in the status they send. The gateway's JSON omits false and zero fields
(`succeeded`, `version`, `type: PUT`), and sends 64-bit integers as strings.

Every call has a timeout; transport failures become `StoreUnavailable` and the next endpoint is
tried, so a client keeps working while any listed member is reachable.

Two calls do not go through httpx: lease keep-alives ride etcd's gRPC stream when `grpc_tls` is
given (store/lease_stream.py), and watches are read on a connection of their own
(store/watch_stream.py), because every node pays a watch message's cost at every change.

With etcd authentication on (store/etcd_auth.py), each call carries a token of this node's own
etcd user, got lazily per endpoint (a simple token is a member's: another member may not know
it) and got again once when etcd calls it invalid (expired after 300 s idle, or auth switched on
since). Member changes and user administration (store/etcd_access.py) run in a `root`
session instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import httpx

from cnm.errors import LeaseNotFound, StoreAccessRefused, StoreError, StoreUnavailable
from cnm.store import etcd_auth
from cnm.store.base import (
    Compare,
    EventType,
    KeyValue,
    LeaseRenewal,
    Member,
    Op,
    Store,
    TxnResult,
    WatchEvent,
)
from cnm.store.etcd_access import EtcdAccessControl
from cnm.store.etcd_auth import StoreCredentials
from cnm.store.etcd_wire import (
    AUTH_RACE_RETRIES,
    LEASE_NOT_FOUND,
    MEMBER_NOT_FOUND,
    NOT_IN_SYNC,
    UNAVAILABLE_CODES,
    b64,
    compare_body,
    kv_from,
    member_from,
    membership_refusal,
    op_body,
    range_body,
)
from cnm.store.lease_stream import StreamedKeepAlives
from cnm.store.watch_stream import WatchStreamError, watch_messages

log = logging.getLogger(__name__)


# Seconds an idle connection to a member is kept for the next call. httpx's default (5 s) closed
# it between an idle agent's calls (its store probe every 30 s, its clock heartbeat every
# max(10, N) s), so each of them was a new mutual-TLS handshake for the agent and for etcd,
# which keeps idle client connections open; the idle leader's CPU profile showed handshakes as
# a fifth to a third of its time (docs/architecture.md, "The leader's floor"). A connection the
# member closed meanwhile is seen closed and replaced before use.
KEEP_IDLE_CONNECTIONS = 120.0


class EtcdStore(EtcdAccessControl, Store):
    """A client of an etcd cluster. `endpoints` are client URLs (`https://10.0.0.1:2379`)."""

    def __init__(
        self,
        endpoints: Sequence[str],
        *,
        tls: ssl.SSLContext | None,
        timeout: float = 5.0,
        credentials: Callable[[], StoreCredentials | None] | None = None,
        admin_key: str | None = None,
        grpc_tls: ssl.SSLContext | None = None,
    ) -> None:
        """`credentials` gives this node's etcd user (read when a token is needed; None: no
        auth). `admin_key` is the store key holding the `root` password, for member changes
        and user administration. With `grpc_tls` (store/lease_stream.py `grpc_tls`), lease
        keep-alives go over etcd's gRPC stream instead of the gateway."""
        if not endpoints:
            raise ValueError("EtcdStore needs at least one endpoint")
        self._endpoints = list(endpoints)
        self._timeout = timeout
        self._tls = tls
        self._http = httpx.AsyncClient(
            verify=tls if tls is not None else True,
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(
                max_connections=32,
                max_keepalive_connections=8,
                keepalive_expiry=KEEP_IDLE_CONNECTIONS,
            ),
        )
        self._credentials = credentials
        self._node: StoreCredentials | None = None
        self._admin_key = admin_key
        self._admin_password: str | None = None
        # (endpoint, user) -> token; "" where that member said auth is off (send none).
        self._tokens: dict[tuple[str, str], str] = {}
        self._grpc_tls = grpc_tls
        self._keepalives = StreamedKeepAlives(grpc_tls, timeout) if grpc_tls else None
        # The leader's client URL while a learner waits to be promoted (`member_promote`).
        self._promote_at: str | None = None
        # Endpoint -> how many watches stream from it now (`watch_misplaced`).
        self._watching: Counter[str] = Counter()

    @property
    def endpoints(self) -> list[str]:
        return list(self._endpoints)

    def reload_certificate(self, cert_file: Path, key_file: Path) -> None:
        """Present this certificate on new connections from now on (a renewal); connections
        open now keep theirs until they close."""
        for context in (self._tls, self._grpc_tls):
            if context is not None:
                context.load_cert_chain(str(cert_file), str(key_file))

    def set_endpoints(self, endpoints: Sequence[str]) -> None:
        """Replace the endpoints (the member list changed); the order sets preference."""
        if endpoints:
            self._endpoints = list(endpoints)

    async def _call(
        self,
        path: str,
        body: dict[str, Any],
        *,
        timeout: float | None = None,
        admin: bool = False,
    ) -> Any:
        failures: list[str] = []
        credentials = await self._admin_credentials() if admin else self._node_credentials()
        for index, endpoint in enumerate(list(self._endpoints)):
            try:
                answer = await self._authorized(
                    endpoint, path, body, timeout or self._timeout, credentials
                )
            except httpx.TransportError as exc:
                failures.append(f"{endpoint}: {type(exc).__name__} {exc}".strip())
                continue
            if index:
                # Prefer the endpoint that answered next time.
                self._endpoints.insert(0, self._endpoints.pop(index))
            return answer
        raise StoreUnavailable(
            "cluster store unreachable: " + "; ".join(failures), endpoints=self._endpoints
        )

    async def _authorized(
        self,
        endpoint: str,
        path: str,
        body: dict[str, Any],
        timeout: float,
        credentials: StoreCredentials | None,
    ) -> Any:
        """One call at one endpoint, with a token of `credentials` when etcd wants one."""
        fresh = renewed = False
        for attempt in range(AUTH_RACE_RETRIES + 1):
            headers = await self._auth_headers(endpoint, credentials, timeout, fresh=fresh)
            fresh = False
            response = await self._http.post(
                endpoint + path, json=body, timeout=timeout, headers=headers
            )
            try:
                return self._decode(endpoint, path, response)
            except StoreError as exc:
                if credentials is None or attempt == AUTH_RACE_RETRIES:
                    raise
                if etcd_auth.auth_changed_meanwhile(exc):
                    # Refused before it was applied: the same call again is safe.
                    await asyncio.sleep(0.005 * (attempt + 1))
                    continue
                if renewed or not etcd_auth.token_refused(exc):
                    raise
                fresh = renewed = True
        raise AssertionError("unreachable")  # pragma: no cover

    async def _auth_headers(
        self,
        endpoint: str,
        credentials: StoreCredentials | None,
        timeout: float,
        *,
        fresh: bool = False,
    ) -> dict[str, str] | None:
        if credentials is None:
            return None
        slot = (endpoint, credentials.user)
        token = None if fresh else self._tokens.get(slot)
        if token is None:
            token = await self._authenticate(endpoint, credentials, timeout)
            self._tokens[slot] = token
        return {"Authorization": token} if token else None

    async def _authenticate(
        self, endpoint: str, credentials: StoreCredentials, timeout: float
    ) -> str:
        """A token of `credentials` from the member at `endpoint`; "" when its auth is off."""
        path = "/v3/auth/authenticate"
        body = {"name": credentials.user, "password": credentials.password}
        response = await self._http.post(endpoint + path, json=body, timeout=timeout)
        try:
            answer = self._decode(endpoint, path, response)
        except StoreUnavailable:
            raise
        except StoreError as exc:
            lowered = exc.message.lower()
            if etcd_auth.AUTH_NOT_ENABLED in lowered:
                return ""
            if etcd_auth.AUTH_FAILED in lowered:
                if credentials.user == etcd_auth.ROOT_USER:
                    self._admin_password = None  # read it again next time
                    raise StoreError(
                        f"etcd at {endpoint} refused the store administrator's password kept "
                        "in the store; retry (a recovered store has a new one)"
                    ) from None
                raise StoreAccessRefused(
                    f"etcd at {endpoint} refused the credentials of store user "
                    f"{credentials.user!r}: it was removed from the store (its node removed "
                    "or replaced)"
                ) from None
            raise
        return str(answer.get("token") or "")

    def _node_credentials(self) -> StoreCredentials | None:
        # Read once they exist (a file read per call would cost every call); until then, asked
        # at each call, since create and join write them while the client is open.
        if self._node is None and self._credentials is not None:
            self._node = self._credentials()
        return self._node

    async def _admin_credentials(self) -> StoreCredentials | None:
        """The `root` session's credentials: its password read (as this node) from the store;
        this node's own when there is none (a store without auth)."""
        if self._admin_password is None and self._admin_key is not None:
            found = await self.get(self._admin_key)
            if found is not None:
                self._admin_password = etcd_auth.admin_password(found.value)
        if self._admin_password is None:
            return self._node_credentials()
        return StoreCredentials(etcd_auth.ROOT_USER, self._admin_password)

    @staticmethod
    def _decode(endpoint: str, path: str, response: httpx.Response) -> Any:
        try:
            answer = response.json()
        except ValueError as exc:
            raise StoreError(
                f"etcd at {endpoint} answered {path} with HTTP {response.status_code} and a body "
                "that is not JSON"
            ) from exc
        if isinstance(answer, dict) and "error" in answer:
            message = str(answer.get("message") or answer["error"])
            if int(answer.get("code", 0)) in UNAVAILABLE_CODES:
                raise StoreUnavailable(f"etcd at {endpoint}: {message}")
            if LEASE_NOT_FOUND in message:
                raise LeaseNotFound(f"etcd at {endpoint} refused {path}: {message}")
            raise StoreError(f"etcd at {endpoint} refused {path}: {message}")
        return answer

    async def get(self, key: str) -> KeyValue | None:
        answer = await self._call("/v3/kv/range", range_body(key, False))
        kvs = answer.get("kvs") or []
        return kv_from(kvs[0]) if kvs else None

    async def get_prefix(self, prefix: str) -> tuple[list[KeyValue], int]:
        answer = await self._call("/v3/kv/range", range_body(prefix, True))
        revision = int(answer["header"]["revision"])
        return [kv_from(raw) for raw in answer.get("kvs") or []], revision

    async def put(self, key: str, value: bytes, *, lease: int = 0) -> int:
        body: dict[str, Any] = {"key": b64(key), "value": b64(value)}
        if lease:
            body["lease"] = str(lease)
        answer = await self._call("/v3/kv/put", body)
        return int(answer["header"]["revision"])

    async def delete(self, key: str, *, prefix: bool = False) -> int:
        answer = await self._call("/v3/kv/deleterange", range_body(key, prefix))
        return int(answer.get("deleted", 0))

    async def txn(
        self, compares: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op] = ()
    ) -> TxnResult:
        body = {
            "compare": [compare_body(c) for c in compares],
            "success": [op_body(op) for op in success],
            "failure": [op_body(op) for op in failure],
        }
        answer = await self._call("/v3/kv/txn", body)
        reads = [
            [kv_from(raw) for raw in response["response_range"].get("kvs") or []]
            for response in answer.get("responses") or []
            if "response_range" in response
        ]
        return TxnResult(
            succeeded=bool(answer.get("succeeded", False)),
            revision=int(answer["header"]["revision"]),
            reads=reads,
        )

    async def lease_grant(self, ttl_seconds: int) -> int:
        answer = await self._call("/v3/lease/grant", {"TTL": str(ttl_seconds)})
        return int(answer["ID"])

    async def lease_keepalive(self, lease_id: int) -> int:
        # The gateway answers a one-message keep-alive stream with one result and closes it.
        answer = await self._call("/v3/lease/keepalive", {"ID": str(lease_id)})
        result = answer.get("result", answer)
        return int(result.get("TTL", 0))

    async def lease_renew(self, lease_id: int) -> LeaseRenewal:
        if self._keepalives is not None:
            endpoint = self._endpoints[0]
            renewal = await self._keepalives.renew(lease_id, endpoint)
            if renewal is not None:
                return renewal
            if self._keepalives.failed_at == endpoint and self._endpoints[0] == endpoint:
                # It did not answer on its stream (cut off, stopped, overloaded): the gateway
                # asks the other members first instead of waiting out its timeout again,
                # which would leave the snapshot without a freshness proof for seconds more.
                self._endpoints.append(self._endpoints.pop(0))
        answer = await self._call("/v3/lease/keepalive", {"ID": str(lease_id)})
        result = answer.get("result", answer)
        header = result.get("header") or {}
        return LeaseRenewal(
            ttl=int(result.get("TTL", 0)),
            revision=int(header.get("revision", 0)),
            raft_term=int(header.get("raft_term", 0)),
        )

    async def lease_revoke(self, lease_id: int) -> None:
        with contextlib.suppress(LeaseNotFound):  # expired or revoked already: done
            await self._call("/v3/lease/revoke", {"ID": str(lease_id)})

    def watch_misplaced(self) -> bool:
        preferred = self._endpoints[0]
        return any(endpoint != preferred for endpoint in self._watching)

    async def watch_prefix(self, prefix: str, *, start_revision: int) -> AsyncIterator[WatchEvent]:
        request = {
            "create_request": {**range_body(prefix, True), "start_revision": str(start_revision)}
        }
        endpoint = self._endpoints[0]
        self._watching[endpoint] += 1
        try:
            async with contextlib.aclosing(self._watch_at(endpoint, request)) as events:
                async for event in events:
                    yield event
        finally:
            self._watching[endpoint] -= 1
            if not self._watching[endpoint]:
                del self._watching[endpoint]

    async def _watch_at(
        self, endpoint: str, request: dict[str, Any]
    ) -> AsyncGenerator[WatchEvent, None]:
        credentials = self._node_credentials()
        try:
            headers = await self._auth_headers(endpoint, credentials, self._timeout)
            messages = watch_messages(
                endpoint + "/v3/watch",
                request,
                tls=self._tls,
                headers=headers,
                timeout=self._timeout,
            )
            async with contextlib.aclosing(messages):
                async for message in messages:
                    if "error" in message:
                        self._watch_refused(endpoint, credentials, str(message["error"]))
                        raise StoreUnavailable(f"etcd watch at {endpoint}: {message['error']}")
                    result = message.get("result", {})
                    if result.get("canceled"):
                        reason = str(result.get("cancel_reason", "canceled"))
                        self._watch_refused(endpoint, credentials, reason)
                        raise StoreUnavailable(f"etcd watch at {endpoint} ended: {reason}")
                    for raw in result.get("events") or []:
                        kind = EventType(raw.get("type", "PUT"))
                        yield WatchEvent(kind, kv_from(raw["kv"]))
        except (httpx.TransportError, WatchStreamError) as exc:
            raise StoreUnavailable(f"etcd watch at {endpoint} broke: {exc}") from exc
        raise StoreUnavailable(f"etcd watch at {endpoint} closed by the server")

    def _watch_refused(
        self, endpoint: str, credentials: StoreCredentials | None, reason: str
    ) -> None:
        """A watch refused for its token: the caller's next watch gets a new one."""
        if credentials is not None and etcd_auth.token_refused(StoreError(reason)):
            self._tokens.pop((endpoint, credentials.user), None)

    async def member_list(self) -> list[Member]:
        answer = await self._call("/v3/cluster/member/list", {})
        return [member_from(raw) for raw in answer.get("members") or []]

    async def member_add(self, peer_urls: Sequence[str], *, learner: bool) -> list[Member]:
        body: dict[str, Any] = {"peerURLs": list(peer_urls)}
        if learner:
            body["isLearner"] = True
        try:
            answer = await self._call("/v3/cluster/member/add", body, admin=True)
        except StoreError as exc:
            # "unhealthy cluster" comes as gRPC Unavailable, hence StoreUnavailable: a refusal all
            # the same (etcd answered), so it is translated too.
            refusal = membership_refusal(exc)
            if refusal is None:
                raise
            raise refusal from exc
        added = member_from(answer["member"])
        others = [
            member_from(raw) for raw in answer.get("members") or [] if int(raw["ID"]) != added.id
        ]
        return [added, *others]

    async def member_promote(self, member_id: int) -> bool:
        body = {"ID": str(member_id)}
        try:
            # Asked again for every promotion; kept while the leader says "not in sync yet".
            self._promote_at = self._promote_at or await self._leader_client_url()
            if self._promote_at is None:
                await self._call("/v3/cluster/member/promote", body, admin=True)
            else:
                credentials = await self._admin_credentials()
                await self._authorized(
                    self._promote_at, "/v3/cluster/member/promote", body, self._timeout, credentials
                )
        except httpx.TransportError as exc:
            self._promote_at = None
            raise StoreUnavailable(f"cluster store leader unreachable: {exc}") from exc
        except StoreError as exc:
            if NOT_IN_SYNC in exc.message:
                return False
            self._promote_at = None
            refusal = membership_refusal(exc)
            if refusal is None:
                raise
            raise refusal from exc
        self._promote_at = None
        return True

    async def _leader_client_url(self) -> str | None:
        """The leader's client URL, or None when no member names one. Only the leader knows
        whether a learner is in sync: a follower forwards a promotion to it over the peer port,
        and etcd 3.4 with authentication on answers such a forwarded call only after seconds
        (measured 3 s per voter in bench_join's voters part), so promotions go to the leader."""
        leader = await self.leader()
        for member in await self.member_list():
            if str(member.id) == leader and member.client_urls:
                return member.client_urls[0]
        return None

    async def member_remove(self, member_id: int) -> None:
        try:
            await self._call("/v3/cluster/member/remove", {"ID": str(member_id)}, admin=True)
        except StoreError as exc:
            if MEMBER_NOT_FOUND in exc.message:
                return
            refusal = membership_refusal(exc)
            if refusal is None:
                raise
            raise refusal from exc

    async def leader(self) -> str:
        answer = await self._call("/v3/maintenance/status", {})
        return str(answer.get("leader") or "")

    async def status(self, endpoint: str) -> dict[str, Any]:
        """etcd's maintenance status of one endpoint (leader, raft index): for readiness checks."""
        response = await self._http.post(endpoint + "/v3/maintenance/status", json={})
        return dict(self._decode(endpoint, "/v3/maintenance/status", response))

    async def close(self) -> None:
        if self._keepalives is not None:
            await self._keepalives.close()
        await self._http.aclose()
