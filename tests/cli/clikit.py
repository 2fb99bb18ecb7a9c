"""Running the real `cnm` command as a subprocess, as an operator or a script would."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

import httpx

from harness.agents import Agent

ADMIN = ("admin@example.com", "s3cret-pass")
# C0 controls but tab and newline, and DEL: what a terminal would interpret (ESC, CR, ...).
CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
JOIN_NOT_SERVED = "not available in this version of cnm yet"


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)

    def __str__(self) -> str:
        return f"exit {self.code}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"


def cli_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    # Nothing from the developer's shell may change the output under test.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("CNM_") and k not in ("FORCE_COLOR", "COLUMNS", "TTY_COMPATIBLE")
    }
    env.update(extra or {})
    return env


def cnm_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "cnm", *args]


def run_cnm(
    *args: str, stdin: str = "", env: dict[str, str] | None = None, timeout: float = 60
) -> Result:
    """`cnm ARGS` without a terminal (stdin, stdout, stderr are pipes)."""
    completed = subprocess.run(
        cnm_argv(*args),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=cli_env(env),
        check=False,
    )
    return Result(completed.returncode, completed.stdout, completed.stderr)


def assert_plain(result: Result) -> None:
    for name, text in (("stdout", result.stdout), ("stderr", result.stderr)):
        found = CONTROL_CHARS.search(text)
        assert found is None, f"control character {found.group()!r} in {name}: {result}"


def password_env(password: str = ADMIN[1]) -> dict[str, str]:
    return {"CNM_PASSWORD": password}


def create_cluster_over_http(agent: Agent, name: str = "c1.example.com") -> None:
    body = {"cluster": {"name": name}, "credentials": {"username": ADMIN[0], "password": ADMIN[1]}}
    response = httpx.post(agent.http_url + "/v1/bootstrap/create_cluster", json=body, timeout=5)
    assert response.status_code == 200, response.text
    agent.wait_state("completed", auth=ADMIN)
