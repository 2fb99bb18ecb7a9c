"""The `cnm` command line: wires the command groups together and takes the global options.

`cnm node run` starts the agent; every other command is a thin client of the REST API through
`cnm.client` and never talks to etcd. Each group lives in its own module: `bootstrap_cmd`,
`cluster_cmd`, `node_cmd`, `admin_cmd` (licence and users), `local_cmd` (a local cluster);
`common` holds the shared options and exit codes, `render` the output.
"""

from __future__ import annotations

from typing import Annotated

import typer

from cnm import __version__
from cnm.cli.admin_cmd import license_app, user_app
from cnm.cli.bootstrap_cmd import bootstrap_app
from cnm.cli.cluster_cmd import cluster_app
from cnm.cli.common import (
    CaFileOpt,
    InsecureOpt,
    NodeOpt,
    OutputOpt,
    PasswordStdinOpt,
    UsernameOpt,
    global_options,
)
from cnm.cli.local_cmd import local_app
from cnm.cli.node_cmd import node_app

app = typer.Typer(
    rich_markup_mode="markdown",
    name="cnm",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(node_app, name="node")
app.add_typer(bootstrap_app, name="bootstrap")
app.add_typer(cluster_app, name="cluster")
app.add_typer(license_app, name="license")
app.add_typer(user_app, name="user")
app.add_typer(local_app, name="local")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"cnm {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    node: NodeOpt = None,
    username: UsernameOpt = None,
    password_stdin: PasswordStdinOpt = False,
    ca_file: CaFileOpt = None,
    insecure: InsecureOpt = False,
    output: OutputOpt = None,
    version: Annotated[
        bool | None,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version"),
    ] = None,
) -> None:
    r"""cnm: the cluster node manager (Redis Enterprise bootstrap API on etcd).

    The connection options work before the command or after it. Exit codes: 0 done, 1 the
    server reported an error, 2 usage, 3 --wait timed out, 4 the node cannot be reached.

    Examples:

        cnm local up

        cnm --node https://10.0.0.1:9443 --insecure bootstrap status

        CNM_PASSWORD=... cnm node list -u admin@example.com \
            --node https://10.0.0.1:9443 --ca-file ca.pem
    """
    global_options(ctx, node, username, password_stdin, ca_file, insecure, output)


def main() -> None:
    app()
