"""The `cnm` command line (every command but a bare `cnm node run`, see `cnm.cli.main`): wires
the command groups together and takes the global options.

`cnm node run` starts the agent; every other command is a thin client of the REST API through
`cnm.client` and never talks to etcd. Each group lives in its own module: `bootstrap_cmd`,
`cluster_cmd`, `node_cmd`, `admin_cmd` (license and users), `local_cmd` (a local cluster);
`options` declares the shared options, `common` resolves them and holds the exit codes,
`render` the output.
"""

from __future__ import annotations

from typing import Annotated

import typer

from cnm import __version__
from cnm.cli.admin_cmd import license_app, user_app
from cnm.cli.bootstrap_cmd import bootstrap_app
from cnm.cli.cluster_cmd import cluster_app
from cnm.cli.local_cmd import local_app
from cnm.cli.node_cmd import node_app
from cnm.cli.options import Flags, option_groups

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
@option_groups
def root(
    ctx: typer.Context,
    flags: Flags,
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
    # For `target` to merge with the command's own (the command's win).
    ctx.obj = flags
