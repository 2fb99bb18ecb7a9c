"""Semantic checks of a bootstrap request (config_error) and of its paths (path_error)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import psutil
import pytest

from cnm.bootstrap.schema import BootstrapRequest
from cnm.bootstrap.validation import check_paths, check_request, given_paths
from cnm.errors import ConfigError, PathError

CREATE: dict[str, Any] = {
    "action": "create_cluster",
    "cluster": {"name": "cluster.example.com"},
    "credentials": {"username": "admin@example.com", "password": "s3cret-pass"},
    "node": {"identity": {"addr": "127.0.0.1", "rack_id": "rack-1"}},
}
JOIN: dict[str, Any] = {
    "action": "join_cluster",
    "cluster": {"nodes": ["127.0.0.1"]},
    "credentials": {"username": "admin@example.com", "password": "whatever"},
}
RECOVER: dict[str, Any] = {"action": "recover_cluster", "recovery_filename": "/backup/ccs.rdb"}

ACTION_BODIES = {"create_cluster": CREATE, "join_cluster": JOIN, "recover_cluster": RECOVER}

UNBOUND_ADDRESS = "203.0.113.77"  # TEST-NET-3: never assigned to a real interface


def request(base: dict[str, Any], **changes: Any) -> BootstrapRequest:
    """`base` with dotted-path changes applied; a value of None removes the field."""
    document = BootstrapRequest.model_validate(base).model_dump(exclude_unset=True)
    for dotted, value in changes.items():
        *parents, leaf = dotted.split("__")
        target = document
        for parent in parents:
            target = target.setdefault(parent, {})
        if value is None:
            target.pop(leaf, None)
        else:
            target[leaf] = value
    return BootstrapRequest.model_validate(document)


def config_error(req: BootstrapRequest, action: str) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        check_request(req, action)
    return caught.value


def local_addresses() -> set[str]:
    return {
        entry.address.split("%")[0]
        for entries in psutil.net_if_addrs().values()
        for entry in entries
    }


# --- valid bodies -------------------------------------------------------------------------------


@pytest.mark.parametrize("action", list(ACTION_BODIES))
def test_valid_bodies_pass(action: str) -> None:
    check_request(request(ACTION_BODIES[action]), action)


def test_missing_body_action_is_taken_from_the_path() -> None:
    check_request(request(CREATE, action=None), "create_cluster")


def test_full_join_body_passes() -> None:
    req = request(
        JOIN,
        cluster__nodes=["10.0.0.1", "node2.example.com:9443", "[2001:db8::1]:9443", "::1"],
        cluster__ca_fingerprint="SHA256:" + ":".join(["AB"] * 32),
        node__identity={"addr": "127.0.0.5", "external_addr": ["2001:db8::5", "198.51.100.1"]},
        max_retries=100,
        retry_time=3600,
    )
    check_request(req, "join_cluster")


def test_certificate_join_passes() -> None:
    req = request(JOIN, credentials={"client_cert": "PEM", "client_key": "PEM"})
    check_request(req, "join_cluster")


def test_empty_rack_id_and_addr_mean_absent() -> None:
    check_request(request(CREATE, node__identity={"addr": "", "rack_id": ""}), "create_cluster")


def test_address_of_a_real_interface_passes() -> None:
    candidates = sorted(a for a in local_addresses() if "." in a and not a.startswith("127."))
    if not candidates:
        pytest.skip("this machine has no IPv4 address besides loopback")
    check_request(request(CREATE, node__identity__addr=candidates[0]), "create_cluster")


# --- action -------------------------------------------------------------------------------------


def test_body_action_disagreeing_with_the_path() -> None:
    error = config_error(request(CREATE, action="join_cluster"), "create_cluster")
    assert error.message == "action: body says 'join_cluster' but the path is create_cluster"
    assert error.details == {"fields": ["action"]}
    assert error.error_code == "config_error"


def test_unknown_path_action() -> None:
    error = config_error(request(CREATE), "destroy_cluster")
    assert error.message.startswith("action: 'destroy_cluster' is not a bootstrap action")


def test_several_problems_are_reported_together() -> None:
    req = request(CREATE, cluster__name="bad_name", credentials__password="short")
    error = config_error(req, "create_cluster")
    assert error.details["fields"] == ["cluster.name", "credentials.password"]
    assert "; " in error.message


# --- create -------------------------------------------------------------------------------------


def test_create_requires_a_cluster_name() -> None:
    error = config_error(request(CREATE, cluster__name=None), "create_cluster")
    assert error.message == "cluster.name: required to create a cluster"


@pytest.mark.parametrize(
    "name", ["mycluster", "my.cluster", "a-b.example.com", "a" * 31 + "." + "b" * 32, "1a.b2"]
)
def test_good_cluster_names(name: str) -> None:
    check_request(request(CREATE, cluster__name=name), "create_cluster")


@pytest.mark.parametrize(
    "name",
    [
        "",
        "my cluster",
        "my_cluster.com",
        ".cluster.com",
        "cluster.com.",
        "-cluster.com",
        "cluster-.com",
        "a..b",
        "x" * 65,
        "a" * 32 + "." + "b" * 32,
        "x" * 64,
        "a." + "b" * 64,
        "clüster.com",
    ],
)
def test_bad_cluster_names(name: str) -> None:
    error = config_error(request(CREATE, cluster__name=name), "create_cluster")
    assert error.message.startswith("cluster.name: ")
    assert error.details == {"fields": ["cluster.name"]}


@pytest.mark.parametrize("username", [None, ""])
def test_create_requires_a_username(username: str | None) -> None:
    error = config_error(request(CREATE, credentials__username=username), "create_cluster")
    assert error.message.startswith("credentials.username: required to create a cluster")


def test_create_requires_a_password() -> None:
    error = config_error(request(CREATE, credentials__password=None), "create_cluster")
    assert error.message.startswith("credentials.password: required to create a cluster")


def test_create_password_minimum_length() -> None:
    error = config_error(request(CREATE, credentials__password="1234567"), "create_cluster")
    assert error.message == "credentials.password: must be at least 8 characters"
    check_request(request(CREATE, credentials__password="12345678"), "create_cluster")
    with pytest.raises(ConfigError, match="at least 12 characters"):
        check_request(request(CREATE), "create_cluster", password_min_length=12)


@pytest.mark.parametrize("char", ["&", "<", ">", '"'])
def test_username_forbidden_characters(char: str) -> None:
    req = request(CREATE, credentials__username=f"ad{char}min")
    error = config_error(req, "create_cluster")
    assert error.message == 'credentials.username: must not contain any of & < > "'


@pytest.mark.parametrize("action", ["create_cluster", "join_cluster"])
def test_password_and_certificate_together(action: str) -> None:
    req = request(
        ACTION_BODIES[action], credentials__client_cert="PEM", credentials__client_key="K"
    )
    error = config_error(req, action)
    assert error.message == (
        "credentials: give either username/password or client_cert/client_key, not both"
    )


# --- join ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("nodes", [None, []])
def test_join_requires_nodes(nodes: list[str] | None) -> None:
    error = config_error(request(JOIN, cluster__nodes=nodes), "join_cluster")
    assert error.message.startswith("cluster.nodes: required to join a cluster")


@pytest.mark.parametrize(
    "node",
    [
        "",
        "10.0.0.1:0",
        "10.0.0.1:65536",
        "10.0.0.1:",
        "10.0.0.1:94a3",
        "host name",
        "under_score.com",
        "999.1.1.1",
        "[2001:db8::1",
        "[10.0.0.1]:9443",
        "[2001:db8::1]9443",
        "2001:db8::zz",
        "http://10.0.0.1",
    ],
)
def test_join_bad_node_addresses(node: str) -> None:
    error = config_error(request(JOIN, cluster__nodes=["10.0.0.1", node]), "join_cluster")
    assert error.message.startswith(f"cluster.nodes: {node!r} is not a host or host:port")


@pytest.mark.parametrize(
    "node", ["10.0.0.1:1", "node-2:65535", "node2.example.com.", "[::1]", "fe80::1"]
)
def test_join_good_node_addresses(node: str) -> None:
    check_request(request(JOIN, cluster__nodes=[node]), "join_cluster")


def test_join_requires_credentials() -> None:
    error = config_error(request(JOIN, credentials=None), "join_cluster")
    assert error.message.startswith("credentials: required to join a cluster")


def test_join_username_without_password() -> None:
    error = config_error(request(JOIN, credentials__password=None), "join_cluster")
    assert error.message.startswith("credentials.password: required with credentials.username")


def test_join_password_without_username() -> None:
    error = config_error(request(JOIN, credentials__username=None), "join_cluster")
    assert error.message.startswith("credentials.username: required with credentials.password")


def test_join_certificate_without_key() -> None:
    req = request(JOIN, credentials={"client_cert": "PEM"})
    error = config_error(req, "join_cluster")
    assert error.message == "credentials.client_key: required with credentials.client_cert"


def test_join_password_length_is_the_cluster_business() -> None:
    check_request(request(JOIN, credentials__password="x"), "join_cluster")


@pytest.mark.parametrize(
    "fingerprint", ["ab" * 31, "ab" * 33, "zz" * 32, "sha1:" + "ab" * 32, "sha256:"]
)
def test_join_bad_ca_fingerprint(fingerprint: str) -> None:
    error = config_error(request(JOIN, cluster__ca_fingerprint=fingerprint), "join_cluster")
    assert error.message.startswith("cluster.ca_fingerprint: expected a SHA-256 fingerprint")


# --- recover ------------------------------------------------------------------------------------


@pytest.mark.parametrize("filename", [None, ""])
def test_recover_requires_a_recovery_filename(filename: str | None) -> None:
    error = config_error(request(RECOVER, recovery_filename=filename), "recover_cluster")
    assert error.message.startswith("recovery_filename: required to recover a cluster")


# --- node identity and retries (any action) ----------------------------------------------------


@pytest.mark.parametrize("field", ["rack_id", "second_rack_id"])
@pytest.mark.parametrize("rack", ["1rack", "rack-", "rack_", "ra ck", "r" * 64, "räck", "-r"])
def test_bad_rack_ids(field: str, rack: str) -> None:
    error = config_error(request(CREATE, **{f"node__identity__{field}": rack}), "create_cluster")
    assert error.message.startswith(f"node.identity.{field}: ")
    assert error.details == {"fields": [f"node.identity.{field}"]}


@pytest.mark.parametrize("rack", ["r", "Rack_1-a", "r" * 63, "zone-1b"])
def test_good_rack_ids(rack: str) -> None:
    check_request(request(JOIN, node__identity__rack_id=rack), "join_cluster")


def test_addr_must_be_an_address_of_this_machine() -> None:
    if UNBOUND_ADDRESS in local_addresses():
        pytest.skip(f"{UNBOUND_ADDRESS} is bound on this machine")
    error = config_error(request(CREATE, node__identity__addr=UNBOUND_ADDRESS), "create_cluster")
    assert (
        error.message == f"node.identity.addr: {UNBOUND_ADDRESS} is not an address of this machine"
    )


@pytest.mark.parametrize("addr", ["127.0.0.1", "127.0.0.42", "127.255.255.254"])
def test_all_of_127_slash_8_is_local(addr: str) -> None:
    check_request(request(JOIN, node__identity__addr=addr), "join_cluster")


def test_addr_must_be_an_ip_address() -> None:
    error = config_error(request(CREATE, node__identity__addr="localhost"), "create_cluster")
    assert error.message == "node.identity.addr: 'localhost' is not an IP address"


def test_external_addr_entries_must_be_ip_addresses() -> None:
    req = request(JOIN, node__identity__external_addr=["198.51.100.1", "example.com"])
    error = config_error(req, "join_cluster")
    assert error.message == "node.identity.external_addr: 'example.com' is not an IP address"


@pytest.mark.parametrize(("field", "value"), [("max_retries", 101), ("retry_time", 3601)])
def test_retry_bounds(field: str, value: int) -> None:
    error = config_error(request(JOIN, **{field: value}), "join_cluster")
    assert error.message.startswith(f"{field}: must be between 0 and ")
    assert error.details == {"fields": [field]}


# --- paths --------------------------------------------------------------------------------------

FIELD = "node.paths.persistent_path"


def path_error(path: str) -> PathError:
    with pytest.raises(PathError) as caught:
        check_paths({"node.paths.ephemeral_path": "/tmp", FIELD: path})
    assert caught.value.details == {"path": path, "field": FIELD}
    assert caught.value.error_code == "path_error"
    return caught.value


def test_good_directory_passes_and_leaves_nothing(tmp_path: Path) -> None:
    check_paths({FIELD: str(tmp_path), "node.paths.ephemeral_path": str(tmp_path)})
    assert list(tmp_path.iterdir()) == []


def test_missing_path(tmp_path: Path) -> None:
    missing = str(tmp_path / "x" / "y")
    error = path_error(missing)
    assert error.message == (
        f"{FIELD}: {missing} does not exist; create it (and make it writable by the agent) "
        "or give another path"
    )


def test_file_instead_of_directory(tmp_path: Path) -> None:
    file = tmp_path / "file"
    file.write_text("x")
    assert path_error(str(file)).message.startswith(f"{FIELD}: {file} is not a directory")
    assert "does not exist" in path_error(str(file / "below")).message


def test_relative_path() -> None:
    assert "is not an absolute path" in path_error("var/opt").message


def test_read_only_directory(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    if os.geteuid() != 0:
        ro.chmod(0o555)  # enough for anyone but root
        undo = ["chmod", "0755", str(ro)]
    else:
        # root writes through mode bits; the immutable attribute stops it for real.
        chattr = shutil.which("chattr")
        if chattr is None:
            pytest.skip("running as root and chattr is not available: cannot make a dir read-only")
        made = subprocess.run([chattr, "+i", str(ro)], capture_output=True, check=False)
        if made.returncode != 0:
            pytest.skip(f"chattr +i failed on this file system: {made.stderr.decode().strip()}")
        undo = [chattr, "-i", str(ro)]
    try:
        error = path_error(str(ro))
    finally:
        subprocess.run(undo, check=True)
    assert error.message.startswith(f"{FIELD}: {ro} is not writable by the agent (")
    assert list(ro.iterdir()) == []


def test_given_paths() -> None:
    req = BootstrapRequest.model_validate(
        {"node": {"paths": {"persistent_path": "/p", "bigstore_path": "/f"}}}
    )
    assert given_paths(req) == {
        "node.paths.persistent_path": "/p",
        "node.paths.bigstore_path": "/f",
    }
