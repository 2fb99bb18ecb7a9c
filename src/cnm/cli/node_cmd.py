"""`cnm node ...`: run the agent on this host, list or show the cluster's nodes, remove one.

`node run` is the agent itself (its options map one to one onto `NodeConfig`); `list` and
`show` are clients of GET /v1/nodes, `remove` of POST /v1/nodes/{uid}/actions/remove, like
every other command.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from cnm.cli import render
from cnm.cli.common import EXIT_API_ERROR, EXIT_USAGE, CliFailure, Target, client_command, logged_in
from cnm.cli.node_run import node_run

node_app = typer.Typer(
    rich_markup_mode="markdown",
    help="This node: run the agent, list, show and remove nodes.",
    no_args_is_help=True,
)


node_app.command("run")(node_run)


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
