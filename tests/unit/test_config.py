"""NodeConfig: defaults < TOML file < environment (CNM_*) < flags, and errors that name the key
and the source it came from."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from cnm.config import (
    DEFAULT_DATA_DIR,
    FIELD_NAMES,
    ConfigurationError,
    NodeConfig,
    load_node_config,
    with_overrides,
)


def write_toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cnm.toml"
    path.write_text(text)
    return path


def load(
    *,
    flags: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
    config_file: Path | None = None,
    default_addr: str | None = "127.0.0.1",
) -> NodeConfig:
    # An explicit env (never os.environ): the machine's CNM_* variables must not leak in.
    return load_node_config(
        flags=flags, env=env or {}, config_file=config_file, default_addr=default_addr
    )


def error_of(**kw: Any) -> str:
    with pytest.raises(ConfigurationError) as caught:
        load(**kw)
    return str(caught.value)


def test_defaults() -> None:
    config = load()
    assert config.addr == "127.0.0.1"
    assert config.data_dir == DEFAULT_DATA_DIR == Path("/var/opt/cnm")
    assert (config.http_port, config.https_port) == (8080, 9443)
    assert (config.etcd_client_port, config.etcd_peer_port) == (2379, 2380)
    assert config.etcd_binary == "etcd"
    assert (config.log_level, config.log_format) == ("info", "text")
    assert config.persistent_path == Path("/var/opt/redislabs/persist")
    assert config.ephemeral_path == Path("/var/opt/redislabs/tmp")
    assert config.auth_cache_seconds == 30.0
    assert config.license_public_keys == ()


def test_precedence_defaults_file_env_flags(tmp_path: Path) -> None:
    file = write_toml(
        tmp_path,
        'http_port = 1001\nhttps_port = 1002\netcd_client_port = 1003\nlog_level = "debug"\n',
    )
    env = {"CNM_HTTPS_PORT": "2002", "CNM_ETCD_CLIENT_PORT": "2003"}
    flags = {"etcd_client_port": 3003}
    config = load(flags=flags, env=env, config_file=file)
    assert config.http_port == 1001  # file over default
    assert config.https_port == 2002  # env over file
    assert config.etcd_client_port == 3003  # flag over env and file
    assert config.log_level == "debug"  # file, nothing above it
    assert config.etcd_peer_port == 2380  # default, nothing set


def test_flags_with_none_are_not_given(tmp_path: Path) -> None:
    file = write_toml(tmp_path, "http_port = 1001\n")
    config = load(flags={"http_port": None, "https_port": None}, config_file=file)
    assert config.http_port == 1001
    assert config.https_port == 9443


def test_addr_from_each_source() -> None:
    assert load(default_addr="10.0.0.5").addr == "10.0.0.5"
    assert load(env={"CNM_ADDR": "10.0.0.6"}, default_addr="10.0.0.5").addr == "10.0.0.6"
    assert load(flags={"addr": "::1"}, env={"CNM_ADDR": "10.0.0.6"}).addr == "::1"


def test_no_addr_anywhere() -> None:
    message = error_of(default_addr=None)
    assert message.startswith("addr:")


def test_file_keys_may_use_hyphens(tmp_path: Path) -> None:
    file = write_toml(tmp_path, 'data-dir = "/srv/cnm"\nhttp-port = 18080\n')
    config = load(config_file=file)
    assert config.data_dir == Path("/srv/cnm")
    assert config.http_port == 18080


def test_every_field_from_the_environment(tmp_path: Path) -> None:
    env = {
        "CNM_ADDR": "10.1.2.3",
        "CNM_DATA_DIR": str(tmp_path),
        "CNM_HTTP_PORT": "18080",
        "CNM_HTTPS_PORT": "19443",
        "CNM_ETCD_CLIENT_PORT": "12379",
        "CNM_ETCD_PEER_PORT": "12380",
        "CNM_ETCD_BINARY": "/opt/etcd/bin/etcd",
        "CNM_LOG_LEVEL": "WARNING",
        "CNM_LOG_FORMAT": "json",
        "CNM_PERSISTENT_PATH": "/p",
        "CNM_EPHEMERAL_PATH": "/e",
        "CNM_BIGSTORE_PATH": "/f",
        "CNM_SOCKET_DIR": "/s",
        "CNM_CONF_DIR": "/c",
        "CNM_INSTALL_DIR": "/i",
        "CNM_OS_USER": "svc",
        "CNM_AUTH_CACHE_SECONDS": "2.5",
        "CNM_NODE_CERT_LIFETIME": "30",
        "CNM_LICENSE_PUBLIC_KEYS": "key-a,key-b,",
    }
    assert {name.removeprefix("CNM_").lower() for name in env} == set(FIELD_NAMES)
    config = load(env=env, default_addr=None)
    assert config == NodeConfig(
        addr="10.1.2.3",
        data_dir=tmp_path,
        http_port=18080,
        https_port=19443,
        etcd_client_port=12379,
        etcd_peer_port=12380,
        etcd_binary="/opt/etcd/bin/etcd",
        log_level="WARNING",
        log_format="json",
        persistent_path=Path("/p"),
        ephemeral_path=Path("/e"),
        bigstore_path=Path("/f"),
        socket_dir=Path("/s"),
        conf_dir=Path("/c"),
        install_dir=Path("/i"),
        os_user="svc",
        auth_cache_seconds=2.5,
        node_cert_lifetime=30,
        license_public_keys=("key-a", "key-b"),
    )
    assert type(config.http_port) is int
    assert isinstance(config.data_dir, Path)


def test_lists_from_file(tmp_path: Path) -> None:
    file = write_toml(tmp_path, 'license_public_keys = ["k1", "k2"]\n')
    assert load(config_file=file).license_public_keys == ("k1", "k2")
    bad = write_toml(tmp_path, "license_public_keys = [1, 2]\n")
    message = error_of(config_file=bad)
    assert "license_public_keys" in message and "list of strings" in message


def test_unknown_key_in_file_is_named(tmp_path: Path) -> None:
    file = write_toml(tmp_path, "http_port = 8081\nhttp_prot = 8082\n")
    message = error_of(config_file=file)
    assert str(file) in message
    assert "unknown key 'http_prot'" in message
    assert "http_port" in message  # the known keys are listed to spot the typo


def test_unknown_cnm_variables_are_ignored() -> None:
    # The environment is shared with everything else on the host; only known names are read.
    assert load(env={"CNM_SOMETHING_ELSE": "x"}).http_port == 8080


def test_unreadable_or_invalid_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.toml"
    assert str(missing) in error_of(config_file=missing)
    broken = write_toml(tmp_path, "http_port = \n")
    message = error_of(config_file=broken)
    assert str(broken) in message and "line 1" in message


@pytest.mark.parametrize(
    ("key", "text", "expected"),
    [
        ("http_port", '"eighty"', "(got 'eighty')"),
        ("http_port", "true", "expected an integer"),
        ("https_port", "0", "expected a port number 1..65535"),
        ("etcd_peer_port", "65536", "expected a port number 1..65535"),
        ("etcd_client_port", "-1", "expected a port number 1..65535"),
        ("data_dir", "5", "expected a path"),
        ("data_dir", '""', "expected a path"),
        ("etcd_binary", "5", "expected a string"),
        ("os_user", "[1]", "expected a string"),
        ("log_format", '"xml"', "expected 'text' or 'json'"),
        ("log_level", '"loud"', "expected debug, info, warning or error"),
        ("addr", '"not-an-ip"', "does not appear to be"),
        ("auth_cache_seconds", '"soon"', "could not convert"),
        ("license_public_keys", "5", "expected a list of strings"),
    ],
)
def test_wrong_type_in_file_names_key_and_file(
    tmp_path: Path, key: str, text: str, expected: str
) -> None:
    file = write_toml(tmp_path, f"{key} = {text}\n")
    message = error_of(config_file=file)
    assert message.startswith(f"{key} (from config file {file}): ")
    assert expected in message


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("CNM_HTTP_PORT", "80a", "invalid literal"),
        ("CNM_HTTPS_PORT", "99999", "expected a port number 1..65535"),
        ("CNM_HTTP_PORT", "0", "expected a port number 1..65535"),
        ("CNM_DATA_DIR", "", "expected a path"),
        ("CNM_LOG_FORMAT", "yaml", "expected 'text' or 'json'"),
        ("CNM_ADDR", "300.1.1.1", "does not appear to be"),
        ("CNM_AUTH_CACHE_SECONDS", "half a minute", "could not convert"),
    ],
)
def test_wrong_value_in_environment_names_variable(
    variable: str, value: str, expected: str
) -> None:
    message = error_of(env={variable: value})
    name = variable.removeprefix("CNM_").lower()
    assert message.startswith(f"{name} (from ${variable}): ")
    assert expected in message
    assert repr(value) in message  # what was given, to compare with what was meant


@pytest.mark.parametrize(
    ("flag", "value", "shown"),
    [
        ("http_port", 70000, "--http-port"),
        ("etcd_peer_port", 0, "--etcd-peer-port"),
        ("log_level", "verbose", "--log-level"),
        ("addr", "localhost", "--addr"),
    ],
)
def test_wrong_flag_names_the_option(flag: str, value: Any, shown: str) -> None:
    message = error_of(flags={flag: value})
    assert message.startswith(f"{flag} (from {shown}): ")


@pytest.mark.parametrize("port", [1, 80, 8080, 65535])
def test_port_range_bounds_accepted(port: int) -> None:
    config = load(flags={"http_port": port}, env={"CNM_HTTPS_PORT": str(port)})
    assert config.http_port == config.https_port == port


def test_error_in_a_lower_source_is_reported_even_when_overridden(tmp_path: Path) -> None:
    # A typo in the file is an error even if a flag sets the same key: silently ignoring a
    # broken file would hide it until the flag is dropped.
    file = write_toml(tmp_path, "http_port = 0\n")
    message = error_of(config_file=file, flags={"http_port": 8081})
    assert "config file" in message


def test_float_for_an_integer_is_rejected(tmp_path: Path) -> None:
    file = write_toml(tmp_path, "http_port = 8080.9\n")
    message = error_of(config_file=file)
    assert message.startswith(f"http_port (from config file {file}): ")


def test_boolean_for_a_number_is_rejected(tmp_path: Path) -> None:
    file = write_toml(tmp_path, "auth_cache_seconds = true\n")
    assert "auth_cache_seconds" in error_of(config_file=file)


def test_negative_cache_time_is_rejected() -> None:
    assert "auth_cache_seconds" in error_of(env={"CNM_AUTH_CACHE_SECONDS": "-1"})


def test_config_is_frozen_and_overrides_make_a_copy() -> None:
    config = load()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.http_port = 1  # type: ignore[misc]
    changed = with_overrides(config, http_port=18080)
    assert changed.http_port == 18080
    assert config.http_port == 8080


def test_host_brackets_ipv6() -> None:
    assert load(flags={"addr": "10.0.0.1"}).host == "10.0.0.1"
    assert load(flags={"addr": "fe80::1"}).host == "[fe80::1]"


def test_reads_os_environ_when_no_env_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CNM_HTTP_PORT", "18081")
    assert load_node_config(default_addr="127.0.0.1").http_port == 18081


@pytest.mark.parametrize("value", ["0", "-5", "400000000"])
def test_a_node_certificate_lifetime_out_of_range_is_refused(value: str) -> None:
    with pytest.raises(ConfigurationError, match="node_cert_lifetime"):
        load(env={"CNM_ADDR": "10.1.2.3", "CNM_NODE_CERT_LIFETIME": value}, default_addr=None)
