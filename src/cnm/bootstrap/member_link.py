"""The joiner's connection to a member of the cluster it joins.

Trust comes first: the joiner fetches the cluster CA from the member without verification (the
CA certificate is public; exactly one is accepted), checks its SHA-256 fingerprint against
`cluster.ca_fingerprint` when the request pins one, and from then on talks to the member only
over TLS verified against exactly that CA. Then the password proof (`prove`,
security/join_proof.py): the joiner proves it knows the admin password and the member proves
the cluster knows it, bound to the member's TLS certificate; the password never crosses the
wire, and an unpinned CA is trusted only once the member has proven itself. The time and node
requests then carry the member's admission token instead of credentials. Every failure to
reach a member is described per address (refused, timeout, name not resolved, TLS), so
`connect_error` tells the operator what to fix.

The messages are the types of cluster/handshake.py. The HTTP transport comes from a
`TransportFactory` (the network by default), so a test can join through an in-process ASGI app.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import httpx
from pydantic import ValidationError

from cnm.cluster.handshake import (
    JOIN_TOKEN_HEADER,
    AuthChallenge,
    AuthFinish,
    AuthProof,
    AuthStart,
    CaAnswer,
    JoinGrant,
    JoinRefusal,
    JoinRequest,
    TimeReply,
    TimeRequest,
    WireMessage,
)
from cnm.config import url_host
from cnm.errors import AccessDenied, BootstrapFailure, ConnectError
from cnm.security import join_proof, tls_trust
from cnm.security.cert_facts import normalize_fingerprint

PROBE_TIMEOUT = 3.0
REQUEST_TIMEOUT = 10.0
CLOCK_SAMPLES = 4

_M = TypeVar("_M", bound=WireMessage)
# (TLS context to verify the member with, local address to send from) -> an httpx transport.
TransportFactory = Callable[[ssl.SSLContext, str | None], httpx.AsyncBaseTransport]


# The DER certificate the member presented on the connection a response came over.
PeerCertificate = Callable[[httpx.Response], bytes | None]


def tls_peer_certificate(response: httpx.Response) -> bytes | None:
    stream = response.extensions.get("network_stream")
    ssl_object = stream.get_extra_info("ssl_object") if stream is not None else None
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    return bytes(der) if der else None


def network_transport(
    verify: ssl.SSLContext, local_address: str | None
) -> httpx.AsyncBaseTransport:
    return httpx.AsyncHTTPTransport(verify=verify, local_address=local_address)


def split_host_port(entry: str, default_port: int) -> tuple[str, int]:
    """`host`, `host:port`, `v4:port`, `[v6]:port` or a bare IPv6 address."""
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else default_port
    if entry.count(":") == 1:
        host, _, port = entry.partition(":")
        return host, int(port)
    return entry, default_port


def _url(host: str, port: int) -> str:
    return f"https://{url_host(host)}:{port}"


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception and its causes: httpx wraps the OSError that says what happened."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def describe_failure(exc: BaseException, timeout: float) -> str:
    chain = _chain(exc)
    if any(isinstance(e, httpx.TimeoutException | TimeoutError) for e in chain):
        return f"no answer within {timeout:.0f} s (timeout)"
    if any(isinstance(e, ConnectionRefusedError) for e in chain):
        return "connection refused (is the cnm agent running there?)"
    if any(isinstance(e, ssl.SSLError) for e in chain):
        reason = next(str(e) for e in chain if isinstance(e, ssl.SSLError))
        return f"TLS handshake failed: {reason}"
    text = " / ".join(str(e) for e in chain if str(e)) or type(exc).__name__
    lowered = text.lower()
    if "refused" in lowered:
        return "connection refused (is the cnm agent running there?)"
    if "name or service not known" in lowered or "nodename nor servname" in lowered:
        return "the name does not resolve (DNS)"
    if "temporary failure in name resolution" in lowered:
        return "the name does not resolve (DNS temporarily failing)"
    if "ssl" in lowered or "certificate" in lowered or "handshake" in lowered:
        return f"TLS handshake failed: {text}"
    if "unreachable" in lowered:
        return "network unreachable"
    return text


@dataclass
class MemberLink:
    url: str
    ca_pem: bytes
    fingerprint: str
    client: httpx.AsyncClient
    peer_certificate: PeerCertificate = tls_peer_certificate
    # The member's admission token once the password proof succeeded (`prove`).
    token: str | None = None

    async def close(self) -> None:
        await self.client.aclose()

    async def call(
        self, path: str, message: WireMessage, auth: tuple[str, str] | None
    ) -> httpx.Response:
        """POST `message`: with the admission token once there is one, else Basic `auth`
        (only on a link whose CA was pinned: see `prove`)."""
        try:
            headers = {JOIN_TOKEN_HEADER: self.token} if self.token is not None else {}
            basic = auth if auth is not None and self.token is None else httpx.USE_CLIENT_DEFAULT
            response = await self.client.post(
                self.url + path, json=message.to_wire(), headers=headers, auth=basic
            )
        except httpx.HTTPError as exc:
            raise ConnectError(
                f"lost the connection to {self.url} during the join: "
                f"{describe_failure(exc, REQUEST_TIMEOUT)}; retry the join"
            ) from None
        if response.status_code in (401, 403):
            try:
                # The API's error body; its description says why (not an admin, bad password).
                reason = JoinRefusal.model_validate_json(response.content).description
            except ValidationError:
                reason = ""
            user = auth[0] if auth else "given"
            raise AccessDenied(
                f"the cluster at {self.url} rejected the credentials for user {user!r}"
                + (f": {reason}" if reason else "")
                + "; give the username and password of a cluster admin"
            )
        return response

    async def prove(self, username: str, password: str, *, pinned: bool) -> bool:
        """The password proof; True when it succeeded (the link then carries a token), False
        when the member predates it and the CA is pinned (the link then uses Basic, safe only
        because TLS is verified against the pinned CA). Raises `AccessDenied` for a wrong
        password and `ConnectError` when the member fails to prove itself."""
        client_nonce = join_proof.new_nonce()
        start = AuthStart(username=username, client_nonce=client_nonce)
        response = await self.call("/v1/join/auth/start", start, None)
        if response.status_code in (404, 405):
            if pinned:
                return False
            raise ConnectError(
                f"{self.url} does not offer the join's password proof (a cnm older than this "
                "node?); without it this node sends no credentials to an unpinned member: pin "
                "the cluster CA with cluster.ca_fingerprint to join it"
            )
        challenge = self._answer(response, AuthChallenge, "the password proof")
        peer = self.peer_certificate(response)
        if peer is None:
            raise ConnectError(f"{self.url}: no TLS certificate to bind the password proof to")
        binding = join_proof.tls_server_end_point(peer)
        params = (challenge.time_cost, challenge.memory_cost, challenge.parallelism)
        if (
            params[0] > join_proof.MAX_TIME_COST
            or params[1] > join_proof.MAX_MEMORY_COST
            or params[2] > 8
        ):
            raise ConnectError(f"{self.url} asked for argon2 parameters {params}, beyond limits")
        salt = _b64(challenge.salt, self.url)
        salted = await asyncio.to_thread(
            join_proof.salted_password,
            password,
            salt,
            time_cost=params[0],
            memory_cost=params[1],
            parallelism=params[2],
        )
        keys = join_proof.keys_of(salted)
        message = join_proof.auth_message(
            username=username,
            client_nonce=client_nonce,
            server_nonce=challenge.server_nonce,
            salt=salt,
            time_cost=params[0],
            memory_cost=params[1],
            parallelism=params[2],
            binding=binding,
        )
        finish = AuthFinish(
            session=challenge.session,
            channel_binding=base64.b64encode(binding).decode(),
            client_proof=base64.b64encode(join_proof.client_proof(keys, message)).decode(),
        )
        response = await self.call("/v1/join/auth/finish", finish, None)
        if response.status_code != 200:
            raise failure_from_answer(response)
        proof = self._answer(response, AuthProof, "the password proof")
        signature = _b64(proof.server_signature, self.url)
        if not join_proof.check_server_signature(keys.server_key, message, signature):
            raise ConnectError(
                f"{self.url} failed to prove that it knows the password of {username!r} "
                "(wrong ServerSignature): it is not a member of the cluster this node was "
                "told to join, or something impersonates it; nothing was sent to it"
            )
        self.token = proof.token
        return True

    async def measure_clock(self, auth: tuple[str, str]) -> tuple[float, float]:
        """(offset_ms, uncertainty_ms) of this machine's clock against the member's (positive:
        this machine is ahead), from the
        round trip with the least delay (the one least distorted by queueing)."""
        best: tuple[float, float] | None = None
        for _ in range(CLOCK_SAMPLES):
            t1 = time.time()
            response = await self.call("/v1/join/time", TimeRequest(t1=t1), auth)
            t4 = time.time()
            answer = self._answer(response, TimeReply, "the clock exchange")
            t2, t3 = answer.t2, answer.t3
            offset = ((t2 - t1) + (t3 - t4)) / 2
            delay = max((t4 - t1) - (t3 - t2), 0.0)
            if best is None or delay < best[1]:
                best = (offset, delay)
        assert best is not None
        offset, delay = best
        # NTP's offset is the member's clock minus ours; operators read "this node is N ms
        # ahead", so report ours minus the member's.
        return -offset * 1000, delay * 1000 / 2

    async def admit(self, request: JoinRequest, auth: tuple[str, str]) -> JoinGrant:
        """Ask for admission; the member's refusal is raised as the same bootstrap failure."""
        response = await self.call("/v1/join/node", request, auth)
        if response.status_code != 200:
            raise failure_from_answer(response)
        grant = self._answer(response, JoinGrant, "the admission")
        self.check_grant(grant)
        return grant

    def check_grant(self, grant: JoinGrant) -> None:
        """The grant's CA must be the very CA this link trusts (the pinned or proven one), and
        it must carry the node's key (the request sent no CSR). That the certificate comes
        from the CA is checked once it is on disk (`check_issued`)."""
        try:
            _, offered = tls_trust.sole_ca_certificate(grant.ca_pem.encode())
        except ValueError as exc:
            raise ConnectError(f"{self.url} granted admission with an unusable CA: {exc}") from None
        if offered != self.fingerprint:
            raise ConnectError(
                f"{self.url} granted admission with a CA of fingerprint {offered}, not the "
                f"cluster CA {self.fingerprint} this node trusts; refusing it",
                ca_fingerprint=self.fingerprint,
            )
        if not grant.key_pem:
            raise ConnectError(
                f"{self.url} granted admission without the node certificate's key; is it a cnm "
                "older than this node? join through a node of the same version"
            )

    def check_issued(self, cert_file: Path, key_file: Path) -> None:
        """The node certificate (and its key) the member granted chain to the trusted CA."""
        if not tls_trust.issued_by(cert_file, key_file, self.ca_pem):
            raise ConnectError(
                f"{self.url} granted a node certificate that the cluster CA did not issue "
                "(or a key that is not the certificate's)"
            )

    def _answer(self, response: httpx.Response, kind: type[_M], what: str) -> _M:
        if response.status_code == 503:
            # The member lost its store for now (a leader election): retryable, say why.
            raise failure_from_answer(response)
        if response.status_code != 200:
            raise ConnectError(f"{self.url} answered {what} with HTTP {response.status_code}")
        try:
            return kind.model_validate_json(response.content)
        except ValidationError:
            raise ConnectError(
                f"{self.url} answered {what} with something this version cannot read; is it a "
                "cnm node?"
            ) from None


def _b64(text: str, url: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ConnectError(f"{url} answered the password proof with bad base64") from None


async def _probe(
    host: str, port: int, local_address: str | None, transport_factory: TransportFactory
) -> tuple[str, bytes, str] | str:
    """(url, ca_pem, fingerprint) of a member, or why it could not be reached."""
    url = _url(host, port)
    # Verifies nothing, so it needs no system trust store (loading one costs ~25 ms of CPU).
    unverified = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    unverified.check_hostname = False
    unverified.verify_mode = ssl.CERT_NONE
    transport = transport_factory(unverified, local_address)
    async with httpx.AsyncClient(transport=transport, timeout=PROBE_TIMEOUT) as client:
        try:
            response = await client.get(url + "/v1/join/ca")
        except httpx.HTTPError as exc:
            return f"{host}:{port}: {describe_failure(exc, PROBE_TIMEOUT)}"
    if response.status_code == 503:
        return f"{host}:{port}: the node there is not part of a cluster (or its store is down)"
    if response.status_code != 200:
        return f"{host}:{port}: answered HTTP {response.status_code}; is it a cnm node?"
    try:
        offered = CaAnswer.model_validate_json(response.content).ca_pem.encode()
    except ValidationError:
        return f"{host}:{port}: answered something that is not a cluster CA"
    try:
        # Exactly one CA certificate, re-encoded: what is fingerprinted is all that is trusted.
        # Our own fingerprint of what we received, never the one the member claims.
        ca_pem, fingerprint = tls_trust.sole_ca_certificate(offered)
    except ValueError as exc:
        return f"{host}:{port}: answered a cluster CA this node refuses ({exc})"
    return url, ca_pem, fingerprint


async def connect(
    nodes: list[str],
    *,
    default_port: int,
    pinned_fingerprint: str | None,
    local_address: str | None,
    attempts: int,
    retry_time: float,
    transport_factory: TransportFactory = network_transport,
    peer_certificate: PeerCertificate = tls_peer_certificate,
) -> MemberLink:
    """Reach the first member that answers, trying all listed addresses at once, `attempts`
    times `retry_time` seconds apart. A pinned fingerprint that does not match fails at once."""
    targets = [split_host_port(entry, default_port) for entry in nodes]
    failures: list[str] = []
    for attempt in range(max(attempts, 1)):
        if attempt:
            await asyncio.sleep(retry_time)
        results = await asyncio.gather(
            *(_probe(h, p, local_address, transport_factory) for h, p in targets)
        )
        failures = [r for r in results if isinstance(r, str)]
        reached = [r for r in results if not isinstance(r, str)]
        if not reached:
            continue
        url, ca_pem, fingerprint = reached[0]
        expected = normalize_fingerprint(pinned_fingerprint) if pinned_fingerprint else None
        if expected is not None and expected != fingerprint:
            raise ConnectError(
                f"fingerprint mismatch: the cluster CA at {url} has SHA-256 fingerprint "
                f"{fingerprint}, not the expected {expected};"
                " check cluster.ca_fingerprint (GET /v1/cluster shows it) or the addresses",
                ca_fingerprint=fingerprint,
            )
        verified = ssl.create_default_context(cadata=ca_pem.decode())
        # Any node of the cluster may answer on the address: the chain to the pinned CA is
        # what proves it, not the name in its certificate.
        verified.check_hostname = False
        transport = transport_factory(verified, local_address)
        client = httpx.AsyncClient(transport=transport, timeout=REQUEST_TIMEOUT)
        return MemberLink(
            url=url,
            ca_pem=ca_pem,
            fingerprint=fingerprint,
            client=client,
            peer_certificate=peer_certificate,
        )
    listed = "; ".join(failures)
    raise ConnectError(
        f"could not reach any node of the cluster after {max(attempts, 1)} attempt(s): {listed}",
        failures=failures,
    )


class MemberUnavailable(ConnectError):
    """The member answered 503: it cannot admit nodes right now (its store is electing a
    leader, or its certificate signer failed). The same request may succeed a moment later."""


def failure_from_answer(response: httpx.Response) -> BootstrapFailure:
    """The member's refusal as the same bootstrap failure (code, message, details)."""
    try:
        refusal = JoinRefusal.model_validate_json(response.content)
    except ValidationError:
        return ConnectError(f"the member answered HTTP {response.status_code} without details")
    if response.status_code == 503:
        failure = refusal.to_failure()
        return MemberUnavailable(f"the member cannot admit nodes right now: {failure.message}")
    return refusal.to_failure()
