"""Starting the agent from `cnm node run` options, without Typer.

`start()` is what `cnm node run` does once its options are parsed: load the configuration,
print it (`--check-config`) or run the agent. `parse_plain()` reads the options of an ordinary
start (`--name value` or `--name=value`, each a known option) with no library at all: the agent
lives for months, and Typer (with its Click helpers) would stay loaded in it for a MiB and more.
Anything else (`--help`, `--check-config`, an unknown option, a value that is not a number
where one is expected) returns None, and cli/node_run.py parses it with Typer as always, with
Typer's help and error messages.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from cnm.config import ConfigurationError, load_node_config

# `cnm node run` option -> (NodeConfig field, type); the same options as cli/node_run.py.
OPTIONS: dict[str, tuple[str, type]] = {
    "--addr": ("addr", str),
    "--data-dir": ("data_dir", Path),
    "--http-port": ("http_port", int),
    "--https-port": ("https_port", int),
    "--etcd-client-port": ("etcd_client_port", int),
    "--etcd-peer-port": ("etcd_peer_port", int),
    "--etcd-binary": ("etcd_binary", str),
    "--persistent-path": ("persistent_path", Path),
    "--ephemeral-path": ("ephemeral_path", Path),
    "--bigstore-path": ("bigstore_path", Path),
    "--socket-dir": ("socket_dir", Path),
    "--conf-dir": ("conf_dir", Path),
    "--install-dir": ("install_dir", Path),
    "--os-user": ("os_user", str),
    "--log-level": ("log_level", str),
    "--log-format": ("log_format", str),
    "--config": ("config", Path),
}


def parse_plain(args: list[str]) -> tuple[dict[str, Any], Path | None] | None:
    """(flags, config file) of an ordinary start, or None: let Typer parse these arguments."""
    flags: dict[str, Any] = {field: None for field, _ in OPTIONS.values() if field != "config"}
    config: Path | None = None
    index = 0
    while index < len(args):
        name, equals, value = args[index].partition("=")
        if name not in OPTIONS:
            return None
        if not equals:
            if index + 1 >= len(args) or args[index + 1].startswith("-"):
                return None  # a missing value, or one Click might read differently
            value = args[index + 1]
            index += 1
        index += 1
        field, kind = OPTIONS[name]
        try:
            converted: Any = kind(value)
        except ValueError:
            return None
        if field == "config":
            config = converted
        else:
            flags[field] = converted
    return flags, config


def start(flags: dict[str, Any], config: Path | None, *, check_config: bool = False) -> int:
    """Load the configuration and check it or run the agent; the exit status."""
    from cnm.daemon import run_agent
    from cnm.logs import configure_logging
    from cnm.node.facts import default_route_address

    sources: dict[str, str] = {}
    try:
        node_config = load_node_config(
            flags=flags, config_file=config, default_addr=default_route_address(), sources=sources
        )
    except ConfigurationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if check_config:
        from cnm.ops.config_report import problems, report

        print(report(node_config, sources))
        found = problems(node_config)
        for problem in found:
            print(f"error: {problem}", file=sys.stderr)
        print("configuration: " + (f"{len(found)} problem(s)" if found else "OK"))
        return 2 if found else 0
    configure_logging(
        level=node_config.log_level, log_format=node_config.log_format, addr=node_config.addr
    )
    return run_agent(node_config)
