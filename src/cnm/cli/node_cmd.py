"""`cnm node ...`: run the agent on this host, list or show the cluster's nodes, remove one.

`node run` is the agent itself (its options map one to one onto `NodeConfig`); `list` and
`show` are clients of GET /v1/nodes, `remove` of POST /v1/nodes/{uid}/actions/remove, like
every other command.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from cnm.cli import render
from cnm.cli.common import EXIT_API_ERROR, EXIT_USAGE, CliFailure, Target, client_command, logged_in
from cnm.config import ConfigurationError, load_node_config

node_app = typer.Typer(
    rich_markup_mode="markdown",
    help="This node: run the agent, list, show and remove nodes.",
    no_args_is_help=True,
)


@node_app.command("run")
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
    from cnm.daemon import run_agent
    from cnm.logs import configure_logging
    from cnm.node.facts import default_route_address

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
    sources: dict[str, str] = {}
    try:
        node_config = load_node_config(
            flags=flags, config_file=config, default_addr=default_route_address(), sources=sources
        )
    except ConfigurationError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if check_config:
        from cnm.ops.config_report import problems, report

        typer.echo(report(node_config, sources))
        found = problems(node_config)
        for problem in found:
            typer.echo(f"error: {problem}", err=True)
        typer.echo("configuration: " + (f"{len(found)} problem(s)" if found else "OK"))
        raise typer.Exit(2 if found else 0)
    configure_logging(
        level=node_config.log_level, log_format=node_config.log_format, addr=node_config.addr
    )
    raise typer.Exit(run_agent(node_config))


@node_app.command("list")
@client_command
def node_list(t: Target) -> None:
    r"""List the cluster's nodes: uid, address, rack, status, store role, memory, uptime.

    Example:

        CNM_PASSWORD=... cnm node list -u admin@example.com \
            --node https://10.0.0.1:9443 --ca-file ca.pem
    """
    with logged_in(t) as client:
        nodes = client.nodes()
    render.show(nodes, render.node_table, json_mode=t.json)


@node_app.command("show")
@client_command
def node_show(
    t: Target,
    uid: Annotated[int, typer.Argument(help="The node's uid", min=1, show_default=False)],
) -> None:
    r"""Show every field of one node.

    Example:

        CNM_PASSWORD=... cnm node show 2 -u admin@example.com \
            --node https://10.0.0.1:9443 --ca-file ca.pem
    """
    with logged_in(t) as client:
        document = client.node(uid)
    render.show(document, lambda d: render.document_panel(f"node {uid}", d), json_mode=t.json)


@node_app.command("remove")
@client_command
def node_remove(
    t: Target,
    uid: Annotated[int, typer.Argument(help="The node's uid", min=1, show_default=False)],
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Remove without asking for confirmation")
    ] = False,
) -> None:
    r"""Remove a node from the cluster: its store member leaves first, then its records; the
    node, if running, goes back to idle with its cluster data wiped and can join again (as a
    new node). Refused (exit 1) for the last node, or when the store would lose its quorum.

    Example:

        CNM_PASSWORD=... cnm node remove 3 --yes -u admin@example.com \
            --node https://10.0.0.1:9443 --ca-file ca.pem
    """
    if not yes:
        if not sys.stdin.isatty():
            raise CliFailure(
                f"removing node {uid} needs a confirmation: add --yes, or run in a terminal",
                EXIT_USAGE,
            )
        if not typer.confirm(f"Remove node {uid} from the cluster?", default=False, err=True):
            raise CliFailure(f"node {uid} was not removed", EXIT_API_ERROR)
    with logged_in(t) as client:
        document = client.remove_node(uid)
    render.show(document, render.removal_summary, json_mode=t.json)
