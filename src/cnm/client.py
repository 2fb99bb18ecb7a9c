"""A typed client of cnm's own REST API, for the CLI, the tests and the benchmarks.

`CnmClient` is synchronous (the CLI); `AsyncCnmClient` offers the bootstrap calls for asyncio
callers (benchmarks driving many nodes at once). What they raise, and how an answer or a
transport failure becomes that, is `cnm.client_errors`: callers never see an httpx exception or
a raw status code. This module owns the calls: paths, bodies, auth and TLS settings.

`wait_bootstrap` polls GET /v1/bootstrap until `completed` or `error` against a deadline; the
poll interval is its only sleep.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable, Generator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx

from cnm.client_errors import Unreachable, WaitTimeout, bootstrap_failure, decode, reaching

DEFAULT_URL = "https://127.0.0.1:9443"
FINAL_STATES = ("completed", "error")
BOOTSTRAP_ACTIONS = ("create_cluster", "join_cluster", "recover_cluster")
_HEADERS = {"User-Agent": "cnm-client"}

StatusCallback = Callable[[dict[str, Any]], None]


def tls_verify(
    *, ca_file: str | Path | None = None, insecure: bool = False
) -> ssl.SSLContext | bool:
    """What httpx's `verify` gets: the cluster CA, nothing (insecure), or the system's CAs. An
    SSLContext rather than a path: httpx deprecates string paths."""
    if insecure:
        return False
    if ca_file is not None:
        return ssl.create_default_context(cafile=str(ca_file))
    return True


class JwtAuth(httpx.Auth):
    """`Authorization: JWT <token>`: the word JWT, not Bearer (docs/api-contract.md §1)."""

    def __init__(self, token: str) -> None:
        self.token = token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"JWT {self.token}"
        yield request


def _auth(username: str | None, password: str | None, token: str | None) -> httpx.Auth | None:
    if token is not None:
        return JwtAuth(token)
    if username is not None:
        return httpx.BasicAuth(username, password or "")
    return None


def _bootstrap_body(action: str, body: Mapping[str, Any]) -> dict[str, Any]:
    if action not in BOOTSTRAP_ACTIONS:
        raise ValueError(f"not a bootstrap action: {action!r}")
    return {"action": action, **body}


def _user_body(email: str, password: str, role: str, name: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {"email": email, "password": password, "role": role}
    if name:
        body["name"] = name
    return body


def _state(document: dict[str, Any]) -> tuple[str, str | None]:
    status = document.get("bootstrap_status", {})
    return str(status.get("state", "")), status.get("phase")


def _observe(
    document: dict[str, Any], seen: tuple[str, str | None] | None, on_change: StatusCallback | None
) -> tuple[str, str | None]:
    """One poll of a wait: tell `on_change` when state or phase changed since `seen`; the new
    (state, phase), or BootstrapFailed if the action ended in `error`."""
    current = _state(document)
    if current != seen and on_change is not None:
        on_change(document)
    if current[0] == "error":
        raise bootstrap_failure(document)
    return current


# --- the synchronous client ---------------------------------------------------------------------


class CnmClient:
    """One node's API. `username`/`password` send HTTP Basic, `token` a JWT; `verify` as made by
    `tls_verify`; `trust_env=False` ignores proxy settings (for loopback nodes). Before bootstrap
    the node ignores credentials, so sending the ones about to be created from the first request
    on is right (and keeps working once they are required)."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        username: str | None = None,
        password: str | None = None,
        token: str | None = None,
        verify: ssl.SSLContext | bool = True,
        timeout: float = 10.0,
        trust_env: bool = True,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.url,
            auth=_auth(username, password, token),
            verify=verify,
            timeout=timeout,
            trust_env=trust_env,
            transport=transport,
            headers=_HEADERS,
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def request(self, method: str, path: str, *, json_body: Any = None) -> Any:
        """One call: the decoded JSON (None for an empty body), or ApiError / Unreachable."""
        with reaching(self.url):
            response = self._http.request(method, path, json=json_body)
        return decode(response)

    # --- bootstrap ---

    def bootstrap_status(self) -> dict[str, Any]:
        document: dict[str, Any] = self.request("GET", "/v1/bootstrap")
        return document

    def bootstrap(self, action: str, body: Mapping[str, Any]) -> None:
        self.request("POST", f"/v1/bootstrap/{action}", json_body=_bootstrap_body(action, body))

    def create_cluster(self, body: Mapping[str, Any]) -> None:
        self.bootstrap("create_cluster", body)

    def join_cluster(self, body: Mapping[str, Any]) -> None:
        self.bootstrap("join_cluster", body)

    def recover_cluster(self, body: Mapping[str, Any]) -> None:
        self.bootstrap("recover_cluster", body)

    def validate(self, action: str, body: Mapping[str, Any]) -> None:
        """Returns if the node would accept `body` for `action`; ApiError (406) says why not."""
        path = f"/v1/bootstrap/validate/{action}"
        self.request("POST", path, json_body=_bootstrap_body(action, body))

    def wait_bootstrap(
        self,
        timeout: float,
        on_change: StatusCallback | None = None,
        *,
        interval: float = 0.25,
        unreachable_grace: float = 5.0,
    ) -> dict[str, Any]:
        """Poll until `completed` (returns the document) or `error` (BootstrapFailed).

        `on_change` gets the document whenever state or phase changes, the first one included.
        A node that stops answering for longer than `unreachable_grace` raises Unreachable (a
        single dropped poll, while the node switches its certificate, does not). WaitTimeout
        after `timeout` seconds.
        """
        deadline = time.monotonic() + timeout
        last: dict[str, Any] | None = None
        seen: tuple[str, str | None] | None = None
        lost_since: float | None = None
        while True:
            try:
                document = self.bootstrap_status()
                lost_since = None
            except Unreachable:
                now = time.monotonic()
                lost_since = lost_since or now
                if now - lost_since > unreachable_grace or now > deadline:
                    raise
            else:
                last = document
                seen = _observe(document, seen, on_change)
                if seen[0] == "completed":
                    return document
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WaitTimeout(timeout, last)
            time.sleep(min(interval, remaining))

    # --- cluster ---

    def cluster(self) -> dict[str, Any]:
        document: dict[str, Any] = self.request("GET", "/v1/cluster")
        return document

    def cluster_check(self) -> dict[str, Any]:
        document: dict[str, Any] = self.request("GET", "/v1/cluster/check")
        return document

    def cluster_backup(self) -> dict[str, Any]:
        """A store snapshot now, written on the node asked (POST /v1/cluster/backup)."""
        document: dict[str, Any] = self.request("POST", "/v1/cluster/backup")
        return document

    def nodes(self) -> list[dict[str, Any]]:
        document: list[dict[str, Any]] = self.request("GET", "/v1/nodes")
        return document

    def node(self, uid: int) -> dict[str, Any]:
        document: dict[str, Any] = self.request("GET", f"/v1/nodes/{uid}")
        return document

    def remove_node(self, uid: int) -> dict[str, Any]:
        """Remove node `uid` from the cluster (POST /v1/nodes/{uid}/actions/remove); the
        answer says what was done."""
        document = self.request("POST", f"/v1/nodes/{uid}/actions/remove")
        return document if isinstance(document, dict) else {}

    def license(self) -> dict[str, Any]:
        document: dict[str, Any] = self.request("GET", "/v1/license")
        return document

    def put_license(self, text: str) -> dict[str, Any]:
        document = self.request("PUT", "/v1/license", json_body={"license": text})
        return document if isinstance(document, dict) else {}

    def users(self) -> list[dict[str, Any]]:
        document: list[dict[str, Any]] = self.request("GET", "/v1/users")
        return document

    def user(self, uid: int) -> dict[str, Any]:
        document: dict[str, Any] = self.request("GET", f"/v1/users/{uid}")
        return document

    def unlock_user(self, uid: int, client: str | None = None) -> list[str]:
        """Unlock the user's sign-ins from `client` (every address when None); the addresses
        unlocked."""
        body = {} if client is None else {"client": client}
        document = self.request("POST", f"/v1/users/{uid}/unlock", json_body=body)
        unlocked = document.get("unlocked", []) if isinstance(document, dict) else []
        return [str(address) for address in unlocked]

    def add_user(
        self, *, email: str, password: str, role: str = "admin", name: str | None = None
    ) -> dict[str, Any]:
        document = self.request(
            "POST", "/v1/users", json_body=_user_body(email, password, role, name)
        )
        return document if isinstance(document, dict) else {}

    def authorize(self, ttl: int | None = None) -> str:
        """A JWT for `Authorization: JWT <token>` (POST /v1/users/authorize)."""
        document = self.request(
            "POST", "/v1/users/authorize", json_body={} if ttl is None else {"ttl": ttl}
        )
        return str((document or {}).get("access_token", ""))


# --- the asynchronous client --------------------------------------------------------------------


class AsyncCnmClient:
    """The bootstrap calls of `CnmClient` for asyncio callers (benchmarks driving many nodes at
    once), with the same errors; anything else through `request`."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        username: str | None = None,
        password: str | None = None,
        token: str | None = None,
        verify: ssl.SSLContext | bool = True,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.AsyncClient(
            base_url=self.url,
            auth=_auth(username, password, token),
            verify=verify,
            timeout=timeout,
            transport=transport,
            headers=_HEADERS,
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def request(self, method: str, path: str, *, json_body: Any = None) -> Any:
        with reaching(self.url):
            response = await self._http.request(method, path, json=json_body)
        return decode(response)

    async def bootstrap_status(self) -> dict[str, Any]:
        document: dict[str, Any] = await self.request("GET", "/v1/bootstrap")
        return document

    async def bootstrap(self, action: str, body: Mapping[str, Any]) -> None:
        await self.request(
            "POST", f"/v1/bootstrap/{action}", json_body=_bootstrap_body(action, body)
        )

    async def create_cluster(self, body: Mapping[str, Any]) -> None:
        await self.bootstrap("create_cluster", body)

    async def join_cluster(self, body: Mapping[str, Any]) -> None:
        await self.bootstrap("join_cluster", body)

    async def validate(self, action: str, body: Mapping[str, Any]) -> None:
        path = f"/v1/bootstrap/validate/{action}"
        await self.request("POST", path, json_body=_bootstrap_body(action, body))

    async def wait_bootstrap(
        self,
        timeout: float,
        on_change: StatusCallback | None = None,
        *,
        interval: float = 0.25,
    ) -> dict[str, Any]:
        """As `CnmClient.wait_bootstrap`, without the grace for a lost poll."""
        last: dict[str, Any] | None = None
        seen: tuple[str, str | None] | None = None
        try:
            async with asyncio.timeout(timeout):
                while True:
                    document = await self.bootstrap_status()
                    last = document
                    seen = _observe(document, seen, on_change)
                    if seen[0] == "completed":
                        return document
                    await asyncio.sleep(interval)
        except TimeoutError:
            raise WaitTimeout(timeout, last) from None

    async def cluster(self) -> dict[str, Any]:
        document: dict[str, Any] = await self.request("GET", "/v1/cluster")
        return document

    async def nodes(self) -> list[dict[str, Any]]:
        document: list[dict[str, Any]] = await self.request("GET", "/v1/nodes")
        return document
