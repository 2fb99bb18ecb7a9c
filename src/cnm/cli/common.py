"""What every client command shares: the resolution of the connection options (declared in
`options`), credentials, and the one place where client errors become messages and exit codes.

The connection options are accepted both before the command (`cnm --node URL node list`, the
root callback stores them) and after it (`cnm node list --node URL`); the command's own value
wins, then the global one, then the environment (`CNM_NODE`, `CNM_USERNAME`, `CNM_PASSWORD`),
then the default. Passwords never come from a flag value: `CNM_PASSWORD`, one line of stdin
(`--password-stdin`) or a hidden prompt.

A client command takes them resolved, as its one parameter `t: Target` (`client_command`);
typer sees the six options in its place.

Exit codes (the README documents them): 0 done, 1 the server reported an error (or a local
operation failed), 2 usage, 3 `--wait` timed out, 4 the node cannot be reached, 130 interrupted.
"""

from __future__ import annotations

import functools
import inspect
import os
import shlex
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import typer

from cnm.cli.options import Flags, Output, option_groups, set_signature
from cnm.client import DEFAULT_URL, CnmClient, tls_verify
from cnm.client_errors import ApiError, ClientError, Unreachable, WaitTimeout

EXIT_API_ERROR = 1
EXIT_USAGE = 2
EXIT_TIMEOUT = 3
EXIT_UNREACHABLE = 4
EXIT_INTERRUPTED = 130

P = ParamSpec("P")
R = TypeVar("R")


class CliFailure(Exception):
    """A failure the CLI reports itself (a local cluster that will not start, ...)."""

    def __init__(self, message: str, exit_code: int = EXIT_API_ERROR) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


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


def _given(ctx: typer.Context) -> Flags:
    """The connection options given before the command (the root callback stored them)."""
    given = ctx.find_root().obj
    return given if isinstance(given, Flags) else Flags()


def target(ctx: typer.Context, own: Flags) -> Target:
    """The command's connection settings: its own options, else those given before the command,
    else the environment, else the defaults."""
    given = _given(ctx)
    if (own.ca_file or given.ca_file) and (own.insecure or given.insecure):
        raise CliFailure("--ca-file and --insecure exclude each other", EXIT_USAGE)
    resolved = Target(
        url=(own.node or given.node or os.environ.get("CNM_NODE") or DEFAULT_URL).rstrip("/"),
        username=own.username or given.username or os.environ.get("CNM_USERNAME") or None,
        password_stdin=own.password_stdin or given.password_stdin,
        ca_file=own.ca_file or given.ca_file,
        insecure=own.insecure or given.insecure,
        output=own.output or given.output or Output.table,
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
    return read_secret(
        what,
        from_stdin=t.password_stdin,
        env="CNM_PASSWORD",
        flag="--password-stdin",
        confirm=confirm,
    )


def read_secret(what: str, *, from_stdin: bool, env: str, flag: str, confirm: bool) -> str:
    """The password of `what`: one line of stdin if `flag` was given, else $`env`, else a hidden
    prompt (`confirm`: typed twice) when there is a terminal to ask on."""
    if from_stdin:
        return read_stdin_line(f"the password of {what}")
    from_env = os.environ.get(env)
    if from_env:
        return from_env
    if sys.stdin.isatty():
        return str(
            typer.prompt(
                f"Password of {what}", hide_input=True, confirmation_prompt=confirm, err=True
            )
        )
    raise CliFailure(
        f"no password for {what}: set {env}, pipe it with {flag}, or run in a terminal to be "
        "prompted",
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


def client_command(function: Callable[..., R]) -> Callable[..., R]:
    """A command that talks to a node. It takes `t: Target` where typer sees the connection
    options (the fields of `Flags`), and `ctx` if it needs the context; `target` resolves the
    options before it runs. Errors are reported as by `api_command`."""
    declared = inspect.signature(function, eval_str=True).parameters.values()
    wants_ctx = any(p.name == "ctx" for p in declared)

    @functools.wraps(function)
    def command(ctx: typer.Context, t: Flags, **kwargs: Any) -> R:
        if wants_ctx:
            kwargs["ctx"] = ctx
        return function(t=target(ctx, t), **kwargs)

    keyword = inspect.Parameter.KEYWORD_ONLY
    # `target` needs the context even when the command does not.
    context = [] if wants_ctx else [inspect.Parameter("ctx", keyword, annotation=typer.Context)]
    own = [p.replace(kind=keyword) for p in declared if p.name != "t"]
    # The connection options last, after any other group: "Connection" ends the help.
    connection = inspect.Parameter("t", keyword, annotation=Flags)
    set_signature(command, [*context, *own, connection])
    return api_command(option_groups(command))


def resolve_output(ctx: typer.Context, output: Output | None) -> Output:
    """For commands without the connection options (`cnm local ...`)."""
    resolved: Output = output or _given(ctx).output or Output.table
    ctx.find_root().meta["cnm.output"] = resolved
    return resolved


def _json_mode(ctx: object) -> bool:
    # Typer passes the context by keyword (a click Context, not always a typer.Context);
    # `target` recorded the output mode in the root's meta.
    find_root = getattr(ctx, "find_root", None)
    return find_root is not None and find_root().meta.get("cnm.output") is Output.json
