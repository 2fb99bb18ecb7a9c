"""`cnm node run --check-config`: the effective configuration, where each value came from, and
the problems that would stop or cripple the agent, found without starting anything.

Checked beyond what `load_node_config` already refuses (a wrong key or a wrongly typed value):
the address is one of this host's, the four ports differ, etcd can be found, the data directory
is writable (or can be created), every license public key loads. A unit runs it as
`ExecStartPre=` so a bad setting fails the start with a message, not a crash loop.
"""

from __future__ import annotations

import os
import shutil
from collections import Counter
from pathlib import Path

from cnm.cluster.license import load_public_keys
from cnm.config import FIELD_NAMES, NodeConfig
from cnm.node.facts import is_local_address


def _shown(name: str, value: object) -> str:
    if name == "license_public_keys" and isinstance(value, tuple):
        # Inline keys are whole PEM documents: one line each would drown the table.
        return ", ".join("<inline PEM key>" if "BEGIN" in v else v for v in value) or "(none)"
    return str(value)


def report(config: NodeConfig, sources: dict[str, str]) -> str:
    """One line per setting: name, value, source."""
    width = max(len(name) for name in FIELD_NAMES)
    values = {name: _shown(name, getattr(config, name)) for name in FIELD_NAMES}
    value_width = min(40, max(len(v) for v in values.values()))
    lines = ["effective configuration (flags > CNM_* environment > config file > defaults):"]
    for name in FIELD_NAMES:
        shown = values[name].ljust(value_width)
        lines.append(f"  {name.ljust(width)}  {shown}  [{sources.get(name, 'default')}]")
    return "\n".join(lines)


def _writable_dir(path: Path) -> bool:
    """Whether the agent could create files in `path` (creating it first if needed)."""
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            return False
        probe = probe.parent
    return probe.is_dir() and os.access(probe, os.W_OK | os.X_OK)


def problems(config: NodeConfig) -> list[str]:
    """What is wrong with `config` on this host, each naming the setting; empty when none."""
    found = []
    if not is_local_address(config.addr):
        found.append(f"addr: {config.addr} is not an address of this host")
    ports = {
        name: getattr(config, name)
        for name in ("http_port", "https_port", "etcd_client_port", "etcd_peer_port")
    }
    for port, count in Counter(ports.values()).items():
        if count > 1:
            names = ", ".join(name for name, value in ports.items() if value == port)
            found.append(f"{names}: the same port {port} twice")
    if shutil.which(config.etcd_binary) is None:
        found.append(f"etcd_binary: {config.etcd_binary!r} is not an executable file on PATH")
    if not _writable_dir(config.data_dir):
        found.append(f"data_dir: {config.data_dir} is not writable by this user")
    _, key_problems = load_public_keys(config.license_public_keys)
    found.extend(f"license_public_keys: {problem}" for problem in key_problems)
    return found
