"""The error_code registry (cnm.errors) and the error bodies built from it (cnm.api.errors)."""

from __future__ import annotations

import pytest

from cnm import errors
from cnm.api.errors import error_body
from cnm.cluster.handshake import JoinRefusal
from cnm.errors import (
    ERROR_CLASSES,
    BootstrapFailure,
    BootstrapInternalError,
    CnmError,
    ConfigError,
    InvalidLicense,
    LicenseCorrupt,
    NodeNotFound,
    TimeNotSync,
    error_class,
    failure_class,
)


def all_error_classes() -> list[type[CnmError]]:
    found: list[type[CnmError]] = []
    stack: list[type[CnmError]] = [CnmError]
    while stack:
        cls = stack.pop()
        found.append(cls)
        stack.extend(cls.__subclasses__())
    return found


def test_every_class_that_defines_a_code_is_the_registered_one() -> None:
    defining = [
        cls
        for cls in all_error_classes()
        if cls is not CnmError
        and "error_code" in cls.__dict__
        and cls.__module__ == errors.__name__
    ]
    assert len(defining) == len({cls.error_code for cls in defining}), "a code defined twice"
    for cls in defining:
        assert error_class(cls.error_code) is cls
    assert set(ERROR_CLASSES) >= {"time_not_sync", "invalid_license", "node_not_found"}


def test_a_second_class_with_a_taken_code_fails_at_definition() -> None:
    with pytest.raises(TypeError, match=r"time_not_sync.*TimeNotSync"):

        class Again(BootstrapFailure):
            error_code = "time_not_sync"

    assert error_class("time_not_sync") is TimeNotSync


def test_a_subclass_that_only_changes_the_status_keeps_its_parents_code() -> None:
    assert LicenseCorrupt.error_code == "invalid_license"
    assert error_class("invalid_license") is InvalidLicense


def test_failure_class_maps_bootstrap_codes_and_falls_back() -> None:
    assert failure_class("config_error") is ConfigError
    assert failure_class("internal_error") is BootstrapInternalError
    # Known, but not a bootstrap failure; and unknown to this version.
    assert failure_class("node_not_found") is BootstrapFailure
    assert failure_class("from_a_newer_version") is BootstrapFailure
    assert error_class("from_a_newer_version") is None
    assert error_class("node_not_found") is NodeNotFound


def test_error_bodies() -> None:
    assert error_body(NodeNotFound("no node 7", uid=7)) == {
        "description": "no node 7",
        "error_code": "node_not_found",
        "uid": 7,
    }
    body = error_body(InvalidLicense("expired", violation="expired"))
    assert body["error_details"] == {"message": "expired", "violation": "expired"}
    assert body["violation"] == "expired"


def test_a_refusal_becomes_the_same_failure_on_the_joiner() -> None:
    sent = TimeNotSync("clock off", offset_ms=600000.0, member="10.0.0.1")
    refusal = JoinRefusal.from_failure(sent)
    back = refusal.to_failure()
    assert type(back) is TimeNotSync
    assert back.message == "clock off"
    assert back.details == {"offset_ms": 600000.0, "member": "10.0.0.1"}
    unknown = JoinRefusal(description="x", error_code="new_code", error_details={"message": "m"})
    failure = unknown.to_failure()
    assert type(failure) is BootstrapFailure and failure.message == "m"
