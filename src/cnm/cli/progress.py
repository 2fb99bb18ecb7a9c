"""Waiting for a bootstrap to finish, visibly: the `--wait` of create/join/recover and
`bootstrap status --watch`.

On a terminal: one live line (spinner, state, phase, elapsed time) redrawn in place. Without one
(CI, pipes): one plain ASCII line per state or phase change, so logs stay greppable and free of
control characters. Progress goes to stderr; stdout keeps the result. Ctrl-C and the deadline
leave the node alone (it carries on with its bootstrap) and print the command that resumes
watching.
"""

from __future__ import annotations

import time
from typing import Any

import typer
from rich.console import Console, RenderableType
from rich.live import Live
from rich.spinner import Spinner
from rich.text import Text

from cnm.cli import render
from cnm.cli.common import EXIT_INTERRUPTED, EXIT_TIMEOUT, Target
from cnm.client import CnmClient
from cnm.client_errors import WaitTimeout


def describe(document: dict[str, Any]) -> str:
    status = document.get("bootstrap_status", {})
    state = str(status.get("state", "?"))
    phase = status.get("phase")
    return f"{state} (phase {phase})" if phase else state


class _LiveLine:
    """Re-rendered by rich several times a second, so the elapsed time moves between polls."""

    def __init__(self, label: str, started: float) -> None:
        self.label = label
        self.started = started
        self.current = "waiting for the node"
        self.spinner = Spinner("dots")

    def __rich__(self) -> RenderableType:
        elapsed = time.monotonic() - self.started
        self.spinner.update(text=Text(f"{self.label}: {self.current}  {elapsed:.1f}s"))
        return self.spinner


class BootstrapProgress:
    def __init__(self, label: str) -> None:
        self.label = label
        self.console: Console = render.console(stderr=True)
        self.started = time.monotonic()
        self._line = _LiveLine(label, self.started)
        self._live: Live | None = None

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def __enter__(self) -> BootstrapProgress:
        if self.console.is_terminal:
            self._live = Live(
                self._line, console=self.console, refresh_per_second=8, transient=True
            )
            self._live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def update(self, document: dict[str, Any]) -> None:
        description = describe(document)
        self._line.current = description
        if self._live is None:
            # Plain lines for logs: elapsed time, then the state.
            self.console.print(
                Text(f"[{self.elapsed:6.1f}s] {self.label}: {description}"), soft_wrap=True
            )


def wait_visibly(
    client: CnmClient, t: Target, *, label: str, timeout: float
) -> tuple[dict[str, Any], float]:
    """The final bootstrap document and the seconds it took; BootstrapFailed propagates. A
    timeout exits 3 and Ctrl-C 130, both saying how to resume watching."""
    resume = t.command("bootstrap", "status", "--watch")
    with BootstrapProgress(label) as progress:
        try:
            document = client.wait_bootstrap(timeout, progress.update)
        except KeyboardInterrupt:
            progress.stop()
            render.say(
                "\nstopped watching; the node carries on with its bootstrap. Resume watching "
                f"with:\n  {resume}",
                stderr=True,
            )
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except WaitTimeout as timed_out:
            progress.stop()
            last = describe(timed_out.last) if timed_out.last else "unknown"
            render.print_problem(
                f"still {last} after {timeout:g} s; the node carries on with its bootstrap. "
                f"Keep watching with:\n  {resume}"
            )
            raise typer.Exit(EXIT_TIMEOUT) from None
        return document, progress.elapsed
