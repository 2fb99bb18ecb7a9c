"""Durable files of one node: atomic JSON writes and the node's local state.

Every state file in the data dir is replaced atomically (temp file in the same directory, fsync,
rename, fsync of the directory), so a crash at any instant leaves either the old or the new
document, never a torn one. The local state says which cluster this node belongs to and how it
reaches the store; its presence is what makes a restarting agent rejoin instead of waiting for a
bootstrap request.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from cnm.node.data_dir import CLUSTER_IDENTITY_FILE, DataDir
from cnm.security import key_files


def atomic_write_bytes(path: Path, data: bytes, *, mode: int = 0o600, durable: bool = True) -> None:
    """Replace `path` with `data` (its directory made if missing). `durable=False` skips the
    fsyncs: for a file whose loss or emptiness after a machine crash costs nothing (a process
    crash loses nothing either way)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    key_files.write_atomic(path, data, mode, durable=durable)


def atomic_write_json(
    path: Path, document: Any, *, mode: int = 0o600, durable: bool = True
) -> None:
    data = json.dumps(document, indent=1, sort_keys=True).encode() + b"\n"
    atomic_write_bytes(path, data, mode=mode, durable=durable)


def read_json(path: Path) -> Any | None:
    """The document at `path`, or None when there is none. A corrupt file raises ValueError."""
    try:
        return json.loads(path.read_bytes())
    except FileNotFoundError:
        return None


def marker_path(ccs_persistent_path: str | Path) -> Path:
    """The marker naming the cluster whose store data a ccs_persistent_path holds."""
    return Path(ccs_persistent_path) / CLUSTER_IDENTITY_FILE


def read_json_quiet(path: Path) -> Any | None:
    try:
        return read_json(path)
    except (OSError, ValueError):
        return None


def read_marker(ccs_persistent_path: str | Path) -> dict[str, Any]:
    """The cluster name and uuid the marker names; None for each it does not (or no marker)."""
    document = read_json_quiet(marker_path(ccs_persistent_path))
    if not isinstance(document, dict):
        document = {}
    return {"cluster_name": document.get("name"), "cluster_uuid": document.get("uuid")}


@dataclass(frozen=True)
class LocalState:
    """What this node knows about its cluster after a completed bootstrap."""

    cluster_uuid: str
    cluster_name: str
    node_uid: int
    # How this node reaches the store: client URLs of the members, and whether it runs one.
    store_endpoints: tuple[str, ...]
    runs_store_member: bool
    member_name: str
    initial_cluster: str
    initial_cluster_state: str
    cluster_token: str
    persistent_path: str
    ephemeral_path: str
    bigstore_path: str | None
    ccs_persistent_path: str

    def with_changes(self, **changes: Any) -> LocalState:
        return replace(self, **changes)

    def save(self, data_dir: Path) -> None:
        atomic_write_json(DataDir(data_dir).local_state_file, asdict(self))
        # Whose store data the ccs path holds, for a later bootstrap that finds it there
        # (bootstrap/store_data.py refuses it as foreign without cluster.clobber).
        document = {"name": self.cluster_name, "uuid": self.cluster_uuid}
        if read_json_quiet(marker_path(self.ccs_persistent_path)) != document:
            atomic_write_json(marker_path(self.ccs_persistent_path), document, mode=0o644)

    @classmethod
    def load(cls, data_dir: Path) -> LocalState | None:
        raw = read_json(DataDir(data_dir).local_state_file)
        if raw is None:
            return None
        raw["store_endpoints"] = tuple(raw["store_endpoints"])
        return cls(**raw)

    @staticmethod
    def remove(data_dir: Path) -> None:
        with contextlib.suppress(FileNotFoundError):
            DataDir(data_dir).local_state_file.unlink()
