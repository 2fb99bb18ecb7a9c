"""`cnm local up|status|down`: a whole cluster on this machine in one command.

`up` starts N agents on consecutive loopback addresses (`local_cluster` owns the processes),
creates the cluster on the first through the API and joins the others concurrently
(`local_api`), exactly as an operator would with `cnm cluster create|join`. A directory that
already holds a stopped local cluster is started again from its data. `down` stops the agents
it recorded; `status` shows them.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer

from cnm.cli import local_api, render
from cnm.cli.common import EXIT_INTERRUPTED, CliFailure, api_command, report, resolve_output
from cnm.cli.local_cluster import (
    LocalCluster,
    LocalNode,
    addresses,
    check_loopback,
    check_ports,
    stop_all,
)
from cnm.cli.options import Output, OutputOpt
from cnm.client_errors import ClientError
from cnm.node.data_dir import LocalClusterDir


def cnm_command() -> str:
    """The `cnm` running now, as a command that works when pasted into a shell: after the
    README's set-up `cnm` is `.venv/bin/cnm`, which is not on PATH, so a bare `cnm` would not."""
    invoked = sys.argv[0] if sys.argv else ""
    if os.path.basename(invoked) == "cnm" and os.path.isfile(invoked):
        path = os.path.abspath(invoked)
    else:
        # `python -m cnm`: the console script installed beside this interpreter, if any.
        beside = os.path.join(os.path.dirname(sys.executable), "cnm")
        if not os.path.isfile(beside):
            return f"{shlex.quote(sys.executable)} -m cnm"
        path = beside
    on_path = shutil.which("cnm")
    if on_path is not None and os.path.realpath(on_path) == os.path.realpath(path):
        return "cnm"
    return shlex.quote(path)


local_app = typer.Typer(
    rich_markup_mode="markdown",
    help="A local cluster of agents on 127.0.0.x: up, status, down.",
    no_args_is_help=True,
)

DirOpt = Annotated[
    Path, typer.Option("--dir", help="The local cluster's directory (data, logs, state)")
]
DEFAULT_DIR = Path(".cnm-local")


def _report(cluster: LocalCluster, output: Output, *, states: dict[str, str] | None = None) -> None:
    """The node table, the agents with their URLs and logs, and how to use the cluster."""
    nodes = local_api.cluster_nodes(cluster)
    ca_file = cluster.nodes[0].ca_file
    if output is Output.json:
        render.print_json(
            {
                "directory": str(cluster.directory),
                "name": cluster.name,
                "username": cluster.username,
                "password_file": str(cluster.password_file),
                "ca_file": str(ca_file),
                "agents": [
                    {
                        **asdict(node),
                        "running": node.process() is not None,
                        "state": (states or {}).get(node.name),
                        "http_url": node.http_url,
                        "https_url": node.https_url,
                        "log": str(node.log),
                    }
                    for node in cluster.nodes
                ],
                "nodes": nodes,
            }
        )
        return
    out = render.console()
    if nodes is not None:
        out.print(render.node_table(nodes, title=f"cluster {cluster.name}"))
    rows = []
    for node in cluster.nodes:
        running = node.process() is not None
        row: list[Any] = [node.name, node.addr, node.pid if running else "-"]
        row.append(render.styled("running" if running else "stopped"))
        if states is not None:
            row.append(render.styled(states.get(node.name, "-")))
        rows.append([*row, node.https_url])
    columns = ["agent", "address", "pid", "process"]
    columns += ["bootstrap"] if states is not None else []
    out.print(render.table([*columns, "API"], rows, title="agents"))
    # Paths as plain lines: a table would cut them to its width.
    render.say("logs:\n" + "\n".join(f"  {node.log}" for node in cluster.nodes))
    first = cluster.nodes[0]
    cnm, quote = cnm_command(), shlex.quote
    render.say(
        f"admin: {cluster.username}, password in {cluster.password_file} (mode 0600)\n"
        f"cluster CA: {ca_file}\n"
        "try:\n"
        f"  CNM_PASSWORD=$(cat {quote(str(cluster.password_file))}) {cnm} node list "
        f"--node {first.https_url} --ca-file {quote(str(ca_file))} -u {quote(cluster.username)}\n"
        f"stop: {cnm} local down --dir {quote(str(cluster.directory))}"
    )


@local_app.command("up")
@api_command
def up(
    ctx: typer.Context,
    directory: DirOpt = DEFAULT_DIR,
    nodes: Annotated[
        int | None, typer.Option("--nodes", "-n", help="How many agents [3]", min=1, max=50)
    ] = None,
    name: Annotated[str | None, typer.Option(help="The cluster's name [local.cluster]")] = None,
    first_addr: Annotated[
        str, typer.Option(help="The first agent's address; the others follow it")
    ] = "127.0.0.2",
    addrs: Annotated[
        str | None,
        typer.Option(help="Explicit comma-separated addresses, instead of --nodes/--first-addr"),
    ] = None,
    username: Annotated[str | None, typer.Option(help="The admin to create [admin@NAME]")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each step", min=1)] = 60.0,
    output: OutputOpt = None,
) -> None:
    """Start a local cluster: N agents on 127.0.0.x, created on the first, joined by the others.

    Each agent gets DIR/nodeN (data, agent.log) and the default ports on its own address. The
    admin's password is generated and written to DIR/admin-password (0600). Run again on a
    stopped directory to start that cluster again with its data.

    Examples:

        cnm local up

        cnm local up --nodes 5 --dir /tmp/c5 --name c5.local --first-addr 127.0.1.2
    """
    directory = directory.resolve()
    mode = resolve_output(ctx, output)
    cluster = LocalCluster.load(directory)
    started = time.monotonic()
    if cluster is not None and cluster.running():
        pids = ", ".join(f"{n.name} pid {n.pid}" for n in cluster.running())
        raise CliFailure(
            f"a local cluster already runs from {directory} ({pids}); see `{cnm_command()} local "
            f"status --dir {directory}` or stop it with `{cnm_command()} local down --dir "
            f"{directory}`"
        )
    try:
        if cluster is not None:
            states = _restart(cluster, timeout, ignored=(nodes, name, addrs, username))
            _report(cluster, mode, states=states)
            return
        names = [a.strip() for a in addrs.split(",") if a.strip()] if addrs else []
        if names:
            check_loopback(names)
        else:
            names = addresses(first_addr, nodes or 3)
        check_ports(names)
        cluster_name = name or "local.cluster"
        layout = LocalClusterDir(directory)
        cluster = LocalCluster(
            directory,
            cluster_name,
            username or f"admin@{cluster_name}",
            [
                LocalNode(f"node{i}", addr, str(layout.node(f"node{i}").root))
                for i, addr in enumerate(names, start=1)
            ],
        )
        directory.mkdir(parents=True, exist_ok=True)
        cluster.write_new_password()
        local_api.start(cluster, timeout)
        fingerprint = local_api.create(cluster, timeout, started)
        failures = local_api.join_all(cluster, fingerprint, timeout, started)
    except KeyboardInterrupt:
        render.print_problem(
            f"interrupted; the agents started so far keep running: {cnm_command()} local status "
            f"--dir {directory}, or stop them with {cnm_command()} local down --dir {directory}"
        )
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except (ClientError, CliFailure) as problem:
        code = report(problem, json_mode=mode is Output.json)
        if cluster is not None and cluster.running():
            render.say(
                "the agents keep running for inspection; stop them with: "
                f"{cnm_command()} local down --dir {directory}",
                stderr=True,
            )
        raise typer.Exit(code) from None
    failed = [(node, failures[node.name]) for node in cluster.nodes if node.name in failures]
    for node, error in failed:
        local_api.report_failure(node, error)
    took = f"{time.monotonic() - started:.1f} s"
    if failed:
        joined = len(cluster.nodes) - len(failed)
        render.say(
            f"local cluster {cluster.name}: {joined} of {len(cluster.nodes)} nodes in "
            f"it after {took}",
            stderr=True,
        )
    else:
        render.say(f"local cluster {cluster.name} up in {took}", stderr=True)
    _report(cluster, mode)
    if failed:
        raise typer.Exit(1)


def _restart(
    cluster: LocalCluster, timeout: float, *, ignored: tuple[object, ...]
) -> dict[str, str]:
    if any(value is not None for value in ignored):
        render.say(
            "note: --nodes, --name, --addrs and --username apply to a new directory only; "
            f"starting the cluster recorded in {cluster.directory}",
            stderr=True,
        )
    check_ports([node.addr for node in cluster.nodes])
    local_api.start(cluster, timeout)
    # The agents decide at start whether they rejoin, before they serve: the state is final.
    states = local_api.states(cluster)
    unfinished = [n for n in cluster.nodes if states.get(n.name) != "completed"]
    if unfinished:
        render.print_problem(
            ", ".join(f"{n.name} is {states.get(n.name)}" for n in unfinished)
            + f"; start afresh with: {cnm_command()} local down --purge --dir {cluster.directory}"
        )
    return states


def _load(directory: Path) -> LocalCluster:
    cluster = LocalCluster.load(directory.resolve())
    if cluster is None:
        raise CliFailure(
            f"no local cluster in {directory.resolve()}: start one with {cnm_command()} local up "
            f"--dir {directory}"
        )
    return cluster


@local_app.command("status")
@api_command
def status(ctx: typer.Context, directory: DirOpt = DEFAULT_DIR, output: OutputOpt = None) -> None:
    """Show the local cluster's agents (running or not, bootstrap state) and its nodes.

    Example:

        cnm local status --dir .cnm-local
    """
    mode = resolve_output(ctx, output)
    cluster = _load(directory)
    states = local_api.states(cluster)
    _report(cluster, mode, states=states)


@local_app.command("down")
@api_command
def down(
    ctx: typer.Context,
    directory: DirOpt = DEFAULT_DIR,
    timeout: Annotated[
        float, typer.Option(help="Seconds to wait for a clean stop before SIGKILL", min=0)
    ] = 20.0,
    purge: Annotated[
        bool, typer.Option(help="Also delete the directory (data, logs, password)")
    ] = False,
    output: OutputOpt = None,
) -> None:
    """Stop the local cluster's agents (SIGTERM, then SIGKILL after --timeout); the data stays
    for the next `cnm local up` unless --purge.

    Example:

        cnm local down --dir .cnm-local --purge
    """
    mode = resolve_output(ctx, output)
    cluster = _load(directory)
    reports = stop_all(cluster.nodes, timeout)
    left = [r for r in reports if r.outcome == "still running"]
    if mode is Output.json:
        render.print_json(
            [
                {"name": r.node.name, "addr": r.node.addr, "pid": r.node.pid, "outcome": r.outcome}
                for r in reports
            ]
        )
    else:
        for report in reports:
            render.say(
                f"{report.node.name} {report.node.addr} (pid {report.node.pid}): "
                f"{report.outcome}"
                + (f" after {report.seconds:.1f} s" if report.outcome != "not running" else "")
            )
    if left:
        raise CliFailure(
            "could not stop " + ", ".join(f"{r.node.name} pid {r.node.pid}" for r in left)
        )
    if purge:
        shutil.rmtree(cluster.directory)
        render.say(f"removed {cluster.directory}", stderr=mode is Output.json)
