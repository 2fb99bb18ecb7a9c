"""What every client command shares: the connection options, their resolution, credentials, and
the one place where client errors become messages and exit codes.

The connection options are accepted both before the command (`cnm --node URL node list`, the
root callback stores them) and after it (`cnm node list --node URL`); the command's own value
wins, then the global one, then the environment (`CNM_NODE`, `CNM_USERNAME`, `CNM_PASSWORD`),
then the default. Passwords never come from a flag value: `CNM_PASSWORD`, one line of stdin
(`--password-stdin`) or a hidden prompt.

Exit codes (the README documents them): 0 done, 1 the server reported an error (or a local
operation failed), 2 usage, 3 `--wait` timed out, 4 the node cannot be reached, 130 interrupted.
"""

from __future__ import annotations

import functools
import os
import shlex
import sys
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, ParamSpec, TypeVar

import typer

from cnm.client import (
    DEFAULT_URL,
    ApiError,
    ClientError,
    CnmClient,
    Unreachable,
    WaitTimeout,
    tls_verify,
)

EXIT_API_ERROR = 1
EXIT_USAGE = 2
EXIT_TIMEOUT = 3
EXIT_UNREACHABLE = 4
EXIT_INTERRUPTED = 130

CONNECTION = "Connection"

P = ParamSpec("P")
R = TypeVar("R")


class CliFailure(Exception):
    """A failure the CLI reports itself (a local cluster that will not start, ...)."""

    def __init__(self, message: str, exit_code: int = EXIT_API_ERROR) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


class Output(StrEnum):
    table = "table"
    json = "json"


NodeOpt = Annotated[
    str | None,
    typer.Option(
        "--node",
        help=f"The node's API URL [env CNM_NODE; default {DEFAULT_URL}]",
        rich_help_panel=CONNECTION,
        show_default=False,
    ),
]
UsernameOpt = Annotated[
    str | None,
    typer.Option(
        "--username",
        "-u",
        help="Cluster user (email or name) [env CNM_USERNAME]",
        rich_help_panel=CONNECTION,
        show_default=False,
    ),
]
PasswordStdinOpt = Annotated[
    bool,
    typer.Option(
        "--password-stdin",
        help="Read the password from the first line of stdin (else $CNM_PASSWORD, else a "
        "hidden prompt)",
        rich_help_panel=CONNECTION,
    ),
]
CaFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--ca-file",
        help="Verify HTTPS with this CA: the cluster CA, DATA_DIR/tls/cluster/ca.pem on a node",
        rich_help_panel=CONNECTION,
        show_default=False,
        exists=True,
        dir_okay=False,
        readable=True,
    ),
]
InsecureOpt = Annotated[
    bool,
    typer.Option(
        "--insecure",
        "-k",
        help="Do not verify HTTPS. A fresh node serves a self-signed certificate and needs "
        "this (or http://ADDR:8080) until its cluster exists",
        rich_help_panel=CONNECTION,
    ),
]
OutputOpt = Annotated[
    Output | None,
    typer.Option(
        "--output",
        "-o",
        help="table (readable) or json (the API's own document, for scripts) [default: table]",
        rich_help_panel=CONNECTION,
        show_default=False,
        case_sensitive=False,
    ),
]


@dataclass(frozen=True)
class Target:
    """The resolved connection settings of one command."""

    url: str
    username: str | None
    password_stdin: bool
    ca_file: Path | None
    insecure: bool
    output: Output

    @property
    def json(self) -> bool:
        return self.output is Output.json

    def flags(self) -> list[str]:
        """The options that reach this node again, for the commands we suggest."""
        flags = ["--node", self.url]
        if self.insecure:
            flags.append("--insecure")
        elif self.ca_file is not None:
            flags += ["--ca-file", str(self.ca_file)]
        if self.username:
            flags += ["--username", self.username]
        return flags

    def command(self, *words: str) -> str:
        return shlex.join(["cnm", *words, *self.flags()])


def global_options(
    ctx: typer.Context,
    node: NodeOpt = None,
    username: UsernameOpt = None,
    password_stdin: PasswordStdinOpt = False,
    ca_file: CaFileOpt = None,
    insecure: InsecureOpt = False,
    output: OutputOpt = None,
) -> None:
    """Stores the options given before the command, for `target` to merge."""
    ctx.obj = {
        "node": node,
        "username": username,
        "password_stdin": password_stdin,
        "ca_file": ca_file,
        "insecure": insecure,
        "output": output,
    }


def target(
    ctx: typer.Context,
    node: str | None,
    username: str | None,
    password_stdin: bool,
    ca_file: Path | None,
    insecure: bool,
    output: Output | None,
) -> Target:
    """The command's connection settings: its own options, else those given before the command,
    else the environment, else the defaults."""
    given = ctx.find_root().obj or {}
    if (ca_file or given.get("ca_file")) and (insecure or given.get("insecure")):
        raise CliFailure("--ca-file and --insecure exclude each other", EXIT_USAGE)
    resolved = Target(
        url=(node or given.get("node") or os.environ.get("CNM_NODE") or DEFAULT_URL).rstrip("/"),
        username=username or given.get("username") or os.environ.get("CNM_USERNAME") or None,
        password_stdin=password_stdin or bool(given.get("password_stdin")),
        ca_file=ca_file or given.get("ca_file"),
        insecure=insecure or bool(given.get("insecure")),
        output=output or given.get("output") or Output.table,
    )
    if not resolved.url.startswith(("http://", "https://")):
        raise CliFailure(
            f"--node {resolved.url!r}: expected a URL such as https://10.0.0.1:9443 or "
            "http://10.0.0.1:8080",
            EXIT_USAGE,
        )
    # The error handler prints a JSON error document in json mode.
    ctx.find_root().meta["cnm.output"] = resolved.output
    return resolved


# --- credentials --------------------------------------------------------------------------------


def read_stdin_line(what: str) -> str:
    line = sys.stdin.readline()
    value = line.rstrip("\r\n")
    if not value:
        raise CliFailure(f"expected {what} on stdin (one line), got nothing", EXIT_USAGE)
    return value


def need_username(t: Target, what: str = "the cluster user to log in as") -> str:
    if t.username:
        return t.username
    if sys.stdin.isatty():
        return str(typer.prompt(f"Username ({what})", err=True))
    raise CliFailure(f"--username is required: {what} (or set CNM_USERNAME)", EXIT_USAGE)


def read_password(t: Target, *, what: str, confirm: bool = False) -> str:
    """The password of `what`: stdin if asked for, else $CNM_PASSWORD, else a hidden prompt."""
    if t.password_stdin:
        return read_stdin_line(f"the password of {what}")
    from_env = os.environ.get("CNM_PASSWORD")
    if from_env:
        return from_env
    if sys.stdin.isatty():
        return str(
            typer.prompt(
                f"Password of {what}", hide_input=True, confirmation_prompt=confirm, err=True
            )
        )
    raise CliFailure(
        f"no password for {what}: set CNM_PASSWORD, pipe it with --password-stdin, or run in "
        "a terminal to be prompted",
        EXIT_USAGE,
    )


def connect(t: Target, *, username: str | None = None, password: str | None = None) -> CnmClient:
    return CnmClient(
        t.url,
        username=username,
        password=password,
        verify=tls_verify(ca_file=t.ca_file, insecure=t.insecure),
    )


def logged_in(t: Target) -> CnmClient:
    """A client with the user's credentials, for the routes that need a cluster."""
    username = need_username(t)
    return connect(t, username=username, password=read_password(t, what=username))


# --- errors -------------------------------------------------------------------------------------


def report(error: Exception, *, json_mode: bool = False) -> int:
    """Print a client error or CliFailure as the CLI shows it; the exit code it stands for. In
    json mode the server's error document also goes to stdout, for scripts."""
    from cnm.cli import render

    if isinstance(error, ApiError):
        if json_mode and error.document is not None:
            render.print_json(error.document)
        render.print_api_error(error)
        return EXIT_API_ERROR
    if isinstance(error, Unreachable):
        render.print_problem(str(error))
        return EXIT_UNREACHABLE
    if isinstance(error, WaitTimeout):
        render.print_problem(str(error))
        return EXIT_TIMEOUT
    if isinstance(error, CliFailure):
        render.print_problem(error.message)
        return error.exit_code
    raise error


def api_command(function: Callable[P, R]) -> Callable[P, R]:
    """Run a command, turning client errors into a message on stderr and the exit code; the
    server's errors never show a traceback."""

    @functools.wraps(function)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return function(*args, **kwargs)
        except (ClientError, CliFailure) as error:
            raise typer.Exit(report(error, json_mode=_json_mode(kwargs.get("ctx")))) from None
        except KeyboardInterrupt:
            from cnm.cli import render

            render.print_problem("interrupted")
            raise typer.Exit(EXIT_INTERRUPTED) from None

    return wrapper


def resolve_output(ctx: typer.Context, output: Output | None) -> Output:
    """For commands without the connection options (`cnm local ...`)."""
    resolved: Output = output or (ctx.find_root().obj or {}).get("output") or Output.table
    ctx.find_root().meta["cnm.output"] = resolved
    return resolved


def _json_mode(ctx: object) -> bool:
    # Typer passes the context by keyword (a click Context, not always a typer.Context);
    # `target` recorded the output mode in the root's meta.
    find_root = getattr(ctx, "find_root", None)
    return find_root is not None and find_root().meta.get("cnm.output") is Output.json
