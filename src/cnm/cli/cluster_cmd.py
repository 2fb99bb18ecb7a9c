"""`cnm cluster ...`: create, join, recover and validate (the bootstrap actions), and info.

The bootstrap commands build the bootstrap object (docs/api-contract.md §2) from options and
POST it to the node named by --node; `--wait` then follows the node's status until it ends. The same
command functions serve `cnm cluster validate create|join`, which POSTs the body to
validate/{action} instead and changes nothing on the node.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import typer

from cnm.cli import render
from cnm.cli.common import Target, client_command, connect, logged_in, need_username, read_password
from cnm.cli.progress import wait_visibly
from cnm.client import CnmClient
from cnm.client_errors import ApiError

cluster_app = typer.Typer(
    rich_markup_mode="markdown",
    help="Create, join, recover or validate a cluster; show the cluster.",
    no_args_is_help=True,
)
validate_app = typer.Typer(
    rich_markup_mode="markdown",
    help="Check a create or join request on the node without changing anything.",
    no_args_is_help=True,
)
cluster_app.add_typer(validate_app, name="validate")

NODE_PANEL = "This node"

AddrOpt = Annotated[
    str | None,
    typer.Option(
        help="The node's internal address (must be one of its own)", rich_help_panel=NODE_PANEL
    ),
]
ExternalAddrOpt = Annotated[
    list[str] | None,
    typer.Option(help="An external address of the node (repeatable)", rich_help_panel=NODE_PANEL),
]
RackIdOpt = Annotated[str | None, typer.Option(help="The node's rack", rich_help_panel=NODE_PANEL)]
PersistentOpt = Annotated[
    str | None,
    typer.Option(help="Persistent storage path on the node", rich_help_panel=NODE_PANEL),
]
EphemeralOpt = Annotated[
    str | None,
    typer.Option(help="Ephemeral storage path on the node", rich_help_panel=NODE_PANEL),
]
WaitOpt = Annotated[
    bool,
    typer.Option(
        "--wait", help="Follow the bootstrap until it ends (not used by `cluster validate`)"
    ),
]
TimeoutOpt = Annotated[
    float,
    typer.Option(help="With --wait: give up watching after this many seconds (exit 3)", min=0),
]


@dataclass(frozen=True)
class Placement:
    """This node's place in the cluster, the options create and join share (an option group, see
    `cnm.cli.options`; recover takes three of them): the bootstrap body's `node` section."""

    rack_id: RackIdOpt = None
    addr: AddrOpt = None
    external_addr: ExternalAddrOpt = None
    persistent_path: PersistentOpt = None
    ephemeral_path: EphemeralOpt = None

    def section(self, uid: int | None = None) -> dict[str, Any]:
        identity: dict[str, Any] = {}
        if self.addr:
            identity["addr"] = self.addr
        if self.external_addr:
            identity["external_addr"] = list(self.external_addr)
        if self.rack_id:
            identity["rack_id"] = self.rack_id
        if uid is not None:
            identity["uid"] = uid
        paths = {
            k: v
            for k, v in (
                ("persistent_path", self.persistent_path),
                ("ephemeral_path", self.ephemeral_path),
            )
            if v
        }
        section: dict[str, Any] = {}
        if identity:
            section["identity"] = identity
        if paths:
            section["paths"] = paths
        return section


def _validating(ctx: typer.Context) -> bool:
    return ctx.parent is not None and ctx.parent.info_name == "validate"


def _submit(
    ctx: typer.Context,
    t: Target,
    action: str,
    body: dict[str, Any],
    node: dict[str, Any],
    *,
    wait: bool,
    timeout: float,
) -> None:
    """Send the body, with this node's section if it has one, as the user of its credentials."""
    if node:
        body["node"] = node
    user = body.get("credentials", {})
    with connect(t, username=user.get("username"), password=user.get("password")) as client:
        _send(ctx, t, client, action, body, wait=wait, timeout=timeout)


def _send(
    ctx: typer.Context,
    t: Target,
    client: CnmClient,
    action: str,
    body: dict[str, Any],
    *,
    wait: bool,
    timeout: float,
) -> None:
    """POST the action (or validate it), then wait or say how to follow it."""
    if _validating(ctx):
        client.validate(action, body)
        if t.json:
            render.print_json({})
        else:
            render.say(f"ok: {t.url} would accept this {action} request (nothing was changed)")
        return
    client.bootstrap(action, body)
    if not wait:
        if t.json:
            render.print_json(client.bootstrap_status())
        else:
            render.say(
                f"{action} accepted by {t.url}; it runs on the node. Follow it with:\n  "
                + t.command("bootstrap", "status", "--watch")
            )
        return
    document, took = wait_visibly(client, t, label=action, timeout=timeout)
    if t.json:
        render.print_json(document)
        return
    _summary(t, client, action, document, took)


def _summary(
    t: Target, client: CnmClient, action: str, document: dict[str, Any], took: float
) -> None:
    uid = document.get("local_node_info", {}).get("uid") or "?"
    try:
        cluster = client.cluster()
    except ApiError:
        cluster = {}
    name = cluster.get("name", "?")
    verb = {"create_cluster": "created", "join_cluster": "joined", "recover_cluster": "recovered"}
    out = render.console()
    out.print(
        render.key_values(
            f"cluster {verb.get(action, 'done')}",
            [("cluster", name), ("this node's uid", uid), ("took", f"{took:.1f} s")],
            style="green",
        )
    )
    fingerprint = cluster.get("ca_fingerprint")
    member = urlsplit(t.url).hostname or "ADDR"
    if action == "create_cluster" and fingerprint:
        render.say(
            "The node's HTTPS certificate now comes from the cluster CA: use --ca-file with "
            "DATA_DIR/tls/cluster/ca.pem from a node.\nJoin more nodes with:\n  "
            f"cnm cluster join --nodes {member} --username {t.username} --ca-fingerprint "
            f"{fingerprint} --node https://NEW_NODE:9443 --insecure --wait"
        )


@cluster_app.command("create")
@validate_app.command(
    "create",
    help="Check a create_cluster request without changing anything.\n\nExample:\n\n"
    "    cnm cluster validate create c1.example.com -u admin@example.com --node "
    "https://10.0.0.1:9443 --insecure",
)
@client_command
def create(
    ctx: typer.Context,
    t: Target,
    name: Annotated[str, typer.Argument(help="The cluster's name, an FQDN", show_default=False)],
    license_file: Annotated[
        Path | None,
        typer.Option(help="License file (else a 30-day trial)", exists=True, dir_okay=False),
    ] = None,
    rack_aware: Annotated[
        bool, typer.Option(help="Make the cluster rack-aware (for ever); needs --rack-id")
    ] = False,
    *,  # a group has no default: the options after it are keyword-only
    placement: Placement,
    wait: WaitOpt = False,
    timeout: TimeoutOpt = 120.0,
) -> None:
    r"""Create a new cluster on a fresh node; --username and the password make its admin.

    The password comes from $CNM_PASSWORD, the first line of stdin (--password-stdin) or a
    hidden prompt, never from a flag. A fresh node serves a self-signed certificate: use
    --insecure (or http://ADDR:8080) until the cluster exists.

    Examples:

        cnm cluster create c1.example.com -u admin@example.com \
            --node https://10.0.0.1:9443 --insecure --wait

        cat pw.txt | cnm cluster create c1.example.com -u admin@example.com \
            --password-stdin --rack-aware --rack-id r1 \
            --node http://10.0.0.1:8080 --wait
    """
    if rack_aware and not placement.rack_id:
        raise typer.BadParameter("a rack-aware cluster needs this node's --rack-id")
    admin = need_username(t, "the admin to create")
    password = read_password(t, what=f"the new admin {admin}", confirm=True)
    body: dict[str, Any] = {
        "cluster": {"name": name},
        "credentials": {"username": admin, "password": password},
    }
    if license_file is not None:
        body["license"] = license_file.read_text()
    if rack_aware:
        body["policy"] = {"rack_aware": True}
    _submit(ctx, t, "create_cluster", body, placement.section(), wait=wait, timeout=timeout)


@cluster_app.command("join")
@validate_app.command(
    "join",
    help="Check a join_cluster request without changing anything.\n\nExample:\n\n"
    "    cnm cluster validate join --nodes 10.0.0.1 -u admin@example.com --node "
    "https://10.0.0.2:9443 --insecure",
)
@client_command
def join(
    ctx: typer.Context,
    t: Target,
    nodes: Annotated[
        list[str],
        typer.Option(
            "--nodes",
            help="Address of a cluster member, or several comma-separated (repeatable)",
            show_default=False,
        ),
    ],
    ca_fingerprint: Annotated[
        str | None,
        typer.Option(help="Pin the cluster CA's SHA-256 fingerprint (`cnm cluster info` shows it)"),
    ] = None,
    replace_uid: Annotated[
        int | None, typer.Option(help="Replace the failed node with this uid", min=1)
    ] = None,
    override_repair: Annotated[
        bool,
        typer.Option(help="Add a new node although the cluster has failed nodes (repair_required)"),
    ] = False,
    *,
    placement: Placement,
    wait: WaitOpt = False,
    timeout: TimeoutOpt = 120.0,
) -> None:
    r"""Join the node named by --node to the cluster that --nodes belong to.

    --username and the password are those of an admin of the cluster. Pin the cluster with
    --ca-fingerprint so the node trusts only that cluster's CA.

    Examples:

        cnm cluster join --nodes 10.0.0.1 -u admin@example.com --ca-fingerprint AB:CD:... \
            --node https://10.0.0.2:9443 --insecure --wait

        cnm cluster join --nodes 10.0.0.1,10.0.0.3 -u admin@example.com --replace-uid 2 \
            --node http://10.0.0.4:8080 --wait
    """
    members = [part.strip() for item in nodes for part in item.split(",") if part.strip()]
    if not members:
        raise typer.BadParameter("give at least one cluster member's address", param_hint="--nodes")
    admin = need_username(t, "an admin of the cluster")
    password = read_password(t, what=f"the cluster admin {admin}")
    cluster: dict[str, Any] = {"nodes": members}
    if ca_fingerprint:
        cluster["ca_fingerprint"] = ca_fingerprint
    body: dict[str, Any] = {
        "cluster": cluster,
        "credentials": {"username": admin, "password": password},
    }
    if override_repair:
        body["override_repair"] = True
    _submit(
        ctx, t, "join_cluster", body, placement.section(uid=replace_uid), wait=wait, timeout=timeout
    )


@cluster_app.command("recover")
@client_command
def recover(
    ctx: typer.Context,
    t: Target,
    file: Annotated[
        str,
        typer.Option(
            "--file", help="The cluster-store backup to recover from (a path on the node)"
        ),
    ],
    uid: Annotated[int | None, typer.Option(help="The node uid to take", min=1)] = None,
    addr: AddrOpt = None,
    persistent_path: PersistentOpt = None,
    ephemeral_path: EphemeralOpt = None,
    wait: Annotated[
        bool, typer.Option("--wait/--no-wait", help="Follow the recovery until it ends")
    ] = True,
    timeout: TimeoutOpt = 300.0,
) -> None:
    r"""Recover a cluster that lost its store, on a fresh node, from a store backup.

    Waits for the outcome by default (recovery is rare and its result matters). --username and
    the password are those of the recovered cluster's admin.

    Example:

        cnm cluster recover --file /var/opt/redislabs/persist/ccs/snapshots/FILE.json \
            -u admin@example.com --node https://10.0.0.1:9443 --insecure
    """
    body: dict[str, Any] = {"recovery_filename": file}
    if t.username:
        password = read_password(t, what=f"the cluster admin {t.username}")
        body["credentials"] = {"username": t.username, "password": password}
    placement = Placement(addr=addr, persistent_path=persistent_path, ephemeral_path=ephemeral_path)
    _submit(ctx, t, "recover_cluster", body, placement.section(uid=uid), wait=wait, timeout=timeout)


@cluster_app.command("backup")
@client_command
def backup(t: Target) -> None:
    r"""Write a store snapshot now, into the node's ccs_persistent_path (what recover reads).

    Example:

        CNM_PASSWORD=... cnm cluster backup -u admin@example.com \
            --node https://10.0.0.1:9443 --ca-file ca.pem
    """
    with logged_in(t) as client:
        taken = client.cluster_backup()
    if t.json:
        render.print_json(taken)
        return
    rows = [
        ("file", taken.get("file")),
        ("time", taken.get("time")),
        ("revision", taken.get("revision")),
        ("node", taken.get("node_uid")),
    ]
    render.console().print(render.key_values("store snapshot written", rows))


@cluster_app.command("info")
@client_command
def info(t: Target) -> None:
    r"""Show the cluster: name, uuid, rack awareness, ports, CA fingerprint and node checks.

    Example:

        CNM_PASSWORD=... cnm cluster info -u admin@example.com \
            --node https://10.0.0.1:9443 --ca-file ca.pem
    """
    with logged_in(t) as client:
        cluster = client.cluster()
        if t.json:
            render.print_json(cluster)
            return
        check = client.cluster_check()
    checks = [
        f"node {n.get('node_uid')}: " + ("ok" if n.get("result") else str(n.get("error", "failed")))
        for n in check.get("nodes", [])
    ]
    rows = [
        ("name", cluster.get("name")),
        ("uuid", cluster.get("uuid")),
        ("created", cluster.get("created_time")),
        ("rack-aware", cluster.get("rack_aware")),
        (
            "API ports",
            f"https {cluster.get('cnm_https_port')}, http {cluster.get('cnm_http_port')}",
        ),
        ("CA fingerprint", cluster.get("ca_fingerprint")),
        ("last backup", cluster.get("last_backup_time") or "none yet"),
        ("check", render.styled("ok" if check.get("cluster_test_result") else "failed")),
        ("nodes", "; ".join(checks)),
    ]
    render.console().print(render.key_values(f"cluster {cluster.get('name', '')}", rows))
