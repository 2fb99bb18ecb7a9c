"""The options of the client commands, declared once, and how a command takes a group of options
as one parameter.

Typer reads a command's options off its signature, so six connection options on a dozen commands
would be six parameters written a dozen times. Instead a command declares one parameter whose
annotation is a dataclass of options (`Flags`, the connection options; `cluster_cmd.Placement`);
`option_groups` shows typer the dataclass's fields in its place and hands the command the
dataclass built from them.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from cnm.client import DEFAULT_URL

CONNECTION = "Connection"

R = TypeVar("R")


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
class Flags:
    """The connection options as one command line gave them (None or False: not given). The
    field annotations are the options' typer declarations, for `option_groups`."""

    node: NodeOpt = None
    username: UsernameOpt = None
    password_stdin: PasswordStdinOpt = False
    ca_file: CaFileOpt = None
    insecure: InsecureOpt = False
    output: OutputOpt = None


def set_signature(function: Callable[..., R], parameters: list[inspect.Parameter]) -> None:
    """Make typer see `parameters` as the wrapper `function`'s own."""
    # Typer reads both the signature and the annotations (through typing.get_type_hints).
    signature = inspect.Signature(parameters, return_annotation=None)
    function.__signature__ = signature  # type: ignore[attr-defined]
    function.__annotations__ = {p.name: p.annotation for p in parameters} | {"return": None}


def _is_group(annotation: Any) -> bool:
    return isinstance(annotation, type) and dataclasses.is_dataclass(annotation)


def _default(field: dataclasses.Field[Any]) -> Any:
    return inspect.Parameter.empty if field.default is dataclasses.MISSING else field.default


def option_groups(function: Callable[..., R]) -> Callable[..., R]:
    """Let a command take a group of options as one parameter annotated with a dataclass whose
    fields are typer declarations (`Flags`, ...): typer sees the fields' options where that
    parameter stands, and the command gets the dataclass back."""
    typer_view: list[inspect.Parameter] = []
    groups: dict[str, type[Any]] = {}
    # All keyword-only (typer passes every parameter by name), so that a group's options, which
    # have defaults, may stand before a parameter without one.
    keyword = inspect.Parameter.KEYWORD_ONLY
    for parameter in inspect.signature(function, eval_str=True).parameters.values():
        group = parameter.annotation
        if not _is_group(group):
            typer_view.append(parameter.replace(kind=keyword))
            continue
        groups[parameter.name] = group
        declarations = typing.get_type_hints(group, include_extras=True)
        typer_view += [
            inspect.Parameter(f.name, keyword, default=_default(f), annotation=declarations[f.name])
            for f in dataclasses.fields(group)
        ]

    @functools.wraps(function)
    def command(**kwargs: Any) -> R:
        for name, group in groups.items():
            kwargs[name] = group(**{f.name: kwargs.pop(f.name) for f in dataclasses.fields(group)})
        return function(**kwargs)

    set_signature(command, typer_view)
    return command
