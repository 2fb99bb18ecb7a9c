"""How the CLI shows things: panels and tables with rich, JSON for scripts, errors on stderr.

Results go to stdout, errors and progress to stderr, so `-o json` output stays parseable.
Consoles are made per call (no module state: several commands may run in one process under
test). Without a terminal rich writes no control sequences; highlighting is off so that numbers
in messages are not coloured at random.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from rich.console import Console, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from cnm.client_errors import ApiError

D = TypeVar("D")


def console(*, stderr: bool = False) -> Console:
    made = Console(stderr=stderr, highlight=False)
    if not made.is_terminal and "COLUMNS" not in os.environ:
        # rich assumes 80 columns without a terminal; logs and pipes take the tables wider.
        made.width = 120
    return made


def print_json(document: Any) -> None:
    sys.stdout.write(json.dumps(document, indent=2, sort_keys=True) + "\n")
    sys.stdout.flush()


def show(document: D, view: Callable[[D], RenderableType], *, json_mode: bool) -> None:
    """A command's result: the API's document as it came in json mode, else its `view`."""
    if json_mode:
        print_json(document)
    else:
        console().print(view(document))


def print_problem(message: str) -> None:
    console(stderr=True).print(Text(f"error: {message}"), style="red", soft_wrap=True)


def say(message: str, *, stderr: bool = False) -> None:
    """A plain line (no markup parsing: messages carry brackets and paths)."""
    console(stderr=stderr).print(Text(message), soft_wrap=True)


# --- formatting ---------------------------------------------------------------------------------


def human_bytes(value: Any) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return "-"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} PiB"  # pragma: no cover - the loop returns


def human_duration(seconds: Any) -> str:
    if not isinstance(seconds, int | float) or isinstance(seconds, bool):
        return "-"
    total = int(seconds)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"


def plain(value: Any) -> str:
    """A JSON value as an operator reads it."""
    if value is None or value in ("", []):
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(plain(item) for item in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}={plain(v)}" for k, v in value.items())
    return str(value)


def key_values(title: str, rows: Iterable[tuple[str, Any]], *, style: str = "cyan") -> Panel:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    for key, value in rows:
        grid.add_row(key, value if isinstance(value, Text) else Text(plain(value)))
    return Panel(grid, title=title, title_align="left", border_style=style, expand=False)


def table(columns: Iterable[str], rows: Iterable[Iterable[Any]], *, title: str = "") -> Table:
    result = Table(title=title or None, title_justify="left", header_style="bold")
    for column in columns:
        result.add_column(column)
    for row in rows:
        result.add_row(*(cell if isinstance(cell, Text) else Text(plain(cell)) for cell in row))
    return result


STATE_STYLES = {
    "completed": "green",
    "active": "green",
    "error": "red",
    "down": "red",
    "idle": "white",
    "ok": "green",
    "failed": "red",
    "running": "green",
    "stopped": "red",
}


def styled(value: Any) -> Text:
    text = plain(value)
    return Text(text, style=STATE_STYLES.get(text, "yellow"))


# --- errors -------------------------------------------------------------------------------------

# Hints for codes whose way out is on the operator's side of the CLI.
_HINTS = {
    "unauthorized": "the node is in a cluster and needs a user's credentials: --username and "
    "the password ($CNM_PASSWORD, --password-stdin or the prompt)",
    "insufficient_permissions": "this user's role may not do that; log in as an admin",
    "no_cluster": "this node is not in a cluster yet: see `cnm cluster create --help` and "
    "`cnm cluster join --help`",
    "already_bootstrapped": "this node already belongs to a cluster: `cnm cluster info`",
    "bootstrap_in_progress": "watch it with `cnm bootstrap status --watch`",
    "method_not_allowed": "this version of the node does not serve that call yet",
}


def error_lines(error: ApiError) -> list[str]:
    """`error: [code] message` and the details, one readable line each."""
    lines = [f"error: [{error.error_code}] {error.message}"]
    details = dict(error.details)
    if "line" in details and "column" in details:
        lines.append(f"  at line {details.pop('line')}, column {details.pop('column')}")
    if "offset" in details:
        lines.append(f"  at byte offset {details.pop('offset')}")
    mismatches = details.pop("mismatches", None)
    if isinstance(mismatches, list) and mismatches:
        lines.append("  settings that differ from the cluster's:")
        for item in mismatches:
            if isinstance(item, Mapping):
                lines.append(
                    f"    {item.get('field')}: cluster {plain(item.get('cluster_value'))}, "
                    f"this node {plain(item.get('node_value'))}"
                )
    failed = details.pop("failed_nodes", None)
    if isinstance(failed, list) and failed:
        described = [
            f"node {n.get('uid')}" + (f" (rack {n['rack_id']})" if n.get("rack_id") else "")
            for n in failed
            if isinstance(n, Mapping)
        ]
        lines.append("  failed nodes: " + ", ".join(described))
    candidate = details.pop("replace_candidate", None)
    if candidate is not None:
        lines.append(
            f"  replace candidate: node {candidate} (join again with --replace-uid {candidate})"
        )
    racks = details.pop("current_rack_ids", None)
    if racks is not None:
        lines.append(f"  rack ids in the cluster: {plain(racks)} (join with --rack-id)")
    for key in ("required_memory", "required_flash"):
        if key in details:
            lines.append(f"  {key.replace('_', ' ')}: {human_bytes(details.pop(key))}")
    retryable = details.pop("retryable", None)
    for key, value in details.items():
        lines.append(f"  {key.replace('_', ' ')}: {plain(value)}")
    if retryable is not None:
        lines.append(
            "  retryable: yes, the same request may succeed later"
            if retryable
            else "  retryable: no, change the request first"
        )
    if error.status is not None and error.status >= 400 and error.error_code in _HINTS:
        lines.append(f"  hint: {_HINTS[error.error_code]}")
    return lines


def print_api_error(error: ApiError) -> None:
    err = console(stderr=True)
    lines = error_lines(error)
    err.print(Text(lines[0], style="bold red"), soft_wrap=True)
    for line in lines[1:]:
        err.print(Text(line), soft_wrap=True)


# --- documents ----------------------------------------------------------------------------------


def bootstrap_panel(document: Mapping[str, Any]) -> Panel:
    """GET /v1/bootstrap as a panel: the status first, then the node's facts."""
    status = document.get("bootstrap_status", {})
    info = document.get("local_node_info", {})
    rows: list[tuple[str, Any]] = [("state", styled(status.get("state")))]
    if status.get("phase"):
        rows.append(("phase", status["phase"]))
    for key in ("start_time", "end_time"):
        if status.get(key):
            rows.append((key.replace("_", " "), status[key]))
    if status.get("error_code"):
        details = dict(status.get("error_details") or {})
        rows.append(
            ("error", Text(f"[{status['error_code']}] {details.pop('message', '')}", "red"))
        )
        for key, value in details.items():
            rows.append((f"  {key.replace('_', ' ')}", value))
    addresses = info.get("available_addresses") or info.get("available_addrs") or []
    rows += [
        ("node uid", info.get("uid") or "- (not in a cluster)"),
        ("software", info.get("software_version")),
        ("host", info.get("short_hostname")),
        ("os", info.get("os_version")),
        ("architecture", info.get("architecture")),
        ("cores", info.get("cores")),
        ("memory", human_bytes(info.get("total_memory"))),
        ("uptime", human_duration(info.get("uptime"))),
        ("addresses", [a.get("address") for a in addresses if isinstance(a, Mapping)]),
        (
            "persistent path",
            f"{plain(info.get('persistent_storage_path'))} "
            f"({human_bytes(info.get('persistent_storage_size'))})",
        ),
        (
            "ephemeral path",
            f"{plain(info.get('ephemeral_storage_path'))} "
            f"({human_bytes(info.get('ephemeral_storage_size'))})",
        ),
        ("flash path", info.get("bigredis_storage_path")),
        ("fips", info.get("fips_enabled")),
    ]
    state = str(status.get("state"))
    style = STATE_STYLES.get(state, "yellow")
    return key_values("bootstrap", rows, style=style)


NODE_COLUMNS = ("uid", "address", "rack", "status", "store role", "memory", "uptime")


def node_rows(nodes: Iterable[Mapping[str, Any]]) -> list[list[Any]]:
    rows = []
    for node in nodes:
        addr = node.get("addr")
        external = node.get("external_addr") or []
        if external:
            addr = f"{addr} ({plain(external)})"
        rows.append(
            [
                node.get("uid"),
                addr,
                node.get("rack_id"),
                styled(node.get("status")),
                node.get("store_role"),
                human_bytes(node.get("total_memory")),
                human_duration(node.get("uptime")),
            ]
        )
    return rows


def node_table(nodes: Iterable[Mapping[str, Any]], *, title: str = "") -> Table:
    return table(NODE_COLUMNS, node_rows(nodes), title=title)


_SIZE_KEYS = ("total_memory",)


def document_panel(title: str, document: Mapping[str, Any], *, skip: Iterable[str] = ()) -> Panel:
    """Every field of an API object, sizes and durations made readable."""
    hidden = set(skip)
    rows: list[tuple[str, Any]] = []
    for key in sorted(document):
        if key in hidden:
            continue
        value = document[key]
        if key in _SIZE_KEYS or key.endswith("_storage_size"):
            value = human_bytes(value)
        elif key == "uptime":
            value = human_duration(value)
        elif key == "status":
            value = styled(value)
        rows.append((key, value))
    return key_values(title, rows)


def removal_summary(document: Mapping[str, Any]) -> Text:
    """The answer of a node removal: its description (what was done)."""
    return Text(str(document.get("description") or f"node {document.get('node_uid')} removed"))
