"""The bootstrap status record: the state machine's states and its durable record.

`BootstrapStatus` is what GET /v1/bootstrap shows as `bootstrap_status`, plus what the agent
needs to recover after a crash (the action, the phase, and what a failed attempt left behind).
It is persisted atomically at every transition, so an agent killed mid-bootstrap restarts in a
state it can explain: an interrupted attempt becomes `error` with a message that says so.
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

    def save(self, data_dir: Path) -> None:
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
        atomic_write_json(DataDir(data_dir).status_file, document)

    @classmethod
    def load(cls, data_dir: Path) -> BootstrapStatus:
        raw = read_json(DataDir(data_dir).status_file)
        if raw is None:
            return cls()
        return cls(
            state=BootstrapState(raw["state"]),
            action=raw.get("action"),
            start_time=parse_iso(raw["start_time"]) if raw.get("start_time") else None,
            end_time=parse_iso(raw["end_time"]) if raw.get("end_time") else None,
            phase=raw.get("phase"),
            error_code=raw.get("error_code"),
            error_details=raw.get("error_details"),
            created_paths=tuple(raw.get("created_paths") or ()),
            notes=dict(raw.get("notes") or {}),
        )

    @staticmethod
    def remove(data_dir: Path) -> None:
        with contextlib.suppress(FileNotFoundError):
            DataDir(data_dir).status_file.unlink()
