"""The entry point of the `cnm` executable (and `python -m cnm`): `app()`.

`cnm node run ...` starts the agent, a process that lives for months: an ordinary start goes
straight to `cnm.cli.agent_start` (no Typer at all), anything else about `node run` (help,
--check-config, a mistake) to `cnm.cli.node_run`, so the agent never imports the other
commands, the REST client, rich or Typer (memory it would keep, and a part of every restart).
Anything else, including `cnm --global-option node run`, gets the whole command line of
`cnm.cli.commands`.
"""

from __future__ import annotations

import sys


def app() -> None:
    argv = sys.argv[1:]
    if argv[:2] == ["node", "run"]:
        # httpx imports its own command-line client when the packages it needs are there (the
        # CLI's rich and click are): the agent uses httpx as a library only. A None entry makes
        # that optional import fail the way httpx expects when they are missing.
        sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
        from cnm.cli.agent_start import parse_plain, start

        plain = parse_plain(argv[2:])
        if plain is not None:
            sys.exit(start(*plain))
        from cnm.cli.node_run import run_app

        run_app(argv[2:])
        return
    from cnm.cli.commands import app as commands

    commands()


def main() -> None:
    app()
