"""Store snapshots: what a backup file holds, how it is written, kept, found and read back.

A snapshot is a consistent range read of every key under `/cnm/` at one store revision (one
`get_prefix`), written as a JSON document into `CCS_PERSISTENT_PATH/snapshots/`. Not etcd's
`/v3/maintenance/snapshot`: that file is the member's bbolt database, which only `etcdutl
snapshot restore` can turn back into a data dir (another binary the agent does not ship), which
carries the old cluster's member ids and peer URLs (a recovered store must start as a new
one-member store, not as a ghost of the old one), and which no test on the in-memory store could
read. A range read holds everything cnm keeps, is readable by an operator, and carries the header
recovery checks: the software version, the cluster's name and uuid and the revision.

Keys bound to a lease (liveness) and locks are not recorded: their holders belong to the old
store. Values are kept as the bytes stored (base64), so records of a newer shape survive too.

The periodic backups (`run_backups`) are taken by every voter every `backup_interval` seconds of
the cluster's policy (default 300) and after every change of the store's voters, keeping the last
`backup_keep` files (default 5); each one updates `/cnm/backup/latest` (time, node, revision), the
`last_backup_time` GET /v1/cluster shows.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cnm import SOFTWARE_VERSION
from cnm.clock import utc_now
from cnm.cluster import model
from cnm.cluster.records import ClusterRecord
from cnm.cluster.snapshot import ClusterSnapshot
from cnm.cluster.writes import wait_for_revision
from cnm.errors import ConfigError, PathError, StoreError, StoreUnavailable
from cnm.logs import event
from cnm.node.local_state import atomic_write_bytes
from cnm.store.base import Store

log = logging.getLogger(__name__)

FORMAT = "cnm-store-snapshot"
FORMAT_VERSION = 1
SNAPSHOTS_DIR = "snapshots"
FILE_PREFIX = "cnm-snapshot-"
LATEST_KEY = "/cnm/backup/latest"
DEFAULT_INTERVAL = 300
DEFAULT_KEEP = 5
# Not carried into a snapshot: bound to the old store's leases or sessions.
# The store admin's password belongs to the old store too: a recovered store gets its own.
_SKIPPED_PREFIXES = (model.LIVENESS_PREFIX, "/cnm/locks/", LATEST_KEY, model.STORE_ADMIN_KEY)
# A snapshot file larger than this is not one of ours (the store's own limit is 2 GiB, but a
# cluster's records are kilobytes to a few megabytes).
MAX_FILE_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class StoreSnapshot:
    """One snapshot: its header and the keys it holds (key -> stored bytes)."""

    software_version: str
    cluster_name: str
    cluster_uuid: str
    revision: int
    taken: str
    node_uid: int
    keys: dict[str, bytes]

    def encode(self) -> bytes:
        document = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "software_version": self.software_version,
            "cluster_name": self.cluster_name,
            "cluster_uuid": self.cluster_uuid,
            "revision": self.revision,
            "taken": self.taken,
            "node_uid": self.node_uid,
            "keys": {k: base64.b64encode(v).decode() for k, v in sorted(self.keys.items())},
        }
        return json.dumps(document, indent=1, sort_keys=True).encode() + b"\n"


def snapshots_dir(ccs_persistent_path: str | Path) -> Path:
    return Path(ccs_persistent_path) / SNAPSHOTS_DIR


async def take_snapshot(store: Store, *, node_uid: int) -> StoreSnapshot:
    """A consistent read of the cluster's records (one revision). Raises `StoreUnavailable`."""
    kvs, revision = await store.get_prefix(model.PREFIX)
    keys = {kv.key: kv.value for kv in kvs if not kv.key.startswith(_SKIPPED_PREFIXES)}
    raw_cluster = keys.get(model.CLUSTER_KEY)
    if raw_cluster is None:
        raise StoreError("the store holds no cluster record: nothing to back up")
    cluster = ClusterRecord.decode(raw_cluster)
    return StoreSnapshot(
        software_version=SOFTWARE_VERSION,
        cluster_name=cluster.name,
        cluster_uuid=cluster.uuid,
        revision=revision,
        taken=utc_now().isoformat(),
        node_uid=node_uid,
        keys=keys,
    )


def write_snapshot(snapshot: StoreSnapshot, ccs_persistent_path: str | Path, *, keep: int) -> Path:
    """Write `snapshot` (mode 0600: it holds the CA key and the users' verifiers) and remove the
    oldest files beyond the last `keep`. Returns the file written."""
    directory = snapshots_dir(ccs_persistent_path)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    stamp = datetime.fromisoformat(snapshot.taken).strftime("%Y%m%dT%H%M%S.%fZ")
    path = directory / f"{FILE_PREFIX}{stamp}-r{snapshot.revision}.json"
    atomic_write_bytes(path, snapshot.encode(), mode=0o600)
    for old in list_snapshots(ccs_persistent_path)[: -max(keep, 1)]:
        old.unlink(missing_ok=True)
    return path


def list_snapshots(ccs_persistent_path: str | Path) -> list[Path]:
    """This node's snapshot files, oldest first (the names sort by time)."""
    directory = snapshots_dir(ccs_persistent_path)
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.glob(f"{FILE_PREFIX}*.json") if p.is_file())


def read_snapshot(filename: str) -> StoreSnapshot:
    """The snapshot in `filename`. `PathError` when it is missing or unreadable, `ConfigError`
    when it is not a snapshot of a cnm cluster or comes from another software version."""
    field = "recovery_filename"
    path = Path(filename)
    if not path.is_absolute():
        raise ConfigError(f"{field}: must be an absolute path, got {filename!r}", fields=[field])
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise ConfigError(
                f"{field}: {path} is larger than {MAX_FILE_BYTES} bytes: not a cnm store snapshot",
                fields=[field],
            )
        raw = path.read_bytes()
    except FileNotFoundError:
        raise PathError(f"{field}: {path} does not exist", path=str(path), field=field) from None
    except IsADirectoryError:
        raise PathError(f"{field}: {path} is a directory", path=str(path), field=field) from None
    except OSError as exc:
        raise PathError(
            f"{field}: {path} cannot be read ({exc.strerror})", path=str(path), field=field
        ) from None
    return decode_snapshot(raw, str(path))


def decode_snapshot(raw: bytes, where: str) -> StoreSnapshot:
    field = "recovery_filename"

    def not_ours(why: str) -> ConfigError:
        return ConfigError(
            f"{field}: {where} is not a snapshot of a cnm cluster ({why})",
            fields=[field],
            reason="not_a_snapshot",
        )

    try:
        document: Any = json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        raise not_ours("not a JSON document") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise not_ours(f'no "format": "{FORMAT}" header')
    version = document.get("software_version")
    if version != SOFTWARE_VERSION or document.get("format_version") != FORMAT_VERSION:
        raise ConfigError(
            f"{field}: {where} was taken by cnm {version}, this node runs {SOFTWARE_VERSION}; "
            "recover with the version that took the snapshot",
            fields=[field],
            reason="snapshot_version_mismatch",
            snapshot_version=str(version),
            node_version=SOFTWARE_VERSION,
        )
    try:
        keys = {
            str(k): base64.b64decode(v, validate=True) for k, v in dict(document["keys"]).items()
        }
        snapshot = StoreSnapshot(
            software_version=str(version),
            cluster_name=str(document["cluster_name"]),
            cluster_uuid=str(document["cluster_uuid"]),
            revision=int(document["revision"]),
            taken=str(document["taken"]),
            node_uid=int(document["node_uid"]),
            keys=keys,
        )
        ClusterRecord.decode(keys[model.CLUSTER_KEY])
    except (KeyError, TypeError, ValueError) as exc:
        raise not_ours(f"incomplete or damaged: {type(exc).__name__}") from None
    if model.CA_KEY not in keys:
        raise not_ours("it holds no cluster CA")
    return snapshot


# --- the periodic backups of a voter ----------------------------------------------------------


def _policy_int(snapshot: ClusterSnapshot, name: str, default: int) -> int:
    cluster = snapshot.cluster()
    value = cluster.policy.document().get(name) if cluster is not None else None
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def backup_interval(snapshot: ClusterSnapshot) -> int:
    return _policy_int(snapshot, "backup_interval", DEFAULT_INTERVAL)


def backup_keep(snapshot: ClusterSnapshot) -> int:
    return _policy_int(snapshot, "backup_keep", DEFAULT_KEEP)


async def backup_now(
    store: Store, snapshot: ClusterSnapshot, *, node_uid: int, ccs_persistent_path: str
) -> tuple[Path, StoreSnapshot]:
    """Take a snapshot, write it, record it as the cluster's latest backup."""
    taken = await take_snapshot(store, node_uid=node_uid)
    path = await asyncio.to_thread(
        write_snapshot, taken, ccs_persistent_path, keep=backup_keep(snapshot)
    )
    latest = {"time": taken.taken, "node_uid": node_uid, "revision": taken.revision}
    revision = await store.put(LATEST_KEY, json.dumps(latest, sort_keys=True).encode())
    log.info(
        "store snapshot written: %s (revision %d)",
        path,
        taken.revision,
        extra=event("backup_written", file=str(path), revision=taken.revision),
    )
    # Answer once this node's snapshot shows it (GET /v1/cluster right after sees the time).
    await wait_for_revision(snapshot, revision)
    return path, taken


def voter_set(snapshot: ClusterSnapshot) -> frozenset[int]:
    return frozenset(n.uid for n in snapshot.voters())


async def run_backups(
    store: Store, snapshot: ClusterSnapshot, *, node_uid: int, ccs_persistent_path: str
) -> None:
    """Every `backup_interval` seconds, and soon after the voters change, while this node is a
    voter: a backup. Returns only when cancelled; a failed one is logged and retried later."""
    changed = asyncio.Event()
    seen: frozenset[int] | None = voter_set(snapshot) if snapshot.loaded else None

    def on_change(key: str) -> None:
        nonlocal seen
        if not key.startswith(model.NODES_PREFIX):
            return
        voters = voter_set(snapshot)
        if seen is not None and voters != seen:
            changed.set()
        seen = voters

    snapshot.add_listener(on_change)
    while True:
        try:
            async with asyncio.timeout(backup_interval(snapshot)):
                await changed.wait()
        except TimeoutError:
            pass
        changed.clear()
        if not snapshot.loaded or node_uid not in voter_set(snapshot):
            continue
        try:
            await backup_now(
                store, snapshot, node_uid=node_uid, ccs_persistent_path=ccs_persistent_path
            )
        except (StoreUnavailable, StoreError, OSError) as exc:
            log.warning("periodic store snapshot failed: %s", exc)


def latest_backup(snapshot: ClusterSnapshot) -> dict[str, Any] | None:
    record = snapshot.record(LATEST_KEY)
    return record.document() if record is not None else None
