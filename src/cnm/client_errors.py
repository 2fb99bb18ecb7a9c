"""What `cnm.client` raises, and the translation of an answer or a transport failure into it.

Callers of the client never see an httpx exception or a raw status code: a transport failure
becomes `Unreachable` (a TLS verification failure `TlsVerifyFailed`, with the way out), any
answer >= 400 becomes `ApiError` parsed from either error shape the API uses (`{"description",
"error_code", ...}` outside bootstrap, a `bootstrap_status` object from `validate`), and a
bootstrap that ends in `error` becomes `BootstrapFailed`. The clients themselves live in
`cnm.client`; this module has no HTTP calls of its own.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import httpx

# --- errors -------------------------------------------------------------------------------------


class ClientError(Exception):
    """Base of everything this client raises."""


class ApiError(ClientError):
    """The server answered with an error.

    `status` is the HTTP status, or None when the error was read from a bootstrap status (the
    POST was accepted, the action then failed). `details` holds every field besides the code and
    the message (mismatches, failed nodes, line and column, ...); `document` is the body as sent.
    """

    def __init__(
        self,
        status: int | None,
        error_code: str,
        message: str,
        details: Mapping[str, Any] | None = None,
        document: Any = None,
    ) -> None:
        super().__init__(f"[{error_code}] {message}")
        self.status = status
        self.error_code = error_code
        self.message = message
        self.details: dict[str, Any] = dict(details or {})
        self.document = document


class BootstrapFailed(ApiError):
    """A bootstrap action ended in state `error`; `document` is the whole GET /v1/bootstrap."""


class Unreachable(ClientError):
    """No HTTP answer from the node: refused, timed out, name not resolved, TLS failure."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"cannot reach {url}: {reason}")
        self.url = url
        self.reason = reason


class TlsVerifyFailed(Unreachable):
    """The node's certificate did not verify: self-signed before bootstrap, or another CA."""


class WaitTimeout(ClientError):
    """The deadline of `wait_bootstrap` passed; `last` is the last status seen (or None)."""

    def __init__(self, timeout: float, last: dict[str, Any] | None) -> None:
        state = (last or {}).get("bootstrap_status", {}).get("state", "unknown")
        super().__init__(f"bootstrap not finished after {timeout:g} s (state {state})")
        self.timeout = timeout
        self.last = last


# --- the translation at the edge ----------------------------------------------------------------


def error_from_response(response: httpx.Response) -> ApiError:
    """The `ApiError` an error answer stands for, whichever of the API's shapes it has."""
    try:
        document: Any = response.json()
    except ValueError:
        text = response.text.strip()[:300] or response.reason_phrase
        return ApiError(response.status_code, "http_error", text, document=None)
    if isinstance(document, dict) and isinstance(document.get("error_details"), dict):
        # validate/{action}: a bootstrap_status with the message inside error_details.
        details = dict(document["error_details"])
        message = str(details.pop("message", "") or document.get("error_code", ""))
        code = str(document.get("error_code") or "error")
        return ApiError(response.status_code, code, message, details, document)
    if isinstance(document, dict):
        details = {k: v for k, v in document.items() if k not in ("description", "error_code")}
        code = str(document.get("error_code") or "http_error")
        message = str(document.get("description") or response.reason_phrase)
        return ApiError(response.status_code, code, message, details, document)
    return ApiError(response.status_code, "http_error", str(document)[:300], document=document)


def bootstrap_failure(document: dict[str, Any]) -> BootstrapFailed:
    status = document.get("bootstrap_status", {})
    details = dict(status.get("error_details") or {})
    message = str(details.pop("message", "") or "the bootstrap action failed")
    return BootstrapFailed(
        None, str(status.get("error_code") or "internal_error"), message, details, document
    )


def _is_tls_verify_failure(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        if "CERTIFICATE_VERIFY_FAILED" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def unreachable(url: str, exc: httpx.TransportError) -> Unreachable:
    if _is_tls_verify_failure(exc):
        return TlsVerifyFailed(
            url,
            "the node's TLS certificate did not verify (a fresh node serves a self-signed "
            "certificate: use --insecure or http://ADDR:8080 until the cluster exists, then "
            "--ca-file DATA_DIR/tls/cluster/ca.pem)",
        )
    reason = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.TimeoutException):
        reason = f"timed out ({type(exc).__name__})"
    return Unreachable(url, reason)


def decode(response: httpx.Response) -> Any:
    """A success answer's JSON (None for an empty body); an error answer raised as ApiError."""
    if response.status_code >= 400:
        raise error_from_response(response)
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        raise ApiError(
            response.status_code, "bad_response", "the node answered with a body that is not JSON"
        ) from None


@contextmanager
def reaching(url: str) -> Iterator[None]:
    """Around one request: a transport failure becomes `Unreachable`."""
    try:
        yield
    except httpx.TransportError as exc:
        raise unreachable(url, exc) from None
