"""`cnm bootstrap status` and `cnm cluster create` against real agents, as subprocesses: the
exit codes, what is printed with and without JSON, and waiting (timeout, Ctrl-C, watch)."""

from __future__ import annotations

import selectors
import signal
import subprocess
import time

import httpx

from cli.clikit import (
    ADMIN,
    assert_plain,
    cli_env,
    cnm_argv,
    password_env,
    run_cnm,
)
from harness.addresses import claim_address, release_address
from harness.agents import AgentFactory
from harness.polling import eventually


def test_fresh_node_status_needs_insecure_then_create_waits_to_exit_0(
    agents: AgentFactory,
) -> None:
    agent = agents.start()
    https = agent.https_url

    refused = run_cnm("bootstrap", "status", "--node", https)
    assert refused.code == 4, refused
    assert "--insecure" in refused.stderr

    idle = run_cnm("bootstrap", "status", "--node", https, "--insecure")
    assert idle.code == 0, idle
    assert "idle" in idle.stdout
    assert agent.addr in idle.stdout  # the node's addresses are among its facts
    assert_plain(idle)

    # Global options before the command; the document is the API's own.
    as_json = run_cnm("--node", agent.http_url, "-o", "json", "bootstrap", "status")
    assert as_json.code == 0, as_json
    assert as_json.json()["bootstrap_status"] == {"state": "idle"}
    assert as_json.json()["local_node_info"]["cores"] >= 1

    created = run_cnm(
        "cluster",
        "create",
        "c1.example.com",
        "--username",
        ADMIN[0],
        "--password-stdin",
        "--node",
        https,
        "--insecure",
        "--wait",
        stdin=ADMIN[1] + "\n",
    )
    assert created.code == 0, created
    assert "c1.example.com" in created.stdout
    assert "took" in created.stdout
    assert "completed" in created.stderr  # one progress line per state change
    assert_plain(created)

    # After bootstrap the node's HTTPS certificate comes from the cluster CA.
    def verified() -> bool:
        status = run_cnm(
            "bootstrap",
            "status",
            "--node",
            https,
            "--ca-file",
            str(agent.ca_file),
            "-u",
            ADMIN[0],
            "-o",
            "json",
            env=password_env(),
        )
        return status.code == 0 and status.json()["local_node_info"]["uid"] == "1"

    eventually(verified, timeout=10, message="status verified with the cluster CA")


def test_server_errors_exit_1_timeout_exits_3_and_watch_resumes(agents: AgentFactory) -> None:
    agent = agents.start()
    node = ("--node", agent.http_url)
    env = password_env()

    invalid = run_cnm("cluster", "validate", "create", "bad_name", "-u", ADMIN[0], *node, env=env)
    assert invalid.code == 1, invalid
    assert "error: [config_error]" in invalid.stderr
    assert "cluster.name" in invalid.stderr
    assert "Traceback" not in invalid.stderr

    # Recovery from a backup that is not there fails clearly (waiting is recover's default),
    # whether or not this version recovers at all.
    recover = run_cnm("cluster", "recover", "--file", "/nonexistent/backup.db", *node)
    assert recover.code == 1, recover
    assert "error: [" in recover.stderr
    assert "Traceback" not in recover.stderr

    failed = run_cnm("cluster", "create", "bad_name", "-u", ADMIN[0], *node, "--wait", env=env)
    assert failed.code == 1, failed
    assert "error: [config_error]" in failed.stderr
    assert "retryable: no" in failed.stderr
    assert_plain(failed)

    failed_json = run_cnm(
        "cluster", "create", "bad_name", "-u", ADMIN[0], *node, "--wait", "-o", "json", env=env
    )
    assert failed_json.code == 1, failed_json
    assert failed_json.json()["bootstrap_status"]["error_code"] == "config_error"

    # From error a new request starts over; a deadline shorter than the create exits 3.
    timed_out = run_cnm(
        "cluster", "create", "c1.example.com", "-u", ADMIN[0], *node, "--wait", "--timeout",
        "0.01", env=env,
    )  # fmt: skip
    assert timed_out.code == 3, timed_out
    assert "bootstrap status --watch" in timed_out.stderr

    watched = run_cnm("bootstrap", "status", "--watch", "-u", ADMIN[0], *node, env=env)
    assert watched.code == 0, watched
    assert "completed" in watched.stdout
    assert_plain(watched)

    again = run_cnm("cluster", "create", "c2.example.com", "-u", ADMIN[0], *node, env=env)
    assert again.code == 1, again
    assert "[already_bootstrapped]" in again.stderr


def test_ctrl_c_while_watching_leaves_the_node_running(agents: AgentFactory) -> None:
    agent = agents.start()
    watcher = subprocess.Popen(
        cnm_argv("bootstrap", "status", "--watch", "--node", agent.http_url),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=cli_env(),
    )
    try:
        # An idle node never finishes: wait for the first progress line, then interrupt.
        assert watcher.stderr is not None
        selector = selectors.DefaultSelector()
        selector.register(watcher.stderr, selectors.EVENT_READ)
        deadline = time.monotonic() + 15
        first = b""
        while b"\n" not in first and time.monotonic() < deadline:
            if selector.select(timeout=deadline - time.monotonic()):
                chunk = watcher.stderr.read1(4096)
                if not chunk:
                    break
                first += chunk
        assert b"idle" in first, first
        watcher.send_signal(signal.SIGINT)
        _, rest = watcher.communicate(timeout=15)
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.wait()
    assert watcher.returncode == 130
    message = (first + rest).decode()
    assert "the node carries on" in message
    assert "cnm bootstrap status --watch --node " + agent.http_url in message
    assert httpx.get(agent.http_url + "/v1/bootstrap", timeout=5).status_code == 200


def test_unreachable_node_exits_4() -> None:
    addr = claim_address()  # claimed and free: nothing listens there
    try:
        result = run_cnm("bootstrap", "status", "--node", f"http://{addr}:8080")
    finally:
        release_address(addr)
    assert result.code == 4, result
    assert f"cannot reach http://{addr}:8080" in result.stderr


def test_usage_errors_exit_2() -> None:
    missing_name = run_cnm("cluster", "create", "--username", "a@b.c")
    assert missing_name.code == 2, missing_name
    both = run_cnm("--insecure", "bootstrap", "status", "--ca-file", "/etc/hostname")
    assert both.code == 2, both
    assert "exclude each other" in both.stderr
    no_password = run_cnm("cluster", "create", "c.example.com", "-u", "a@b.c")
    assert no_password.code == 2, no_password
    assert "CNM_PASSWORD" in no_password.stderr
