"""Store data already in a node's `ccs_persistent_path`: whose it is, refused or clobbered.

A node that completed a bootstrap keeps, next to its etcd member directory, a small marker
(`CCS/cluster-identity.json`: the cluster's name and uuid, written with its local state). A
create, join or recover that finds a member directory there which the current attempt did not
make refuses with `config_error`, `error_details.reason: "foreign_cluster_data"` and the cluster
name and uuid the marker names (null when there is no marker: an etcd directory of unknown
origin). Only `cluster.clobber: true` in the request wipes it, and only when the action runs
(validate never removes anything). The snapshots directory next to it is never wiped: it may be
the one copy of that cluster.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from cnm.bootstrap.schema import BootstrapRequest
from cnm.errors import ConfigError
from cnm.logs import event
from cnm.node.data_dir import etcd_member_dir
from cnm.node.facts import StoragePaths
from cnm.node.local_state import marker_path, read_marker

log = logging.getLogger(__name__)


def _holds_store_data(member_dir: Path) -> bool:
    try:
        return member_dir.is_dir() and any(member_dir.iterdir())
    except OSError:
        return True  # unreadable: certainly not ours to reuse


def check_store_data(
    paths: StoragePaths, req: BootstrapRequest, *, leftovers: tuple[str, ...] = ()
) -> None:
    """`config_error` (reason `foreign_cluster_data`) when the node's store directory holds data
    the current attempt did not create and the request does not ask to clobber it."""
    member_dir = etcd_member_dir(paths.ccs_persistent_path)
    if req.cluster.clobber or str(member_dir) in leftovers or not _holds_store_data(member_dir):
        return
    found = read_marker(paths.ccs_persistent_path)
    whose = (
        f"cluster {found['cluster_name']} (uuid {found['cluster_uuid']})"
        if found["cluster_name"]
        else "a cluster this node cannot name (no identity marker)"
    )
    raise ConfigError(
        f"node.paths.ccs_persistent_path: {member_dir} holds the store data of {whose}; "
        "send cluster.clobber: true to wipe it and proceed, or give another "
        "ccs_persistent_path (the data is never removed without clobber)",
        fields=["node.paths.ccs_persistent_path"],
        reason="foreign_cluster_data",
        path=str(member_dir),
        **found,
    )


def clobber_store_data(paths: StoragePaths, req: BootstrapRequest) -> None:
    """With `cluster.clobber: true`, wipe the store data found (and its marker)."""
    member_dir = etcd_member_dir(paths.ccs_persistent_path)
    if not req.cluster.clobber or not member_dir.exists():
        return
    found = read_marker(paths.ccs_persistent_path)
    log.warning(
        "cluster.clobber: wiping the store data in %s (cluster %s, uuid %s)",
        member_dir,
        found["cluster_name"],
        found["cluster_uuid"],
        extra=event("store_data_clobbered", path=str(member_dir), **found),
    )
    shutil.rmtree(member_dir)
    marker_path(paths.ccs_persistent_path).unlink(missing_ok=True)
