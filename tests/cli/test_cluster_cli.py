"""The commands of a node in a cluster: nodes, cluster info, license, users (on one shared
cluster), and joining a second node, all through the real `cnm` subprocess."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli.clikit import ADMIN, JOIN_NOT_SERVED, assert_plain, password_env, run_cnm
from harness.agents import Agent, AgentFactory


def login(agent: Agent) -> tuple[str, ...]:
    return ("--node", agent.https_url, "--ca-file", str(agent.ca_file), "-u", ADMIN[0])


def test_node_list_and_show_as_table_and_json(cluster: Agent) -> None:
    table = run_cnm("node", "list", *login(cluster), env=password_env())
    assert table.code == 0, table
    for header in ("uid", "address", "rack", "status", "store role", "memory", "uptime"):
        assert header in table.stdout
    assert cluster.addr in table.stdout
    assert "active" in table.stdout
    assert_plain(table)

    listed = run_cnm("node", "list", *login(cluster), "-o", "json", env=password_env())
    assert listed.code == 0, listed
    nodes = listed.json()
    assert [n["uid"] for n in nodes] == [1]
    assert nodes[0]["addr"] == cluster.addr

    shown = run_cnm("node", "show", "1", *login(cluster), env=password_env())
    assert shown.code == 0, shown
    assert "total_memory" in shown.stdout
    assert "GiB" in shown.stdout or "MiB" in shown.stdout

    missing = run_cnm("node", "show", "99", *login(cluster), env=password_env())
    assert missing.code == 1, missing
    assert "error: [node_not_found]" in missing.stderr


def test_cluster_info_license_and_users(cluster: Agent) -> None:
    info = run_cnm("cluster", "info", *login(cluster), env=password_env())
    assert info.code == 0, info
    assert "c1.example.com" in info.stdout
    assert "CA fingerprint" in info.stdout

    document = run_cnm("-o", "json", "cluster", "info", *login(cluster), env=password_env())
    assert document.code == 0, document
    assert document.json()["name"] == "c1.example.com"
    assert len(document.json()["ca_fingerprint"]) == 95  # 32 bytes as hex pairs with colons

    license = run_cnm("license", "show", *login(cluster), env=password_env())
    assert license.code == 0, license
    assert "expiration_date" in license.stdout

    users = run_cnm("user", "list", *login(cluster), "-o", "json", env=password_env())
    assert users.code == 0, users
    assert ADMIN[0] in [u["email"] for u in users.json()]


def test_cluster_backup_writes_a_snapshot_that_info_then_shows(cluster: Agent) -> None:
    taken = run_cnm("-o", "json", "cluster", "backup", *login(cluster), env=password_env())
    assert taken.code == 0, taken
    written = Path(taken.json()["file"])
    assert written.is_file() and written.is_relative_to(cluster.persistent_path)
    shown = run_cnm("cluster", "backup", *login(cluster), env=password_env())
    assert shown.code == 0 and "store snapshot written" in shown.stdout, shown
    info = run_cnm("-o", "json", "cluster", "info", *login(cluster), env=password_env())
    assert info.json()["last_backup_time"] >= taken.json()["time"]


def test_wrong_password_exits_1_with_the_code(cluster: Agent) -> None:
    wrong = run_cnm("user", "list", *login(cluster), env=password_env("not-the-password"))
    assert wrong.code == 1, wrong
    assert "error: [unauthorized]" in wrong.stderr
    assert "Traceback" not in wrong.stderr
    # With --password-stdin the password is the first line of stdin.
    stdin = run_cnm("user", "list", *login(cluster), "--password-stdin", stdin=ADMIN[1] + "\n")
    assert stdin.code == 0, stdin


def test_user_add_then_listed(cluster: Agent) -> None:
    added = run_cnm(
        "user", "add", "--email", "viewer@example.com", "--role", "cluster_viewer",
        *login(cluster), env={**password_env(), "CNM_NEW_PASSWORD": "viewer-pass-1"},
    )  # fmt: skip
    assert added.code == 0, added
    users = run_cnm("user", "list", *login(cluster), "-o", "json", env=password_env())
    roles = {u["email"]: u["role"] for u in users.json()}
    assert roles["viewer@example.com"] == "cluster_viewer"
    # The new user logs in; its role may not list users: 403, exit 1.
    as_viewer = (*login(cluster)[:-1], "viewer@example.com")
    denied = run_cnm("user", "list", *as_viewer, env=password_env("viewer-pass-1"))
    assert denied.code == 1, denied
    assert "[insufficient_permissions]" in denied.stderr
    nodes = run_cnm("node", "list", *as_viewer, env=password_env("viewer-pass-1"))
    assert nodes.code == 0, nodes


def test_license_install_of_a_bad_file_exits_1(cluster: Agent, tmp_path: Path) -> None:
    bad = tmp_path / "bad.license"
    bad.write_text("----- LICENSE START -----\nnot a license\n----- LICENSE END -----\n")
    result = run_cnm("license", "install", str(bad), *login(cluster), env=password_env())
    assert result.code == 1, result
    assert "error: [invalid_license]" in result.stderr
    assert_plain(result)


def test_license_issue_then_install(
    cluster: Agent, vendor_key: tuple[Path, Path], tmp_path: Path
) -> None:
    license = tmp_path / "acme.license"
    issued = run_cnm(
        "license", "issue", "--key", str(vendor_key[0]), "--owner", "Acme", "--cluster-name",
        "c1.example.com", "--days", "30", "--shards-limit", "8", "--nodes-limit", "3",
        "--out", str(license),
    )  # fmt: skip
    assert issued.code == 0, issued
    installed = run_cnm("license", "install", str(license), *login(cluster), env=password_env())
    assert installed.code == 0, installed
    assert "Acme" in installed.stdout
    shown = run_cnm("license", "show", *login(cluster), "-o", "json", env=password_env())
    assert (shown.json()["owner"], shown.json()["shards_limit"]) == ("Acme", 8)


def test_join_a_second_node(agents: AgentFactory) -> None:
    first, second = agents.start(), agents.start()
    env = password_env()
    created = run_cnm(
        "cluster", "create", "c1.example.com", "-u", ADMIN[0], "--node", first.http_url, "--wait",
        env=env,
    )  # fmt: skip
    assert created.code == 0, created
    info = run_cnm(
        "cluster", "info", "-u", ADMIN[0], "--node", first.http_url, "-o", "json", env=env
    )
    fingerprint = info.json()["ca_fingerprint"]
    join = ("cluster", "join", "--nodes", first.addr, "-u", ADMIN[0], "--node", second.http_url)

    denied = run_cnm(*join, "--wait", env=password_env("wrong-password"))
    assert denied.code == 1, denied
    if JOIN_NOT_SERVED in denied.stderr:
        pytest.skip("the agent does not serve join_cluster yet: " + denied.stderr.strip())
    assert "error: [access_denied]" in denied.stderr

    joined = run_cnm(*join, "--ca-fingerprint", fingerprint, "--wait", env=env)
    assert joined.code == 0, joined
    assert "c1.example.com" in joined.stdout
    assert_plain(joined)
    nodes = run_cnm("node", "list", "-u", ADMIN[0], "--node", first.http_url, "-o", "json", env=env)
    assert sorted(n["addr"] for n in nodes.json()) == sorted([first.addr, second.addr])
