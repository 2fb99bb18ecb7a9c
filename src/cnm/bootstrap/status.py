"""The bootstrap status record: the state machine's states and its durable record.

`BootstrapStatus` is what GET /v1/bootstrap shows as `bootstrap_status`, plus what the agent
needs to recover after a crash (the action, the phase, and what a failed attempt left behind).
It is persisted atomically at every transition, so an agent killed mid-bootstrap restarts in a
state it can explain: an interrupted attempt becomes `error` with a message that says so.

A change of state (and a path an attempt created) is fsynced before the agent goes on; a phase
or a note within the same state is only replaced atomically, not fsynced: a machine crash may
cost it (the restart then names an earlier phase of the same state), and the join no longer
waits for two disk flushes per phase. A file that does not read as a status at all (torn by a
machine crash on a file system that reorders a rename before the data, or edited by hand) is
`UnreadableStatus`, which the manager turns into a decision of its own instead of an agent that
cannot start (bootstrap/manager.py).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from cnm.clock import iso, parse_iso, utc_now
from cnm.errors import BootstrapFailure
from cnm.node.data_dir import DataDir
from cnm.node.local_state import atomic_write_json, read_json


class UnreadableStatus(Exception):
    """The status file exists but is not a status document."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class BootstrapState(StrEnum):
    IDLE = "idle"
    INITIATED = "initiated"
    CREATING_CLUSTER = "creating_cluster"
    JOINING_CLUSTER = "joining_cluster"
    RECOVERING_CLUSTER = "recovering_cluster"
    ERROR = "error"
    COMPLETED = "completed"

    @property
    def accepts_request(self) -> bool:
        """POST is accepted only in idle or error (docs/api-contract.md §4)."""
        return self in (BootstrapState.IDLE, BootstrapState.ERROR)

    @property
    def in_progress(self) -> bool:
        return self in _IN_PROGRESS


_IN_PROGRESS = {
    BootstrapState.INITIATED,
    BootstrapState.CREATING_CLUSTER,
    BootstrapState.JOINING_CLUSTER,
    BootstrapState.RECOVERING_CLUSTER,
}

ACTION_STATES = {
    "create_cluster": BootstrapState.CREATING_CLUSTER,
    "join_cluster": BootstrapState.JOINING_CLUSTER,
    "recover_cluster": BootstrapState.RECOVERING_CLUSTER,
}


@dataclass(frozen=True)
class BootstrapStatus:
    state: BootstrapState = BootstrapState.IDLE
    action: str | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    phase: str | None = None
    error_code: str | None = None
    error_details: dict[str, Any] | None = None
    # Paths the current attempt created, removed before a retry from `error`.
    created_paths: tuple[str, ...] = field(default=())
    # Facts an operator should see, e.g. the cluster CA fingerprint a join trusted.
    notes: dict[str, str] = field(default_factory=dict)

    def to_api(self) -> dict[str, Any]:
        body: dict[str, Any] = {"state": self.state.value}
        if self.start_time:
            body["start_time"] = iso(self.start_time)
        if self.end_time:
            body["end_time"] = iso(self.end_time)
        if self.state.in_progress and self.phase:
            body["phase"] = self.phase
        body.update(self.notes)
        if self.state is BootstrapState.ERROR:
            body["error_code"] = self.error_code or "internal_error"
            body["error_details"] = dict(self.error_details or {})
        return body

    # --- transitions: each returns the next record ---------------------------------------------

    def initiated(self, action: str) -> BootstrapStatus:
        return BootstrapStatus(
            state=BootstrapState.INITIATED, action=action, start_time=utc_now(), phase="checks"
        )

    def running(self, phase: str) -> BootstrapStatus:
        state = ACTION_STATES[self.action or "create_cluster"]
        return replace(self, state=state, phase=phase)

    def noted(self, **notes: str) -> BootstrapStatus:
        return replace(self, notes={**self.notes, **notes})

    def created(self, path: Path) -> BootstrapStatus:
        return replace(self, created_paths=(*self.created_paths, str(path)))

    def completed(self) -> BootstrapStatus:
        return replace(self, state=BootstrapState.COMPLETED, end_time=utc_now(), phase=None)

    def failed(self, failure: BootstrapFailure) -> BootstrapStatus:
        details = failure.error_details()
        details.setdefault("retryable", failure.retryable)
        if self.phase:
            details.setdefault("phase", self.phase)
        return replace(
            self,
            state=BootstrapState.ERROR,
            end_time=utc_now(),
            error_code=failure.error_code,
            error_details=details,
        )

    # --- persistence ----------------------------------------------------------------------------

    def save(self, data_dir: Path, *, durable: bool = True) -> None:
        document = {
            "state": self.state.value,
            "action": self.action,
            "start_time": iso(self.start_time) if self.start_time else None,
            "end_time": iso(self.end_time) if self.end_time else None,
            "phase": self.phase,
            "error_code": self.error_code,
            "error_details": self.error_details,
            "created_paths": list(self.created_paths),
            "notes": self.notes,
        }
        atomic_write_json(DataDir(data_dir).status_file, document, durable=durable)

    @classmethod
    def load(cls, data_dir: Path) -> BootstrapStatus:
        """The recorded status (idle without a file); `UnreadableStatus` when the file is there
        but is not a status document."""
        path = DataDir(data_dir).status_file
        try:
            raw = read_json(path)
            if raw is None:
                return cls()
            if not isinstance(raw, dict):
                raise TypeError("the document is not a JSON object")
            return cls(
                state=BootstrapState(raw["state"]),
                action=_optional_str(raw.get("action"), "action"),
                start_time=parse_iso(raw["start_time"]) if raw.get("start_time") else None,
                end_time=parse_iso(raw["end_time"]) if raw.get("end_time") else None,
                phase=_optional_str(raw.get("phase"), "phase"),
                error_code=_optional_str(raw.get("error_code"), "error_code"),
                error_details=_optional_dict(raw.get("error_details"), "error_details"),
                created_paths=tuple(_strings(raw.get("created_paths") or [], "created_paths")),
                notes=dict(_optional_dict(raw.get("notes"), "notes") or {}),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            # ValueError covers JSON that does not parse (a torn or empty file), an unknown
            # state and a malformed time; the others, a document of the wrong shape.
            reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            raise UnreadableStatus(path, reason) from None

    @staticmethod
    def remove(data_dir: Path) -> None:
        with contextlib.suppress(FileNotFoundError):
            DataDir(data_dir).status_file.unlink()


def _optional_str(value: Any, name: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise TypeError(f"{name} is {type(value).__name__}, not a string")


def _optional_dict(value: Any, name: str) -> dict[str, Any] | None:
    if value is None or isinstance(value, dict):
        return value
    raise TypeError(f"{name} is {type(value).__name__}, not an object")


def _strings(value: Any, name: str) -> list[str]:
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return value
    raise TypeError(f"{name} is not a list of strings")
