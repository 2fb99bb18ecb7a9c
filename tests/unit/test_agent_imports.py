"""The agent (`cnm node run`) stays lean: it never imports what only the command line or rare
paths use. Each check runs in a fresh interpreter, the way the agent starts."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from pathlib import Path

# Client side (rich, the REST client, the other commands), httpx's own CLI (rich, pygments)
# and the cryptography library (the agent's certificates and license checks are the signer
# child's: security/signing.py; tests/cluster/test_joiner_footprint.py checks a real cluster).
NOT_IN_AGENT = (
    "rich",
    "pygments",
    "cnm.client",
    "cnm.cli.commands",
    "cnm.cli.render",
    "cryptography",
    "jwt",
    "schemathesis",
    # `cnm node run` options are read without it (cli/agent_start.py).
    "typer",
    # Documentation only: built with the OpenAPI document on its first request.
    "cnm.api.openapi_models",
    # The web framework is Starlette (docs/architecture.md, "The web framework"): FastAPI and
    # the OpenTelemetry API it imports cost ~12 MiB for features cnm does not use.
    "fastapi",
    "opentelemetry",
)


def _modules_after(code: str) -> dict[str, object]:
    probe = (
        "import json, sys\n"
        f"{code}\n"
        f"print(json.dumps({{'loaded': sorted(m for m in {NOT_IN_AGENT!r} if m in sys.modules),"
        " 'daemon': 'cnm.daemon' in sys.modules, 'code': code}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True
    )
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def test_node_run_imports_the_agent_and_nothing_of_the_cli() -> None:
    # A config file that does not exist: `node run` has imported the agent (the first thing it
    # does) and stops with a usage error (2) before starting anything.
    found = _modules_after(
        "sys.argv = ['cnm', 'node', 'run', '--config', '/nonexistent/cnm.toml']\n"
        "from cnm.cli.main import app\n"
        "code = None\n"
        "try:\n"
        "    app()\n"
        "except SystemExit as exit:\n"
        "    code = exit.code"
    )
    assert found["code"] == 2
    assert found["daemon"] is True
    assert found["loaded"] == []


def test_other_commands_still_get_the_whole_command_line() -> None:
    found = _modules_after(
        "sys.argv = ['cnm', 'bootstrap', '--help']\n"
        "from cnm.cli.main import app\n"
        "code = None\n"
        "try:\n"
        "    app()\n"
        "except SystemExit as exit:\n"
        "    code = exit.code"
    )
    assert found["code"] == 0
    assert "cnm.cli.commands" in found["loaded"]


def test_pki_loads_on_first_use() -> None:
    found = _modules_after(
        "import cnm.daemon\n"
        "before = 'cryptography' in sys.modules\n"
        "from cnm.security import pki\n"
        "assert pki.make_ca('lazy.example.com').cert_pem.startswith(b'-----BEGIN')\n"
        "code = [before, 'cryptography' in sys.modules]"
    )
    assert found["code"] == [False, True]


def test_an_ordinary_start_is_parsed_without_typer_and_anything_else_is_left_to_it() -> None:
    from cnm.cli.agent_start import OPTIONS, parse_plain

    parsed = parse_plain(
        ["--addr", "10.0.0.1", "--http-port=8081", "--data-dir", "/d", "--config", "/c.toml"]
    )
    assert parsed is not None
    flags, config = parsed
    assert flags["addr"] == "10.0.0.1" and flags["http_port"] == 8081
    assert flags["data_dir"] == Path("/d") and config == Path("/c.toml")
    assert flags["https_port"] is None
    # The same option names as the Typer command (help, errors and --check-config are its).
    from cnm.cli.node_run import node_run

    typer_options = {
        f"--{name.replace('_', '-')}" for name in inspect.signature(node_run).parameters
    }
    assert set(OPTIONS) == typer_options - {"--check-config"}
    for args in (
        ["--help"],
        ["--check-config"],
        ["--addr", "1.2.3.4", "--check-config"],
        ["--http-port", "eighty"],
        ["--addr"],
        ["--addr", "--data-dir", "/d"],
        ["--ad", "1.2.3.4"],
        ["--unknown", "x"],
        ["stray"],
    ):
        assert parse_plain(args) is None, args
