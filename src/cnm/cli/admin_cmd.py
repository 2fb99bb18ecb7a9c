"""`cnm license ...` and `cnm user ...`: the cluster's licence and its users, over the API.

`cnm license issue` (making a licence offline) lives in `license_issue.py`, written separately;
it is attached to the `license` group when present.
"""

from __future__ import annotations

import importlib
import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from cnm.cli import render
from cnm.cli.common import (
    EXIT_USAGE,
    CaFileOpt,
    CliFailure,
    InsecureOpt,
    NodeOpt,
    OutputOpt,
    PasswordStdinOpt,
    UsernameOpt,
    api_command,
    logged_in,
    read_stdin_line,
    target,
)

license_app = typer.Typer(
    rich_markup_mode="markdown",
    help="The cluster's licence: show it, install one (and make licences offline).",
    no_args_is_help=True,
)
user_app = typer.Typer(
    rich_markup_mode="markdown", help="The cluster's users: list, add.", no_args_is_help=True
)

# The licence text and key are long and say nothing at a glance; `-o json` has them.
_LICENSE_HIDDEN = ("license", "key")


class Role(StrEnum):
    admin = "admin"
    cluster_member = "cluster_member"
    cluster_viewer = "cluster_viewer"
    db_member = "db_member"
    db_viewer = "db_viewer"
    user_manager = "user_manager"
    none = "none"


@license_app.command("show")
@api_command
def license_show(
    ctx: typer.Context,
    node: NodeOpt = None,
    username: UsernameOpt = None,
    password_stdin: PasswordStdinOpt = False,
    ca_file: CaFileOpt = None,
    insecure: InsecureOpt = False,
    output: OutputOpt = None,
) -> None:
    r"""Show the cluster's licence: owner, dates, limits, features.

    Example:

        CNM_PASSWORD=... cnm license show -u admin@example.com \
            --node https://10.0.0.1:9443 --ca-file ca.pem
    """
    t = target(ctx, node, username, password_stdin, ca_file, insecure, output)
    with logged_in(t) as client:
        document = client.license()
    if t.json:
        render.print_json(document)
    else:
        render.console().print(render.document_panel("licence", document, skip=_LICENSE_HIDDEN))


@license_app.command("install")
@api_command
def license_install(
    ctx: typer.Context,
    file: Annotated[
        Path,
        typer.Argument(
            help="The licence file", exists=True, dir_okay=False, readable=True, show_default=False
        ),
    ],
    node: NodeOpt = None,
    username: UsernameOpt = None,
    password_stdin: PasswordStdinOpt = False,
    ca_file: CaFileOpt = None,
    insecure: InsecureOpt = False,
    output: OutputOpt = None,
) -> None:
    r"""Install a licence on the cluster (PUT /v1/license); needs an admin or user manager.

    Example:

        CNM_PASSWORD=... cnm license install acme.license -u admin@example.com \
            --node https://10.0.0.1:9443 --ca-file ca.pem
    """
    t = target(ctx, node, username, password_stdin, ca_file, insecure, output)
    text = file.read_text()
    with logged_in(t) as client:
        answer = client.put_license(text)
        document = answer or client.license()
    if t.json:
        render.print_json(document)
        return
    render.say(f"licence from {file} installed")
    render.console().print(render.document_panel("licence", document, skip=_LICENSE_HIDDEN))


def _attach_license_issue() -> None:
    """`license issue` is another module's; the CLI works before it exists. An import error
    inside that module is not hidden."""
    name = "cnm.cli.license_issue"
    try:
        module = importlib.import_module(name)
    except ImportError as exc:
        if exc.name == name:
            return
        raise
    license_app.command("issue")(module.issue)
    if hasattr(module, "keygen"):
        license_app.command("keygen")(module.keygen)


_attach_license_issue()


@user_app.command("list")
@api_command
def user_list(
    ctx: typer.Context,
    node: NodeOpt = None,
    username: UsernameOpt = None,
    password_stdin: PasswordStdinOpt = False,
    ca_file: CaFileOpt = None,
    insecure: InsecureOpt = False,
    output: OutputOpt = None,
) -> None:
    r"""List the cluster's users: uid, name, email, role, status.

    Example:

        CNM_PASSWORD=... cnm user list -u admin@example.com \
            --node https://10.0.0.1:9443 --ca-file ca.pem
    """
    t = target(ctx, node, username, password_stdin, ca_file, insecure, output)
    with logged_in(t) as client:
        users = client.users()
    if t.json:
        render.print_json(users)
        return
    rows = [
        [u.get("uid"), u.get("name"), u.get("email"), u.get("role"), render.styled(u.get("status"))]
        for u in users
    ]
    render.console().print(render.table(("uid", "name", "email", "role", "status"), rows))


@user_app.command("add")
@api_command
def user_add(
    ctx: typer.Context,
    email: Annotated[
        str, typer.Option(help="The new user's email (its login)", show_default=False)
    ],
    role: Annotated[Role, typer.Option(help="The new user's role", show_default=False)],
    name: Annotated[str | None, typer.Option(help="The new user's display name")] = None,
    user_password_stdin: Annotated[
        bool,
        typer.Option(
            "--user-password-stdin",
            help="Read the new user's password from stdin (after the admin's line when "
            "--password-stdin is given too); else $CNM_NEW_PASSWORD, else a hidden prompt",
        ),
    ] = False,
    node: NodeOpt = None,
    username: UsernameOpt = None,
    password_stdin: PasswordStdinOpt = False,
    ca_file: CaFileOpt = None,
    insecure: InsecureOpt = False,
    output: OutputOpt = None,
) -> None:
    r"""Add a user to the cluster (POST /v1/users); needs an admin or user manager.

    Example:

        CNM_PASSWORD=... cnm user add --email ops@example.com --role cluster_viewer \
            -u admin@example.com --node https://10.0.0.1:9443 --ca-file ca.pem
    """
    t = target(ctx, node, username, password_stdin, ca_file, insecure, output)
    with logged_in(t) as client:
        # After the admin's password: with both --*-stdin flags the admin's line comes first.
        new_password = _new_user_password(email, from_stdin=user_password_stdin)
        document = client.add_user(email=email, password=new_password, role=role.value, name=name)
    if t.json:
        render.print_json(document)
        return
    render.say(f"user {email} added with role {role.value}")
    if document:
        render.console().print(render.document_panel(f"user {document.get('uid', '')}", document))


def _new_user_password(email: str, *, from_stdin: bool) -> str:
    if from_stdin:
        return read_stdin_line(f"the password of the new user {email}")
    from_env = os.environ.get("CNM_NEW_PASSWORD")
    if from_env:
        return from_env
    if sys.stdin.isatty():
        return str(
            typer.prompt(
                f"Password of the new user {email}",
                hide_input=True,
                confirmation_prompt=True,
                err=True,
            )
        )
    raise CliFailure(
        f"no password for the new user {email}: set CNM_NEW_PASSWORD, pipe it with "
        "--user-password-stdin, or run in a terminal to be prompted",
        EXIT_USAGE,
    )
