"""`cnm bootstrap status`: a node's bootstrap state and facts, once or until the bootstrap ends."""

from __future__ import annotations

from typing import Annotated

import typer

from cnm.cli import render
from cnm.cli.common import Target, client_command, connect, read_password
from cnm.cli.progress import wait_visibly

bootstrap_app = typer.Typer(
    rich_markup_mode="markdown",
    help="A node's bootstrap: its state, progress and facts.",
    no_args_is_help=True,
)


@bootstrap_app.command("status")
@client_command
def status(
    t: Target,
    watch: Annotated[
        bool, typer.Option("--watch", "-w", help="Refresh until the state is completed or error")
    ] = False,
    timeout: Annotated[
        float | None,
        typer.Option(help="With --watch: give up after this many seconds (exit 3)", min=0),
    ] = None,
) -> None:
    r"""Show the node's bootstrap state and its facts (memory, cores, paths, addresses).

    Before the node is in a cluster no credentials are needed; after it, give --username (the
    password from $CNM_PASSWORD, --password-stdin or the prompt). With --watch it follows a
    create, join or recover until it completes (exit 0) or fails (exit 1).

    Examples:

        cnm bootstrap status --node https://10.0.0.1:9443 --insecure

        cnm bootstrap status --node http://10.0.0.1:8080 --watch

        cnm bootstrap status --node https://10.0.0.1:9443 --ca-file ca.pem \
            -u admin@example.com -o json
    """
    # Credentials only when a user is named: a fresh node needs none, and prompting for them
    # would stop a script that only wants to know whether the node is idle.
    password = read_password(t, what=t.username) if t.username else None
    with connect(t, username=t.username, password=password) as client:
        if watch:
            document, _ = wait_visibly(
                client, t, label="bootstrap", timeout=float("inf") if timeout is None else timeout
            )
        else:
            document = client.bootstrap_status()
    render.show(document, render.bootstrap_panel, json_mode=t.json)
