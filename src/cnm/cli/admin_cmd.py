"""`cnm license ...` and `cnm user ...`: the cluster's license and its users, over the API.

`cnm license issue` (making a license offline) lives in `license_issue.py`, written separately;
it is attached to the `license` group when present.
"""

from __future__ import annotations

import importlib
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.panel import Panel
from rich.table import Table

from cnm.cli import render
from cnm.cli.common import Target, client_command, logged_in, read_secret

license_app = typer.Typer(
    rich_markup_mode="markdown",
    help="The cluster's license: show it, install one (and make licenses offline).",
    no_args_is_help=True,
)
user_app = typer.Typer(
    rich_markup_mode="markdown", help="The cluster's users: list, add.", no_args_is_help=True
)


class Role(StrEnum):
    admin = "admin"
    cluster_member = "cluster_member"
    cluster_viewer = "cluster_viewer"
    db_member = "db_member"
    db_viewer = "db_viewer"
    user_manager = "user_manager"
    none = "none"


@license_app.command("show")
@client_command
def license_show(t: Target) -> None:
    r"""Show the cluster's license: owner, dates, limits, features.

    Example:

        CNM_PASSWORD=... cnm license show -u admin@example.com \
            --node https://10.0.0.1:9443 --ca-file ca.pem
    """
    with logged_in(t) as client:
        document = client.license()
    render.show(document, _license_panel, json_mode=t.json)


@license_app.command("install")
@client_command
def license_install(
    t: Target,
    file: Annotated[
        Path,
        typer.Argument(
            help="The license file", exists=True, dir_okay=False, readable=True, show_default=False
        ),
    ],
) -> None:
    r"""Install a license on the cluster (PUT /v1/license); needs an admin or user manager.

    Example:

        CNM_PASSWORD=... cnm license install acme.license -u admin@example.com \
            --node https://10.0.0.1:9443 --ca-file ca.pem
    """
    text = file.read_text()
    with logged_in(t) as client:
        answer = client.put_license(text)
        document = answer or client.license()
    if t.json:
        render.print_json(document)
        return
    render.say(f"license from {file} installed")
    render.console().print(_license_panel(document))


def _license_panel(document: dict[str, Any]) -> Panel:
    # The license text and key are long and say nothing at a glance; `-o json` has them.
    return render.document_panel("license", document, skip=("license", "key"))


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
@client_command
def user_list(t: Target) -> None:
    r"""List the cluster's users: uid, name, email, role, status.

    Example:

        CNM_PASSWORD=... cnm user list -u admin@example.com \
            --node https://10.0.0.1:9443 --ca-file ca.pem
    """
    with logged_in(t) as client:
        users = client.users()
    render.show(users, _user_table, json_mode=t.json)


def _user_table(users: list[dict[str, Any]]) -> Table:
    rows = [
        [u.get("uid"), u.get("name"), u.get("email"), u.get("role"), render.styled(u.get("status"))]
        for u in users
    ]
    return render.table(("uid", "name", "email", "role", "status"), rows)


@user_app.command("add")
@client_command
def user_add(
    t: Target,
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
) -> None:
    r"""Add a user to the cluster (POST /v1/users); needs an admin or user manager.

    Example:

        CNM_PASSWORD=... cnm user add --email ops@example.com --role cluster_viewer \
            -u admin@example.com --node https://10.0.0.1:9443 --ca-file ca.pem
    """
    with logged_in(t) as client:
        # After the admin's password: with both --*-stdin flags the admin's line comes first.
        new_password = read_secret(
            f"the new user {email}",
            from_stdin=user_password_stdin,
            env="CNM_NEW_PASSWORD",
            flag="--user-password-stdin",
            confirm=True,
        )
        document = client.add_user(email=email, password=new_password, role=role.value, name=name)
    if t.json:
        render.print_json(document)
        return
    render.say(f"user {email} added with role {role.value}")
    if document:
        render.console().print(render.document_panel(f"user {document.get('uid', '')}", document))


@user_app.command("unlock")
@client_command
def user_unlock(
    t: Target,
    uid: Annotated[int, typer.Argument(help="The locked user's uid (see `cnm user list`)")],
    client: Annotated[
        str | None,
        typer.Option(help="Unlock only this client address (default: every address)"),
    ] = None,
) -> None:
    r"""Unlock a user locked out after failed sign-ins (POST /v1/users/{uid}/unlock); needs an
    admin or user manager.

    Example:

        CNM_PASSWORD=... cnm user unlock 3 --client 10.0.0.9 \
            -u admin@example.com --node https://10.0.0.1:9443 --ca-file ca.pem
    """
    with logged_in(t) as client_api:
        unlocked = client_api.unlock_user(uid, client)
    if t.json:
        render.print_json({"unlocked": unlocked})
        return
    if unlocked:
        render.say(f"user {uid} unlocked from {', '.join(unlocked)}")
    else:
        render.say(f"user {uid} had no failed sign-ins to forget")
