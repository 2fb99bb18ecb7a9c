"""Every command explains itself: `--help` works and shows an example."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import typer.main

from cli.clikit import run_cnm
from cnm.cli.commands import app


def leaves(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, Any]]:
    # Typer's groups have `commands`; its leaf commands do not.
    if hasattr(command, "commands"):
        for name, sub in command.commands.items():
            yield from leaves(sub, (*path, name))
    else:
        yield " ".join(path), command


def test_every_command_has_an_example() -> None:
    commands = dict(leaves(typer.main.get_command(app)))
    expected = {
        "node run", "node list", "node show", "bootstrap status", "cluster create",
        "cluster join", "cluster recover", "cluster backup", "cluster info",
        "cluster validate create", "cluster validate join", "license show", "license install",
        "user list", "user add",
        "local up", "local status", "local down",
    }  # fmt: skip
    assert expected <= set(commands)
    without = [name for name, command in commands.items() if "Example" not in (command.help or "")]
    assert without == []


def test_help_runs_and_completion_is_offered() -> None:
    root = run_cnm("--help")
    assert root.code == 0, root
    assert "--install-completion" in root.stdout
    assert "Exit codes" in root.stdout
    local_up = run_cnm("local", "up", "--help")
    assert local_up.code == 0, local_up
    assert "cnm local up --nodes 5" in local_up.stdout
