"""What create_cluster and join_cluster both know about the node being bootstrapped.

The progress a bootstrap action reports, the node's storage paths (the request's where given,
the agent's configured ones otherwise) and their check, the node settings every member of a
cluster shares, and the node's own record as written to the store.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Protocol

from cnm.bootstrap.schema import BootstrapRequest
from cnm.bootstrap.validation import check_paths
from cnm.config import NodeConfig
from cnm.node.data_dir import default_ccs_path
from cnm.node.facts import StoragePaths, node_facts_for_record


class Progress(Protocol):
    """What a bootstrap action reports while it runs; each call is persisted."""

    def phase(self, name: str) -> None: ...

    def created(self, path: Path) -> None: ...

    def note(self, **notes: str) -> None: ...

    @property
    def start_time(self) -> datetime: ...


def storage_paths(config: NodeConfig, req: BootstrapRequest) -> StoragePaths:
    """The request's paths where given, the agent's configured ones otherwise."""
    given = req.node.paths
    persistent = given.persistent_path or str(config.persistent_path)
    return StoragePaths(
        persistent_path=persistent,
        ephemeral_path=given.ephemeral_path or str(config.ephemeral_path),
        bigstore_path=given.bigstore_path or str(config.bigstore_path),
        ccs_persistent_path=given.ccs_persistent_path or str(default_ccs_path(persistent)),
    )


def check_node_paths(paths: StoragePaths, req: BootstrapRequest) -> None:
    """path_error for a path this node needs that is missing or not writable. The flash path
    only matters when flash is enabled; the store path may be created inside the persistent one."""
    needed = {
        "node.paths.persistent_path": paths.persistent_path,
        "node.paths.ephemeral_path": paths.ephemeral_path,
    }
    if req.node.bigstore_enabled and paths.bigstore_path:
        needed["node.paths.bigstore_path"] = paths.bigstore_path
    if req.node.paths.ccs_persistent_path:
        needed["node.paths.ccs_persistent_path"] = paths.ccs_persistent_path
    check_paths(needed)


def node_settings(config: NodeConfig) -> dict[str, str]:
    return {
        "socket_dir": str(config.socket_dir),
        "conf_dir": str(config.conf_dir),
        "install_dir": str(config.install_dir),
        "os_user": config.os_user,
    }


def node_record(
    config: NodeConfig, req: BootstrapRequest, paths: StoragePaths, uid: int
) -> dict[str, object]:
    identity = req.node.identity
    record: dict[str, object] = {
        "uid": uid,
        "addr": config.addr,
        "external_addr": list(identity.external_addr),
        "rack_id": identity.rack_id or "",
        "second_rack_id": identity.second_rack_id or "",
        "accept_servers": identity.accept_servers,
        "max_listeners": req.node.limits.max_listeners,
        "max_redis_servers": req.node.limits.max_redis_servers,
        "bigstore_enabled": bool(req.node.bigstore_enabled),
        "bigstore_driver": req.node.bigstore_driver or "",
        "shard_count": 0,
        "ccs_persistent_path": paths.ccs_persistent_path,
        "node_settings": node_settings(config),
    }
    record.update(node_facts_for_record(paths=paths, addr=config.addr))
    return record
