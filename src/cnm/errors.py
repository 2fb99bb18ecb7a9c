"""The one error hierarchy of cnm.

Every error that reaches a client is a `CnmError`: it carries the API's `error_code`, the HTTP
status it maps to, an operator-facing message and optional structured details. The API turns them
into JSON in one place (`cnm.api.errors`); the bootstrap machinery records the bootstrap ones
(`BootstrapFailure`) in the status record. Foreign exceptions are translated where they enter
(httpx → `StoreUnavailable`), never passed through.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, ClassVar

_CLASSES_BY_CODE: dict[str, type[CnmError]] = {}
# Read-only view of the registry: error_code -> the one class that defines it.
ERROR_CLASSES: Mapping[str, type[CnmError]] = MappingProxyType(_CLASSES_BY_CODE)


class CnmError(Exception):
    """Base of every error cnm reports. Subclasses fix `error_code` and `http_status`.

    A subclass that sets `error_code` in its own body registers it in `ERROR_CLASSES`; a code
    defined twice is a programming error caught at import. A subclass that only changes the
    status (`LicenseCorrupt`) inherits its parent's code and does not register.
    """

    error_code: ClassVar[str] = "internal_error"
    http_status: ClassVar[int] = 500
    # Whether the API body carries `error_details` besides the flat details (see api/errors.py).
    details_in_body: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "error_code" not in cls.__dict__:
            return
        holder = _CLASSES_BY_CODE.setdefault(cls.error_code, cls)
        if holder is not cls:
            raise TypeError(
                f"error_code {cls.error_code!r} of {cls.__qualname__} is already defined by "
                f"{holder.__qualname__}"
            )

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = details


def error_class(code: str) -> type[CnmError] | None:
    """The class that defines `code`, or None for a code this version does not know."""
    return _CLASSES_BY_CODE.get(code)


# --- errors recorded in bootstrap_status (docs/api-contract.md §5) ------------------------------


class BootstrapFailure(CnmError):
    """An error a bootstrap action ends with: state `error`, `error_code`, `error_details`.

    `retryable` says whether the same request may succeed later unchanged (shown to operators).
    """

    http_status = 406
    retryable: ClassVar[bool] = False

    def error_details(self) -> dict[str, Any]:
        details: dict[str, Any] = {"message": self.message}
        details.update(self.details)
        return details


def failure_class(code: str) -> type[BootstrapFailure]:
    """The bootstrap failure that `code` names; a code this version does not know, or one that
    is not a bootstrap failure, becomes the generic `BootstrapFailure` (the code is kept in the
    message the caller builds, not lost in a 500)."""
    found = _CLASSES_BY_CODE.get(code)
    if found is not None and issubclass(found, BootstrapFailure):
        return found
    return BootstrapFailure


class ConfigError(BootstrapFailure):
    error_code = "config_error"


class PathError(BootstrapFailure):
    error_code = "path_error"


class ConnectError(BootstrapFailure):
    error_code = "connect_error"
    retryable = True


class AccessDenied(BootstrapFailure):
    error_code = "access_denied"


class InvalidLicense(BootstrapFailure):
    """A license that cannot be installed; `violation` (a detail) says why (cluster/license.py).
    Valid but violated terms: 406."""

    error_code = "invalid_license"
    # Outside bootstrap too, readers find the violation where the bootstrap status puts it.
    details_in_body = True


class LicenseCorrupt(InvalidLicense):
    """The license text is malformed or its signature does not verify: 400 on PUT /v1/license."""

    http_status = 400


class RepairRequired(BootstrapFailure):
    error_code = "repair_required"


class InsufficientNodeMemory(BootstrapFailure):
    error_code = "insufficient_node_memory"


class InsufficientNodeFlash(BootstrapFailure):
    error_code = "insufficient_node_flash"


class TimeNotSync(BootstrapFailure):
    error_code = "time_not_sync"
    retryable = True


class RackIdRequired(BootstrapFailure):
    error_code = "rack_id_required"


class SocketDirectoryMismatch(BootstrapFailure):
    error_code = "socket_directory_mismatch"


class NodeConfigMismatch(BootstrapFailure):
    error_code = "node_config_mismatch"


class BootstrapInternalError(BootstrapFailure):
    error_code = "internal_error"
    retryable = True


# --- errors of the REST API -------------------------------------------------------------------


class InvalidSchema(CnmError):
    """The body is not JSON, not an object, or a field has the wrong type. State unchanged."""

    error_code = "invalid_schema"
    http_status = 400


class BadRequest(CnmError):
    error_code = "bad_request"
    http_status = 400


class Unauthorized(CnmError):
    error_code = "unauthorized"
    http_status = 401


class SignInLocked(Unauthorized):
    """Too many failed sign-ins for this (user, client address) pair: locked for a while
    (details: `retry_after`, seconds)."""

    error_code = "sign_in_locked"


class InsufficientPermissions(CnmError):
    error_code = "insufficient_permissions"
    http_status = 403


class WrongCurrentPassword(CnmError):
    """A user changing its own password gave a wrong `current_password`."""

    error_code = "wrong_current_password"
    http_status = 403


class TooManyRequests(CnmError):
    """The password verification queue is full (details: `retry_after`, seconds); the answer
    carries `Retry-After`."""

    error_code = "too_many_requests"
    http_status = 429


class NotFound(CnmError):
    error_code = "not_found"
    http_status = 404


class MethodNotAllowed(CnmError):
    error_code = "method_not_allowed"
    http_status = 405


class BootstrapInProgress(CnmError):
    error_code = "bootstrap_in_progress"
    http_status = 409


class AlreadyBootstrapped(CnmError):
    error_code = "already_bootstrapped"
    http_status = 409


class PayloadTooLarge(CnmError):
    error_code = "payload_too_large"
    http_status = 413


class ClientDisconnected(CnmError):
    """The client went away before sending its whole body (nobody reads the answer)."""

    error_code = "client_disconnected"
    http_status = 400


class HttpError(CnmError):
    """A protocol-level refusal from the web framework other than 404/405 (its status is the
    framework's, chosen in api/errors.py)."""

    error_code = "http_error"
    http_status = 400


class NoCluster(CnmError):
    error_code = "no_cluster"
    http_status = 503


class SignerUnavailable(CnmError):
    """The certificate signer process (security/signing.py) could not be started or did not
    answer in time. Retryable: the next request starts a new one."""

    error_code = "signer_unavailable"
    http_status = 503


# --- errors of the cluster store ----------------------------------------------------------------


class StoreError(CnmError):
    """The store answered, but with an error we do not expect (bad request, corrupted data)."""

    error_code = "store_error"
    http_status = 500


class StoreUnavailable(StoreError):
    """The store could not be reached or did not answer in time. Retryable."""

    error_code = "store_unavailable"
    http_status = 503


class StoreAccessRefused(StoreError):
    """The store refused this node's own credentials (its store user is gone or has another
    password): the node was removed from the cluster or replaced by another machine. Retrying
    with the same credentials never helps."""

    error_code = "store_access_refused"
    http_status = 503


class LeaseNotFound(StoreError):
    """A write or revoke named a lease the store does not have (it expired or was revoked):
    the writer takes a new lease. Raised by every store backend for etcd's "lease not found",
    so callers never match etcd's wording themselves."""


class StoreContention(StoreError):
    """A compare-and-set lost to concurrent writes of the same records attempt after attempt
    (cluster/writes.py `cas_retry`): the store is healthy, the client should simply retry.
    A `StoreError` so the background loops that retry store errors retry this too."""

    error_code = "store_contention"
    http_status = 409


class NodeNotFound(NotFound):
    error_code = "node_not_found"


class UserNotFound(NotFound):
    error_code = "user_not_found"


class ReadOnlyField(BadRequest):
    """A PUT tried to change a field that is fixed for ever (cluster name, rack awareness)."""

    error_code = "read_only_field"


class EmailAlreadyExists(CnmError):
    error_code = "email_already_exists"
    http_status = 409


class NameAlreadyExists(CnmError):
    error_code = "name_already_exists"
    http_status = 409


class LastAdmin(CnmError):
    """Deleting or demoting the cluster's last active admin would lock everyone out."""

    error_code = "change_last_admin_role_not_allowed"
    http_status = 406


class PasswordTooShort(BadRequest):
    error_code = "password_too_short"


class PasswordNotComplex(BadRequest):
    error_code = "password_not_complex"
