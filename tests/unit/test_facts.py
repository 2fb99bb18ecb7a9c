"""cnm.node.facts against the real machine, each fact checked through an independent source."""

from __future__ import annotations

import ipaddress
import json
import os
import platform
import shlex
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from cnm.node.facts import (
    StoragePaths,
    _default_route_interface,
    available_addresses,
    default_route_address,
    is_local_address,
    local_node_info,
    node_facts_for_record,
    os_release,
    storage_size,
)

EXAMPLE_KEYS = {
    "uid",
    "software_version",
    "cores",
    "total_memory",
    "uptime",
    "architecture",
    "os_family",
    "os_name",
    "os_semantic_version",
    "os_version",
    "short_hostname",
    "fips_enabled",
    "persistent_storage_path",
    "persistent_storage_size",
    "ephemeral_storage_path",
    "ephemeral_storage_size",
    "bigredis_storage_path",
    "supported_bigstore_drivers",
    "available_addresses",
}


@pytest.fixture
def paths(tmp_path: Path) -> StoragePaths:
    return StoragePaths(
        persistent_path=str(tmp_path / "persist"),
        ephemeral_path=str(tmp_path / "tmp"),
        bigstore_path=None,
        ccs_persistent_path=str(tmp_path / "persist" / "ccs"),
    )


@pytest.fixture
def info(paths: StoragePaths) -> dict[str, Any]:
    return local_node_info(uid="1", paths=paths, software_version="7.22.0-test")


def info_at(paths: StoragePaths) -> dict[str, Any]:
    """local_node_info of node 1 (software "v") on the loopback address 127.0.0.5."""
    return local_node_info(uid="1", paths=paths, software_version="v", addr="127.0.0.5")


def _read_os_release() -> dict[str, str]:
    fields = {}
    for line in Path("/etc/os-release").read_text().splitlines():
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            fields[key] = " ".join(shlex.split(value))
    return fields


def _ip_json(*args: str) -> list[dict[str, Any]]:
    if shutil.which("ip") is None:
        pytest.skip("iproute2 `ip` not installed")
    out = subprocess.run(["ip", "-j", *args], capture_output=True, text=True, check=True).stdout
    result: list[dict[str, Any]] = json.loads(out)
    return result


def test_every_key_of_the_contract_example_is_present(info: dict[str, Any]) -> None:
    assert EXAMPLE_KEYS - info.keys() == set()
    assert "ccs_persistent_path" not in info
    assert info["uid"] == "1"
    assert info["software_version"] == "7.22.0-test"


def test_field_types_are_strict(paths: StoragePaths) -> None:
    info = info_at(paths)
    for key in ("cores", "total_memory", "uptime"):
        assert type(info[key]) is int, key
    for key in ("persistent_storage_size", "ephemeral_storage_size"):
        assert type(info[key]) is float, key
    assert type(info["fips_enabled"]) is bool
    for key in (
        "uid",
        "software_version",
        "architecture",
        "os_family",
        "os_name",
        "os_semantic_version",
        "os_version",
        "short_hostname",
        "persistent_storage_path",
        "ephemeral_storage_path",
        "bigredis_storage_path",
    ):
        assert type(info[key]) is str, key
    assert info["supported_bigstore_drivers"] == ["rocksdb", "speedb"]
    for entry in info["available_addresses"]:
        assert set(entry) == {"address", "format", "if_name", "private"}
        assert type(entry["address"]) is str
        assert entry["format"] in ("ipv4", "ipv6")
        assert type(entry["if_name"]) is str
        assert type(entry["private"]) is bool
    json.dumps(info)  # the API serialises it as is


def test_uid_none_is_empty_string(paths: StoragePaths) -> None:
    assert local_node_info(uid=None, paths=paths, software_version="v")["uid"] == ""


def test_cores_memory_architecture_match_the_machine(info: dict[str, Any]) -> None:
    assert info["cores"] == os.cpu_count()
    meminfo = dict(
        line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines() if ":" in line
    )
    assert info["total_memory"] == int(meminfo["MemTotal"].split()[0]) * 1024
    assert info["architecture"] == os.uname().machine == platform.machine()


def test_uptime_matches_proc_uptime(info: dict[str, Any]) -> None:
    proc_uptime = float(Path("/proc/uptime").read_text().split()[0])
    # btime in /proc/stat has whole-second resolution.
    assert abs(info["uptime"] - proc_uptime) <= 3


def test_os_fields_match_etc_os_release(info: dict[str, Any]) -> None:
    release = _read_os_release()
    assert info["os_name"] == release["ID"]
    like = release.get("ID_LIKE", "").split()
    assert info["os_family"] == (like[0] if like else release["ID"])
    assert info["os_semantic_version"] == release.get("VERSION_ID", "")
    assert info["os_version"] == release["PRETTY_NAME"]


def test_hostname_and_fips_match_the_kernel(info: dict[str, Any]) -> None:
    kernel_hostname = Path("/proc/sys/kernel/hostname").read_text().strip()
    assert info["short_hostname"] == kernel_hostname.split(".")[0]
    fips = Path("/proc/sys/crypto/fips_enabled")
    assert info["fips_enabled"] is (fips.exists() and fips.read_text().strip() == "1")


def test_storage_sizes_match_statvfs(tmp_path: Path) -> None:
    flash = tmp_path / "flash"
    flash.mkdir()
    paths = StoragePaths(str(tmp_path), str(tmp_path), str(flash), str(tmp_path / "ccs"))
    info = local_node_info(uid=None, paths=paths, software_version="v")
    st = os.statvfs(tmp_path)
    expected = float(st.f_blocks * st.f_frsize)
    assert info["persistent_storage_size"] == expected
    assert info["ephemeral_storage_size"] == expected
    assert info["bigredis_storage_path"] == str(flash)
    assert type(info["bigredis_storage_size"]) is float
    assert info["bigredis_storage_size"] == expected


def test_no_bigstore_gives_empty_path_and_no_size(info: dict[str, Any]) -> None:
    assert info["bigredis_storage_path"] == ""
    assert "bigredis_storage_size" not in info


def test_missing_path_falls_back_to_nearest_ancestor(tmp_path: Path) -> None:
    st = os.statvfs(tmp_path)
    missing = tmp_path / "not" / "yet" / "created"
    assert storage_size(str(missing)) == float(st.f_blocks * st.f_frsize)
    assert storage_size(str(tmp_path)) == storage_size(str(missing))
    root = os.statvfs("/")
    assert storage_size("/no/such/dir/anywhere") == float(root.f_blocks * root.f_frsize)


def test_both_address_keys_hold_the_same_list(info: dict[str, Any]) -> None:
    assert info["available_addrs"] == info["available_addresses"]


def test_addresses_match_ip_addr() -> None:
    expected = set()
    for link in _ip_json("addr"):
        for a in link.get("addr_info", []):
            ip = ipaddress.ip_address(a["local"])
            if ip.is_loopback or (ip.version == 6 and ip.is_link_local):
                continue
            expected.add((str(ip), link["ifname"]))
    got = available_addresses()
    # IPv4 aliases are listed by label (eth0:1) by psutil, by link name by `ip`.
    assert {(e["address"], e["if_name"].split(":")[0]) for e in got} == expected
    for entry in got:
        ip = ipaddress.ip_address(entry["address"])
        assert entry["format"] == f"ipv{ip.version}"
        assert entry["private"] is ip.is_private


def test_addresses_order_ipv4_first_then_by_interface() -> None:
    got = available_addresses()
    keys = [(0 if e["format"] == "ipv4" else 1, e["if_name"]) for e in got]
    assert keys == sorted(keys)


def test_extra_loopback_address_comes_first_on_lo(paths: StoragePaths) -> None:
    info = local_node_info(uid=None, paths=paths, software_version="v", addr="127.0.0.7")
    first = info["available_addresses"][0]
    assert first == {"address": "127.0.0.7", "format": "ipv4", "if_name": "lo", "private": True}
    assert info["available_addrs"] == info["available_addresses"]
    assert [e["address"] for e in info["available_addresses"]].count("127.0.0.7") == 1
    others = info["available_addresses"][1:]
    assert others == available_addresses()


def test_extra_address_that_is_not_loopback_adds_nothing() -> None:
    plain = available_addresses()
    assert available_addresses(extra_local="192.0.2.1") == plain
    assert available_addresses(extra_local="not-an-address") == plain
    if plain:
        # A real interface address is listed once, on its interface.
        assert available_addresses(extra_local=plain[0]["address"]) == plain


def test_is_local_address() -> None:
    assert is_local_address("127.0.0.9")
    assert is_local_address("127.0.0.1")
    assert is_local_address("::1")
    assert not is_local_address("192.0.2.1")
    assert not is_local_address("not-an-address")
    for entry in available_addresses():
        assert is_local_address(entry["address"])


def test_default_route_address_matches_ip_route() -> None:
    address = default_route_address()
    assert is_local_address(address)
    routes = _ip_json("-4", "route", "show", "default")
    if not routes:
        assert address == "127.0.0.1" or ipaddress.ip_address(address).version == 4
        return
    dev = min(routes, key=lambda r: r.get("metric", 0))["dev"]
    (link,) = _ip_json("-4", "addr", "show", "dev", dev)
    assert address in [a["local"] for a in link["addr_info"]]


def test_default_route_interface_parsing(tmp_path: Path) -> None:
    table = tmp_path / "route"
    header = "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\tMTU\tWindow\tIRTT\n"
    table.write_text(
        header
        + "eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n"  # not default
        + "wlan0\t00000000\t010200C0\t0003\t0\t0\t600\t00000000\t0\t0\t0\n"
        + "eth1\t00000000\t010200C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n"
        + "down0\t00000000\t010200C0\t0002\t0\t0\t0\t00000000\t0\t0\t0\n"  # not up
    )
    assert _default_route_interface(str(table)) == "eth1"
    assert _default_route_interface(str(tmp_path / "missing")) is None


def test_os_release_parsing(tmp_path: Path) -> None:
    release = tmp_path / "os-release"
    release.write_text(
        "# a comment\n"
        "\n"
        'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\n'
        "ID=debian\n"
        "ID_LIKE='rhel centos fedora'\n"
        'VERSION_ID="12"\n'
        'ESCAPED="say \\"hi\\" for $5"\n'
        "EMPTY=\n"
        "  # indented comment\n"
        "not a key value line\n"
    )
    assert os_release(str(release)) == {
        "PRETTY_NAME": "Debian GNU/Linux 12 (bookworm)",
        "ID": "debian",
        "ID_LIKE": "rhel centos fedora",
        "VERSION_ID": "12",
        "ESCAPED": 'say "hi" for $5',
        "EMPTY": "",
    }
    assert os_release(str(tmp_path / "missing")) == {}


def test_os_release_default_path_is_etc() -> None:
    assert os_release() == _read_os_release()


def test_node_facts_for_record(paths: StoragePaths) -> None:
    record = node_facts_for_record(paths=paths, addr="127.0.0.5")
    info = info_at(paths)
    # The boot time, which uptime is computed from when a record is read: written with the
    # record, not added by the node's first refresh (one more write seen by every node).
    assert abs(record.pop("boot_time") - (time.time() - info["uptime"])) <= 2
    # The contract's keys but the node's identity, FIPS mode, drivers and addresses.
    assert set(record) == EXAMPLE_KEYS - {
        "uid",
        "software_version",
        "fips_enabled",
        "supported_bigstore_drivers",
        "available_addresses",
    }
    for key, value in record.items():
        if key == "uptime":
            assert abs(value - info[key]) <= 1
        else:
            assert value == info[key], key


def test_repeated_calls_agree(paths: StoragePaths) -> None:
    # Health checks poll GET /v1/bootstrap; the facts read once and cached must not drift.
    # (How fast a call is belongs to the benchmarks, not to this suite.)
    first = info_at(paths)
    for _ in range(3):
        again = info_at(paths)
        assert abs(again.pop("uptime") - first["uptime"]) <= 1
        assert again == {k: v for k, v in first.items() if k != "uptime"}
