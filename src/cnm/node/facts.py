"""Facts about the machine this agent runs on, read from the real host.

This module owns `local_node_info` of GET /v1/bootstrap and the machine facts a node record
carries (docs/api-contract.md §3 and §6): CPUs, memory, uptime, the operating system
(os-release), the host name, FIPS mode, the size of the file systems under the node's storage
paths, and the addresses the node can be reached on. Facts that cannot change while the process
runs are read once and cached, because health checks and setup scripts poll GET /v1/bootstrap;
uptime (the kernel's boot clock), storage sizes and addresses are read on every call (the API
reuses one answer for at most a second: api/status_body.py). Nothing here raises for a missing
file or path: a fact that cannot be read gets a neutral value, so the bootstrap API keeps
answering on odd hosts.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import platform
import shlex
import socket
import time
from dataclasses import dataclass
from typing import Any, TypeAlias

import psutil

IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address

SUPPORTED_BIGSTORE_DRIVERS: tuple[str, ...] = ("rocksdb", "speedb")

# Linux names its loopback interface `lo`; extra 127.x addresses are not configured on it but are
# still answered there (the kernel routes all of 127.0.0.0/8 to it).
_LOOPBACK_IF_NAME = "lo"
# TEST-NET-2 (RFC 5737) is never routed for real, so a connect() to it resolves through the
# default route; on UDP, connect() only picks the source address and sends nothing.
_ROUTE_PROBE = ("198.51.100.1", 9)
_RTF_UP = 0x1


@dataclass(frozen=True)
class StoragePaths:
    """Where the node keeps its data. `bigstore_path` is None when flash (Auto Tiering) is off."""

    persistent_path: str
    ephemeral_path: str
    bigstore_path: str | None
    ccs_persistent_path: str


def os_release(path: str = "/etc/os-release") -> dict[str, str]:
    """Parse an os-release(5) file into KEY -> value, shell quoting removed; {} if unreadable."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError):
        return {}
    fields: dict[str, str] = {}
    for raw_line in text.splitlines():
        line = raw_line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        try:
            words = shlex.split(value)
        except ValueError:
            # An unbalanced quote: keep the text rather than lose the field.
            words = [value.strip("\"'")]
        fields[key.strip()] = " ".join(words)
    return fields


def storage_size(path: str) -> float:
    """Total bytes of the file system holding `path`, or of its nearest existing ancestor.

    Paths are often reported before the installer creates them, so a missing (or unreadable)
    directory is measured where it would be created. 0.0 only if not even `/` can be read.
    """
    current = os.path.abspath(path)
    while True:
        try:
            st = os.statvfs(current)
        except OSError:
            parent = os.path.dirname(current)
            if parent == current:
                return 0.0
            current = parent
            continue
        return float(st.f_blocks * st.f_frsize)


def _parse_ip(addr: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(addr.split("%", 1)[0].strip("[]"))
    except ValueError:
        return None


def _interface_addresses() -> list[tuple[str, IPAddress]]:
    """(interface name, address) of every IPv4/IPv6 address on the host, by interface name."""
    found: list[tuple[str, IPAddress]] = []
    for if_name, snics in sorted(psutil.net_if_addrs().items()):
        for snic in snics:
            if snic.family in (socket.AF_INET, socket.AF_INET6):
                ip = _parse_ip(snic.address)
                if ip is not None:
                    found.append((if_name, ip))
    return found


def _address_entry(ip: IPAddress, if_name: str) -> dict[str, Any]:
    return {
        "address": str(ip),
        "format": f"ipv{ip.version}",
        "if_name": if_name,
        "private": ip.is_private,
    }


def is_local_address(addr: str) -> bool:
    """Whether `addr` is an address of this host (all of 127.0.0.0/8 and ::1 count)."""
    ip = _parse_ip(addr)
    if ip is None:
        return False
    # Loopback first: several agents on one machine use 127.0.0.x that no interface lists.
    return ip.is_loopback or any(ip == bound for _, bound in _interface_addresses())


def available_addresses(extra_local: str | None = None) -> list[dict[str, Any]]:
    """The addresses other machines may reach this node on: IPv4 first, then IPv6.

    Loopback and IPv6 link-local addresses are left out, as a peer cannot use them; except that
    `extra_local`, the agent's own configured address, comes first with if_name `lo` when it is a
    loopback address, because that is the address a same-machine test cluster is reached on.
    """
    reachable = [
        (if_name, ip)
        for if_name, ip in _interface_addresses()
        if not ip.is_loopback and not (ip.version == 6 and ip.is_link_local)
    ]
    # sort() is stable: within a family the interface-name order of the scan survives.
    reachable.sort(key=lambda item: item[1].version)
    entries = [_address_entry(ip, if_name) for if_name, ip in reachable]
    extra = _parse_ip(extra_local) if extra_local else None
    if extra is not None and extra.is_loopback and is_local_address(str(extra)):
        entries.insert(0, _address_entry(extra, _LOOPBACK_IF_NAME))
    return entries


def _default_route_interface(route_table: str = "/proc/net/route") -> str | None:
    """The interface of the IPv4 default route with the lowest metric, from the kernel's table."""
    try:
        with open(route_table, encoding="ascii") as f:
            rows = f.read().splitlines()[1:]
    except (OSError, UnicodeDecodeError):
        return None
    best: tuple[int, str] | None = None
    for row in rows:
        fields = row.split()
        if len(fields) < 8:
            continue
        try:
            is_default = int(fields[1], 16) == 0 and int(fields[7], 16) == 0
            is_up = bool(int(fields[3], 16) & _RTF_UP)
            metric = int(fields[6])
        except ValueError:
            continue
        if is_default and is_up and (best is None or metric < best[0]):
            best = (metric, fields[0])
    return best[1] if best else None


def default_route_address() -> str:
    """The IPv4 address of the default route's interface: what a peer most likely reaches."""
    if_name = _default_route_interface()
    if if_name is not None:
        for snic in psutil.net_if_addrs().get(if_name, []):
            if snic.family == socket.AF_INET:
                return str(snic.address)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(_ROUTE_PROBE)
            address = str(probe.getsockname()[0])
    except OSError:
        address = ""
    if address and address != "0.0.0.0":
        return address
    return "127.0.0.1"


# TEST-ONLY: the memory (bytes) this agent reports instead of the machine's, so tests of the
# replacement checks (insufficient_node_memory) can run several agents on one machine. Never
# set it in production: the cluster would plan with memory the machine does not have.
REPORTED_MEMORY_ENV = "CNM_REPORTED_MEMORY"


def machine_memory() -> int:
    """The machine's memory in bytes (or the test-only override, `CNM_REPORTED_MEMORY`)."""
    override = os.environ.get(REPORTED_MEMORY_ENV, "").strip()
    if override.isdigit():
        return int(override)
    return int(psutil.virtual_memory().total)


@dataclass(frozen=True)
class _StaticFacts:
    cores: int
    total_memory: int
    architecture: str
    os_family: str
    os_name: str
    os_semantic_version: str
    os_version: str
    short_hostname: str
    fips_enabled: bool


def _fips_enabled() -> bool:
    try:
        with open("/proc/sys/crypto/fips_enabled", encoding="ascii") as f:
            return f.read().strip() == "1"
    except (OSError, UnicodeDecodeError):
        return False


@functools.cache
def _static_facts() -> _StaticFacts:
    # os-release(5): /usr/lib/os-release stands in when /etc has none; ID defaults to "linux".
    release = os_release() or os_release("/usr/lib/os-release")
    os_id = release.get("ID", "linux")
    id_like = release.get("ID_LIKE", "").split()
    return _StaticFacts(
        cores=psutil.cpu_count(logical=True) or os.cpu_count() or 1,
        total_memory=machine_memory(),
        architecture=platform.machine(),
        os_family=id_like[0] if id_like else os_id,
        os_name=os_id,
        os_semantic_version=release.get("VERSION_ID", ""),
        os_version=release.get("PRETTY_NAME", "Linux"),
        short_hostname=socket.gethostname().split(".")[0],
        fips_enabled=_fips_enabled(),
    )


def uptime() -> int:
    """Whole seconds since the host booted."""
    # The kernel's boot clock (what /proc/uptime shows): no file to read, unlike psutil's boot
    # time (a tenth of a status request's cost), and a stepped wall clock cannot make it jump
    # or go negative.
    return int(time.clock_gettime(time.CLOCK_BOOTTIME))


def _host_facts() -> dict[str, Any]:
    static = _static_facts()
    return {
        "cores": static.cores,
        "total_memory": static.total_memory,
        "uptime": uptime(),
        "architecture": static.architecture,
        "os_family": static.os_family,
        "os_name": static.os_name,
        "os_semantic_version": static.os_semantic_version,
        "os_version": static.os_version,
        "short_hostname": static.short_hostname,
    }


def _storage_facts(paths: StoragePaths) -> dict[str, Any]:
    facts: dict[str, Any] = {
        "persistent_storage_path": paths.persistent_path,
        "persistent_storage_size": storage_size(paths.persistent_path),
        "ephemeral_storage_path": paths.ephemeral_path,
        "ephemeral_storage_size": storage_size(paths.ephemeral_path),
        "bigredis_storage_path": paths.bigstore_path or "",
    }
    if paths.bigstore_path:
        facts["bigredis_storage_size"] = storage_size(paths.bigstore_path)
    return facts


def local_node_info(
    *, uid: str | None, paths: StoragePaths, software_version: str, addr: str | None = None
) -> dict[str, Any]:
    """`local_node_info` of GET /v1/bootstrap (docs/api-contract.md §3); `uid` is "" until known.

    The address list is sent under both `available_addresses` (what real servers answer and
    scripts parse) and `available_addrs` (what the documentation shows).
    """
    addresses = available_addresses(extra_local=addr)
    return {
        "uid": "" if uid is None else str(uid),
        "software_version": software_version,
        **_host_facts(),
        "fips_enabled": _static_facts().fips_enabled,
        **_storage_facts(paths),
        "supported_bigstore_drivers": list(SUPPORTED_BIGSTORE_DRIVERS),
        "available_addresses": addresses,
        "available_addrs": addresses,
    }


def node_facts_for_record(*, paths: StoragePaths, addr: str) -> dict[str, Any]:
    """The machine facts a node object carries (docs/api-contract.md §6), for the node's record.

    The caller adds uid, addr, software_version and the cluster-side fields. `addr` is part of the
    signature callers use but no fact here depends on it. `boot_time` (uptime is computed from
    it when read) is here and not only in the node's periodic refresh (cluster/health.py): a
    record written without it was rewritten by the node's first refresh, one more write that
    every node of the cluster received right after each create and join.
    """
    del addr
    return {**_host_facts(), **_storage_facts(paths), "boot_time": int(psutil.boot_time())}
