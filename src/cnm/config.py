"""NodeConfig: the agent's settings, typed and frozen, built once at start and passed down.

Precedence: built-in defaults < TOML file (`--config`) < environment (`CNM_<FIELD>`, upper case)
< command-line flags. Unknown keys in the file and wrongly typed values are errors that name the
key and where it came from, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

DEFAULT_DATA_DIR = Path("/var/opt/cnm")

LogFormat = Literal["text", "json"]


class ConfigurationError(Exception):
    """The agent's own configuration is wrong: it refuses to start and says which key."""


@dataclass(frozen=True)
class NodeConfig:
    addr: str
    data_dir: Path = DEFAULT_DATA_DIR
    http_port: int = 8080
    https_port: int = 9443
    etcd_client_port: int = 2379
    etcd_peer_port: int = 2380
    etcd_binary: str = "etcd"
    log_level: str = "info"
    log_format: LogFormat = "text"
    # The node's storage paths when a bootstrap request names none (docs/api-contract.md §2).
    persistent_path: Path = Path("/var/opt/redislabs/persist")
    ephemeral_path: Path = Path("/var/opt/redislabs/tmp")
    bigstore_path: Path = Path("/var/opt/redislabs/flash")
    # Node settings every member of a cluster must share (checked at join).
    socket_dir: Path = Path("/var/opt/redislabs/run")
    conf_dir: Path = Path("/etc/opt/redislabs")
    install_dir: Path = Path("/opt/redislabs")
    os_user: str = "redislabs"
    # How long a cached successful password verification stays valid.
    auth_cache_seconds: float = 30.0
    # Lifetime in seconds of the node certificates this node signs as a member (one year; the
    # agent renews its own at 2/3 of its lifetime). Tests set a few seconds.
    node_cert_lifetime: int = 365 * 86400
    # The Ed25519 keys whose licenses this node accepts: each entry a PEM text (starting with
    # "-----BEGIN") or the path of a PEM file (cluster/license.py). Empty: only the trial.
    license_public_keys: tuple[str, ...] = field(default=())

    @property
    def host(self) -> str:
        """`addr` as it goes into a URL."""
        return url_host(self.addr)


def url_host(addr: str) -> str:
    """An address as the host part of a URL: IPv6 in brackets."""
    return f"[{addr}]" if ":" in addr else addr


_PATH_FIELDS = {f.name for f in fields(NodeConfig) if f.type in ("Path", Path)}
_INT_FIELDS = {f.name for f in fields(NodeConfig) if f.type in ("int", int)}
_FLOAT_FIELDS = {f.name for f in fields(NodeConfig) if f.type in ("float", float)}
_TUPLE_FIELDS = {"license_public_keys"}
_PORT_FIELDS = {"http_port", "https_port", "etcd_client_port", "etcd_peer_port"}
FIELD_NAMES = [f.name for f in fields(NodeConfig)]


def _coerce(name: str, value: Any, source: str) -> Any:
    where = f"{name} (from {source})"
    try:
        if name in _PATH_FIELDS:
            if not isinstance(value, str | Path) or not str(value):
                raise ValueError("expected a path")
            return Path(value)
        if name in _INT_FIELDS:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError("expected an integer")
            number = int(value)
            if name in _PORT_FIELDS and not 1 <= number <= 65535:
                raise ValueError("expected a port number 1..65535")
            if name == "node_cert_lifetime" and not 1 <= number <= 10 * 365 * 86400:
                raise ValueError("expected a number of seconds from 1 to ten years")
            return number
        if name in _FLOAT_FIELDS:
            if isinstance(value, bool):
                raise ValueError("expected a number")
            seconds = float(value)
            if not 0 <= seconds <= 86400:
                raise ValueError("expected a number of seconds from 0 to 86400")
            return seconds
        if name in _TUPLE_FIELDS:
            if isinstance(value, str):
                return tuple(part for part in value.split(",") if part)
            if isinstance(value, list) and all(isinstance(v, str) for v in value):
                return tuple(value)
            raise ValueError("expected a list of strings")
        if name == "log_format" and value not in ("text", "json"):
            raise ValueError("expected 'text' or 'json'")
        if name == "log_level" and str(value).upper() not in (
            "DEBUG",
            "INFO",
            "WARNING",
            "ERROR",
        ):
            raise ValueError("expected debug, info, warning or error")
        if name == "addr":
            ipaddress.ip_address(str(value))
        if not isinstance(value, str):
            raise ValueError("expected a string")
        return value
    except ValueError as exc:
        raise ConfigurationError(f"{where}: {exc} (got {value!r})") from None


def load_node_config(
    *,
    flags: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    config_file: Path | None = None,
    default_addr: str | None = None,
    sources: dict[str, str] | None = None,
) -> NodeConfig:
    """Merge the sources; `flags` holds only the options given on the command line. `sources`,
    when given, receives where each field's value came from (`--http-port`, `$CNM_HTTP_PORT`,
    `config file PATH`, `default`), for `cnm node run --check-config`."""
    merged: dict[str, Any] = {}
    origin: dict[str, str] = {}
    if config_file is not None:
        try:
            document = tomllib.loads(config_file.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigurationError(f"config file {config_file}: {exc}") from None
        for key, value in document.items():
            name = key.replace("-", "_")
            if name not in FIELD_NAMES:
                raise ConfigurationError(
                    f"config file {config_file}: unknown key {key!r} "
                    f"(known: {', '.join(FIELD_NAMES)})"
                )
            merged[name] = _coerce(name, value, f"config file {config_file}")
            origin[name] = f"config file {config_file}"
    environment = os.environ if env is None else env
    for name in FIELD_NAMES:
        variable = "CNM_" + name.upper()
        if variable in environment:
            merged[name] = _coerce(name, environment[variable], f"${variable}")
            origin[name] = f"${variable}"
    for name, value in (flags or {}).items():
        if value is not None:
            merged[name] = _coerce(name, value, f"--{name.replace('_', '-')}")
            origin[name] = f"--{name.replace('_', '-')}"
    if "addr" not in merged:
        if default_addr is None:
            raise ConfigurationError("addr: no address given and none could be found")
        merged["addr"] = default_addr
        origin["addr"] = "default (the address of the default route's interface)"
    if sources is not None:
        sources.update({name: origin.get(name, "default") for name in FIELD_NAMES})
    return NodeConfig(**merged)


def with_overrides(config: NodeConfig, **changes: Any) -> NodeConfig:
    return replace(config, **changes)
