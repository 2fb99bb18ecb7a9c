"""Semantic checks of a bootstrap request, and of the node paths it names.

A body that parsed (`schema.parse_bootstrap_body`) may still be unusable: a cluster name that is
not an FQDN, missing or contradictory credentials, an address this machine does not have. Those
are `config_error` (the POST is accepted and the bootstrap status goes to `error`;
`validate/{action}` answers them at once); a path that is missing or not writable is
`path_error`. `check_request` reports every problem it finds in one error, each naming its field,
so that an operator fixes the body in one round trip.
"""

from __future__ import annotations

import ipaddress
import os
import re
import uuid
from collections.abc import Mapping

from cnm.bootstrap.schema import BootstrapRequest, Credentials
from cnm.errors import ConfigError, PathError
from cnm.node.facts import is_local_address

ACTIONS = ("create_cluster", "join_cluster", "recover_cluster")
DEFAULT_PASSWORD_MIN_LENGTH = 8
MAX_CLUSTER_NAME_CHARS = 64
MAX_RETRIES = 100
MAX_RETRY_TIME = 3600  # seconds
FORBIDDEN_USERNAME_CHARS = '&<>"'

# RFC 952 / RFC 1123 host label: letters, digits, hyphens; not starting or ending with a hyphen.
_LABEL_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_RACK_ID_RE = re.compile(r"[A-Za-z](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?")
_PORT_RE = re.compile(r"[0-9]{1,5}")
_HEX64_RE = re.compile(r"[0-9A-Fa-f]{64}")

_Problems = list[tuple[str, str]]  # (field, message naming the field)


def check_request(
    req: BootstrapRequest,
    path_action: str,
    *,
    password_min_length: int = DEFAULT_PASSWORD_MIN_LENGTH,
) -> None:
    """Raise `ConfigError` if `req` cannot be carried out as `path_action`.

    The message lists every problem ("; "-joined), each starting with the dotted field it is
    about; the `fields` detail lists those fields. Checks the machine only to know its own
    addresses (`node.identity.addr`); paths are `check_paths`' business.
    """
    if path_action not in ACTIONS:
        raise ConfigError(
            f"action: {path_action!r} is not a bootstrap action (expected one of "
            f"{', '.join(ACTIONS)})",
            fields=["action"],
        )
    problems: _Problems = []
    if req.action is not None and req.action != path_action:
        problems.append(
            ("action", f"action: body says {req.action!r} but the path is {path_action}")
        )
    if path_action == "create_cluster":
        _check_create(req, password_min_length, problems)
    elif path_action == "join_cluster":
        _check_join(req, problems)
    elif not req.recovery_filename:
        problems.append(
            (
                "recovery_filename",
                "recovery_filename: required to recover a cluster (the cluster-store backup "
                "to recover from)",
            )
        )
    _check_common_credentials(req.credentials, problems)
    _check_identity(req, problems)
    _check_retries(req, problems)
    if problems:
        raise ConfigError(
            "; ".join(message for _, message in problems),
            fields=list(dict.fromkeys(field for field, _ in problems)),
        )


def _check_create(req: BootstrapRequest, password_min_length: int, problems: _Problems) -> None:
    name = req.cluster.name
    if not name:
        problems.append(("cluster.name", "cluster.name: required to create a cluster"))
    elif not is_cluster_name(name):
        problems.append(
            (
                "cluster.name",
                f"cluster.name: {name[:80]!r} is not a valid FQDN (at most "
                f"{MAX_CLUSTER_NAME_CHARS} characters, dot-separated labels of letters, digits "
                "and hyphens, none starting or ending with a hyphen)",
            )
        )
    creds = req.credentials
    if not creds.username:
        problems.append(
            (
                "credentials.username",
                "credentials.username: required to create a cluster (the admin's email or name)",
            )
        )
    if creds.password is None:
        problems.append(
            (
                "credentials.password",
                "credentials.password: required to create a cluster (the admin's password)",
            )
        )
    elif len(creds.password) < password_min_length:
        problems.append(
            (
                "credentials.password",
                f"credentials.password: must be at least {password_min_length} characters",
            )
        )


def _check_join(req: BootstrapRequest, problems: _Problems) -> None:
    if not req.cluster.nodes:
        problems.append(
            (
                "cluster.nodes",
                "cluster.nodes: required to join a cluster (the address of at least one "
                "member, host or host:port)",
            )
        )
    for node in req.cluster.nodes:
        if not is_node_address(node):
            problems.append(
                (
                    "cluster.nodes",
                    f"cluster.nodes: {node[:300]!r} is not a host or host:port (IPv6 as "
                    "[address]:port)",
                )
            )
    creds = req.credentials
    has_cert = creds.client_cert is not None or creds.client_key is not None
    if has_cert:
        # `both kinds` is reported by _check_common_credentials; here, a half of the cert pair.
        for present, missing in (("client_cert", "client_key"), ("client_key", "client_cert")):
            if getattr(creds, present) is not None and getattr(creds, missing) is None:
                problems.append(
                    (
                        f"credentials.{missing}",
                        f"credentials.{missing}: required with credentials.{present}",
                    )
                )
    elif not creds.username and not creds.password:
        problems.append(
            (
                "credentials",
                "credentials: required to join a cluster: username and password of an admin "
                "of the cluster, or client_cert and client_key",
            )
        )
    elif not creds.username:
        problems.append(
            (
                "credentials.username",
                "credentials.username: required with credentials.password to join a cluster",
            )
        )
    elif creds.password is None:
        problems.append(
            (
                "credentials.password",
                "credentials.password: required with credentials.username to join a cluster "
                "(or give client_cert and client_key instead)",
            )
        )
    fingerprint = req.cluster.ca_fingerprint
    if fingerprint is not None and not is_sha256_fingerprint(fingerprint):
        problems.append(
            (
                "cluster.ca_fingerprint",
                "cluster.ca_fingerprint: expected a SHA-256 fingerprint: 64 hex digits, "
                "colons allowed, optionally prefixed with 'sha256:'",
            )
        )


def _check_common_credentials(creds: Credentials, problems: _Problems) -> None:
    if creds.password is not None and (
        creds.client_cert is not None or creds.client_key is not None
    ):
        problems.append(
            (
                "credentials",
                "credentials: give either username/password or client_cert/client_key, not both",
            )
        )
    if creds.username and any(char in creds.username for char in FORBIDDEN_USERNAME_CHARS):
        problems.append(
            (
                "credentials.username",
                'credentials.username: must not contain any of & < > "',
            )
        )


def _check_identity(req: BootstrapRequest, problems: _Problems) -> None:
    identity = req.node.identity
    for field, rack in (("rack_id", identity.rack_id), ("second_rack_id", identity.second_rack_id)):
        # "" is what templates send for "no rack": the same as absent.
        if rack and not _RACK_ID_RE.fullmatch(rack):
            problems.append(
                (
                    f"node.identity.{field}",
                    f"node.identity.{field}: {rack[:80]!r} is not a valid rack id (at most 63 "
                    "letters, digits, '-' and '_', starting with a letter and ending with a "
                    "letter or digit)",
                )
            )
    if identity.addr:
        address = _ip(identity.addr)
        if address is None:
            problems.append(
                (
                    "node.identity.addr",
                    f"node.identity.addr: {identity.addr[:80]!r} is not an IP address",
                )
            )
        elif not is_local_address(str(address)):
            problems.append(
                (
                    "node.identity.addr",
                    f"node.identity.addr: {identity.addr} is not an address of this machine",
                )
            )
    for external in identity.external_addr:
        if _ip(external) is None:
            problems.append(
                (
                    "node.identity.external_addr",
                    f"node.identity.external_addr: {external[:80]!r} is not an IP address",
                )
            )


def _check_retries(req: BootstrapRequest, problems: _Problems) -> None:
    for field, value, upper, unit in (
        ("max_retries", req.max_retries, MAX_RETRIES, ""),
        ("retry_time", req.retry_time, MAX_RETRY_TIME, " seconds"),
    ):
        if value is not None and value > upper:
            problems.append((field, f"{field}: must be between 0 and {upper}{unit}, got {value}"))


# --- the rules, public for the API and the CLI to reuse ------------------------------------------


def is_cluster_name(name: str) -> bool:
    """An FQDN of RFC 952 / RFC 1123 labels, ≤ 64 characters; one label is enough, no final dot."""
    if len(name) > MAX_CLUSTER_NAME_CHARS:
        return False
    return all(_LABEL_RE.fullmatch(label) for label in name.split("."))


def is_hostname(name: str) -> bool:
    """A DNS host name (a final dot allowed), but not a dotted-number that is no IPv4 address."""
    name = name.removesuffix(".")
    if not name or len(name) > 253:
        return False
    labels = name.split(".")
    if not all(_LABEL_RE.fullmatch(label) for label in labels):
        return False
    # "999.1.1.1" matches the label syntax but is a mistyped address, not a name.
    return not all(label.isdigit() for label in labels)


def is_node_address(node: str) -> bool:
    """`host`, `host:port`, an IPv6 address, or `[IPv6]:port` (port 1..65535)."""
    host, port = node, None
    if node.startswith("["):
        inner, bracket, rest = node[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            return False
        if rest:
            port = rest[1:]
        address = _ip(inner)
        if address is None or address.version != 6:
            return False
    elif node.count(":") > 1:
        return _ip(node) is not None  # a bare IPv6 address: no port without brackets
    else:
        host, colon, port_text = node.partition(":")
        if colon:
            port = port_text
        if _ip(host) is None and not is_hostname(host):
            return False
    return port is None or (_PORT_RE.fullmatch(port) is not None and 1 <= int(port) <= 65535)


def is_sha256_fingerprint(value: str) -> bool:
    """64 hex digits, colons allowed anywhere, optionally prefixed with `sha256:`."""
    if value[:7].lower() == "sha256:":
        value = value[7:]
    return _HEX64_RE.fullmatch(value.replace(":", "")) is not None


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


# --- paths -------------------------------------------------------------------------------------


def check_paths(paths: Mapping[str, str]) -> None:
    """Raise `PathError` for the first path that is not an existing, writable directory.

    `paths` maps the field that named a path to the path, e.g.
    `{"node.paths.persistent_path": "/var/opt/redislabs/persist"}`. Writability is probed by
    creating and removing a uniquely named file: `os.access` says yes to root on a read-only
    mount or an immutable directory, and the probe does not.
    """
    for field, path in paths.items():
        problem = _path_problem(path)
        if problem is not None:
            raise PathError(f"{field}: {path or 'the path'} {problem}", path=path, field=field)


def given_paths(req: BootstrapRequest) -> dict[str, str]:
    """The node paths the request names, as `check_paths` takes them (absent ones left out:
    the agent's configured defaults apply to those)."""
    paths = req.node.paths
    given = {
        "node.paths.persistent_path": paths.persistent_path,
        "node.paths.ephemeral_path": paths.ephemeral_path,
        "node.paths.bigstore_path": paths.bigstore_path,
        "node.paths.ccs_persistent_path": paths.ccs_persistent_path,
    }
    return {field: path for field, path in given.items() if path is not None}


def _path_problem(path: str) -> str | None:
    if not path:
        return "is empty; give an absolute path to a directory"
    if not os.path.isabs(path):
        return "is not an absolute path; give an absolute path to a directory"
    try:
        os.stat(path)
    except FileNotFoundError:
        return "does not exist; create it (and make it writable by the agent) or give another path"
    except NotADirectoryError:
        return "does not exist (a component of it is a file); give another path"
    except OSError as exc:
        return (
            f"cannot be accessed ({exc.strerror}); give the agent access to it or give another path"
        )
    if not os.path.isdir(path):
        return "is not a directory; give a directory (or another path)"
    probe = os.path.join(path, f".cnm-write-probe-{os.getpid()}-{uuid.uuid4().hex}")
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        return (
            f"is not writable by the agent ({exc.strerror}); make it writable (check the "
            "permissions, a read-only mount, an immutable attribute) or give another path"
        )
    os.close(fd)
    try:
        os.unlink(probe)
    except OSError as exc:
        return (
            f"accepts new files but not their removal ({exc.strerror}); fix its permissions "
            "or give another path"
        )
    return None
