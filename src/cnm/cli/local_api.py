"""The API side of a local cluster: wait for the agents, create on the first node, join the
others, and read their states, all through `cnm.client` on the agents' plain-HTTP loopback port
(nothing to verify there, and it works before the cluster CA exists).
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from typing import Any

from cnm.cli import render
from cnm.cli.local_cluster import LocalCluster, LocalNode, start_agent, wait_serving
from cnm.cli.progress import describe
from cnm.client import FINAL_STATES, CnmClient
from cnm.client_errors import ApiError, ClientError, Unreachable, WaitTimeout, bootstrap_failure


def connect(cluster: LocalCluster, node: LocalNode) -> CnmClient:
    # Plain HTTP on the loopback: nothing to verify, and it works before the cluster CA exists.
    # No proxy from the environment: it could not reach our loopback addresses anyway.
    return CnmClient(
        node.http_url, username=cluster.username, password=cluster.password(), trust_env=False
    )


def printer(node: LocalNode, started: float) -> Callable[[dict[str, Any]], None]:
    def show(document: dict[str, Any]) -> None:
        elapsed = time.monotonic() - started
        render.say(f"[{elapsed:6.1f}s] {node.name} {node.addr}: {describe(document)}", stderr=True)

    return show


def start(cluster: LocalCluster, timeout: float) -> None:
    """Start every agent (recording each pid at once), then wait until all serve."""
    processes: list[tuple[LocalNode, subprocess.Popen[bytes]]] = []
    for node in cluster.nodes:
        processes.append((node, start_agent(node)))
        cluster.save()
    render.say(
        f"started {len(processes)} agent(s) in {cluster.directory}; waiting for them to serve",
        stderr=True,
    )
    deadline = time.monotonic() + timeout
    for node, process in processes:
        wait_serving(node, process, deadline)


def create(cluster: LocalCluster, timeout: float, started: float) -> str:
    """Create the cluster on the first node; its CA fingerprint, which the joiners pin."""
    first = cluster.nodes[0]
    with connect(cluster, first) as client:
        client.create_cluster(
            {
                "cluster": {"name": cluster.name},
                "credentials": {"username": cluster.username, "password": cluster.password()},
            }
        )
        client.wait_bootstrap(timeout, printer(first, started))
        return str(client.cluster().get("ca_fingerprint", ""))


def join_all(
    cluster: LocalCluster, fingerprint: str, timeout: float, started: float
) -> dict[str, ClientError]:
    """POST join_cluster to every other node at once, then follow them all in one loop (the
    cluster takes concurrent joins; one loop, unlike threads, stops at once on Ctrl-C). The
    errors by node name; an absent name joined."""
    body = {
        "cluster": {"nodes": [cluster.nodes[0].addr], "ca_fingerprint": fingerprint},
        "credentials": {"username": cluster.username, "password": cluster.password()},
    }
    failures: dict[str, ClientError] = {}
    pending: dict[str, tuple[LocalNode, CnmClient]] = {}
    seen: dict[str, str] = {}
    last: dict[str, dict[str, Any]] = {}
    clients: list[CnmClient] = []
    try:
        for node in cluster.nodes[1:]:
            client = connect(cluster, node)
            clients.append(client)
            pending[node.name] = (node, client)
            try:
                client.join_cluster(body)
            except ClientError as error:
                failures[node.name] = error
                del pending[node.name]
        deadline = time.monotonic() + timeout
        while pending:
            for name, (node, client) in list(pending.items()):
                try:
                    document = client.bootstrap_status()
                except Unreachable:
                    continue  # a dropped poll; the deadline bounds it
                except ClientError as error:
                    failures[name] = error
                    del pending[name]
                    continue
                last[name] = document
                if describe(document) != seen.get(name):
                    seen[name] = describe(document)
                    printer(node, started)(document)
                state = document.get("bootstrap_status", {}).get("state")
                if state in FINAL_STATES:
                    del pending[name]
                if state == "error":
                    failures[name] = bootstrap_failure(document)
            if pending and time.monotonic() > deadline:
                for name in pending:
                    failures[name] = WaitTimeout(timeout, last.get(name))
                break
            if pending:
                time.sleep(0.25)
    finally:
        for client in clients:
            client.close()
    return failures


def report_failure(node: LocalNode, error: ClientError) -> None:
    if isinstance(error, ApiError):
        lines = render.error_lines(error)
        render.print_problem(f"{node.name} {node.addr} did not join: {lines[0][7:]}")
        for line in lines[1:]:
            render.say(line, stderr=True)
    else:
        render.print_problem(f"{node.name} {node.addr} did not join: {error}")


def cluster_nodes(cluster: LocalCluster) -> list[dict[str, Any]] | None:
    for node in cluster.running():
        try:
            with connect(cluster, node) as client:
                return client.nodes()
        except ClientError:
            continue
    return None


def states(cluster: LocalCluster) -> dict[str, str]:
    states = {}
    for node in cluster.nodes:
        if node.process() is None:
            states[node.name] = "stopped"
            continue
        try:
            with connect(cluster, node) as client:
                states[node.name] = str(client.bootstrap_status()["bootstrap_status"]["state"])
        except ClientError as error:
            states[node.name] = f"unknown ({error})"
    return states
