"""`cnm node run`: the agent itself, its options mapping one to one onto `NodeConfig`.

Its own module, importing nothing of the client side: the agent is started through
`cnm.cli.main`, which hands `cnm node run ...` straight to `run_app` below, so a running agent
never loads the other commands, the REST client or rich (memory it would keep for its whole
life, and start-up time). An ordinary start does not even get here: cli/agent_start.py reads
its options without Typer; this module parses the rest (help, --check-config, mistakes).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def node_run(
    addr: Annotated[
        str | None,
        typer.Option(help="The node's internal address [default: the default route's address]"),
    ] = None,
    data_dir: Annotated[Path | None, typer.Option(help="State directory [/var/opt/cnm]")] = None,
    http_port: Annotated[int | None, typer.Option(help="HTTP port [8080]")] = None,
    https_port: Annotated[int | None, typer.Option(help="HTTPS port [9443]")] = None,
    etcd_client_port: Annotated[int | None, typer.Option(help="etcd client port [2379]")] = None,
    etcd_peer_port: Annotated[int | None, typer.Option(help="etcd peer port [2380]")] = None,
    etcd_binary: Annotated[str | None, typer.Option(help="etcd executable [etcd]")] = None,
    persistent_path: Annotated[Path | None, typer.Option(help="Default persistent path")] = None,
    ephemeral_path: Annotated[Path | None, typer.Option(help="Default ephemeral path")] = None,
    bigstore_path: Annotated[Path | None, typer.Option(help="Default flash path")] = None,
    socket_dir: Annotated[Path | None, typer.Option(help="Socket directory")] = None,
    conf_dir: Annotated[Path | None, typer.Option(help="Configuration directory")] = None,
    install_dir: Annotated[Path | None, typer.Option(help="Installation directory")] = None,
    os_user: Annotated[str | None, typer.Option(help="OS user of the services")] = None,
    log_level: Annotated[str | None, typer.Option(help="debug, info, warning, error")] = None,
    log_format: Annotated[str | None, typer.Option(help="text or json")] = None,
    config: Annotated[Path | None, typer.Option(help="TOML file with these options")] = None,
    check_config: Annotated[
        bool,
        typer.Option(
            "--check-config",
            help="Print the effective configuration and where each value came from, check it, "
            "and exit (0: fine, 2: a bad value) without starting anything",
        ),
    ] = False,
) -> None:
    """Run the node agent: the bootstrap API on HTTP and HTTPS, and the node's etcd member.

    Example: cnm node run --addr 127.0.0.2 --data-dir /tmp/n1 --persistent-path /tmp/n1/persist

    Check a configuration without starting: cnm node run --config /etc/cnm/cnm.toml --check-config
    """
    from cnm.cli.agent_start import start

    flags = {
        "addr": addr,
        "data_dir": data_dir,
        "http_port": http_port,
        "https_port": https_port,
        "etcd_client_port": etcd_client_port,
        "etcd_peer_port": etcd_peer_port,
        "etcd_binary": etcd_binary,
        "persistent_path": persistent_path,
        "ephemeral_path": ephemeral_path,
        "bigstore_path": bigstore_path,
        "socket_dir": socket_dir,
        "conf_dir": conf_dir,
        "install_dir": install_dir,
        "os_user": os_user,
        "log_level": log_level,
        "log_format": log_format,
    }
    raise typer.Exit(start(flags, config, check_config=check_config))


def run_app(args: list[str]) -> None:
    """`cnm node run ARGS`: the one command as an app of its own (same options and help)."""
    app = typer.Typer(rich_markup_mode="markdown", add_completion=False)
    app.command()(node_run)
    app(args=args, prog_name="cnm node run")
