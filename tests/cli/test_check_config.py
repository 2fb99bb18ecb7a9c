"""`cnm node run --check-config` (issue 13): the effective configuration with the source of each
value, exit 0 when fine and 2 on a bad value, and nothing started."""

from __future__ import annotations

import re
from pathlib import Path

from cli.clikit import run_cnm
from cnm.config import NodeConfig
from cnm.ops.config_report import problems


def rows(stdout: str) -> dict[str, tuple[str, str]]:
    """{setting: (value, source)} from the report's table."""
    found = {}
    for line in stdout.splitlines():
        match = re.match(r"^  (\w+)\s+(.*?)\s+\[(.*)\]$", line)
        if match:
            found[match.group(1)] = (match.group(2), match.group(3))
    return found


def test_each_value_names_its_source(tmp_path: Path) -> None:
    config = tmp_path / "cnm.toml"
    config.write_text('https_port = 9555\nlog_format = "json"\nhttp_port = 8099\n')
    data_dir = tmp_path / "data"
    result = run_cnm(
        "node", "run", "--check-config", "--config", str(config),
        "--addr", "127.0.0.1", "--data-dir", str(data_dir), "--http-port", "8111",
        env={"CNM_LOG_LEVEL": "debug", "CNM_LOG_FORMAT": "text"},
    )  # fmt: skip
    assert result.code == 0, result
    table = rows(result.stdout)
    assert table["addr"] == ("127.0.0.1", "--addr")
    assert table["http_port"] == ("8111", "--http-port")  # the flag beats the file
    assert table["https_port"] == ("9555", f"config file {config}")
    assert table["log_format"] == ("text", "$CNM_LOG_FORMAT")  # the environment beats the file
    assert table["log_level"] == ("debug", "$CNM_LOG_LEVEL")
    assert table["etcd_peer_port"] == ("2380", "default")
    assert set(table) >= {"persistent_path", "license_public_keys", "auth_cache_seconds"}
    assert "configuration: OK" in result.stdout
    assert not data_dir.exists()  # nothing started, nothing created


def test_a_bad_value_exits_2_naming_the_key_and_source(tmp_path: Path) -> None:
    result = run_cnm(
        "node", "run", "--check-config", "--addr", "127.0.0.1",
        env={"CNM_ETCD_PEER_PORT": "70000"},
    )  # fmt: skip
    assert result.code == 2, result
    assert "etcd_peer_port (from $CNM_ETCD_PEER_PORT)" in result.stderr


def test_problems_on_this_host_exit_2(tmp_path: Path) -> None:
    result = run_cnm(
        "node", "run", "--check-config", "--addr", "192.0.2.77", "--https-port", "8080",
        "--etcd-binary", str(tmp_path / "no-etcd"), "--data-dir", str(tmp_path / "d"),
    )  # fmt: skip
    assert result.code == 2, result
    assert "addr: 192.0.2.77 is not an address of this host" in result.stderr
    assert "http_port, https_port: the same port 8080 twice" in result.stderr
    assert "etcd_binary:" in result.stderr
    assert "2 problem(s)" not in result.stdout and "3 problem(s)" in result.stdout


def test_unwritable_data_dir_and_unreadable_key_are_problems(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    config = NodeConfig(
        addr="127.0.0.1",
        data_dir=blocker / "data",
        license_public_keys=(str(tmp_path / "missing.pub"),),
    )
    found = problems(config)
    assert any(p.startswith("data_dir:") for p in found), found
    assert any(p.startswith("license_public_keys:") for p in found), found
