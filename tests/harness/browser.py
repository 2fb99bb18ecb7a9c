"""Driving Debian's Chromium with Playwright for the web console's tests.

The browser is never downloaded: Playwright launches /usr/bin/chromium (scripts/setup.sh installs
it). `skip_reason()` says why the browser tests cannot run here, if they cannot. `Pages` opens
each page in its own browser context and records its console messages and uncaught errors, so a
test can fail on a Content-Security-Policy violation; `screenshot` saves what a page shows under
test-artifacts/screenshots/.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.agents import ARTEFACTS

try:
    from playwright.sync_api import Browser, ConsoleMessage, Page
except ImportError:  # pragma: no cover - the dev extra installs it
    PLAYWRIGHT = False
else:
    PLAYWRIGHT = True

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = ARTEFACTS / "screenshots"
WIDE = {"width": 1280, "height": 900}
NARROW = {"width": 390, "height": 844}


def skip_reason() -> str | None:
    if not PLAYWRIGHT:
        return "the playwright package is not installed (pip install -e '.[dev]')"
    if not os.access(CHROMIUM, os.X_OK):
        return f"{CHROMIUM} is missing: install Debian's chromium (scripts/setup.sh does)"
    return None


@dataclass
class Console:
    """What a page printed: console messages and uncaught errors."""

    messages: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def csp_violations(self) -> list[str]:
        return [m for m in self.messages if "Content Security Policy" in m]


@dataclass
class Pages:
    browser: Browser
    opened: list[tuple[Any, Console]] = field(default_factory=list)

    def open(self, url: str, *, viewport: dict[str, int] = WIDE) -> Page:
        """A new browser context (nothing shared with other pages) showing `url`."""
        context = self.browser.new_context(
            viewport=viewport, ignore_https_errors=True, java_script_enabled=True
        )
        page = context.new_page()
        console = Console()

        def on_console(message: ConsoleMessage) -> None:
            console.messages.append(f"{message.type}: {message.text}")

        page.on("console", on_console)
        page.on("pageerror", lambda error: console.errors.append(str(error)))
        self.opened.append((context, console))
        page.goto(url)
        return page

    def console_of(self, page: Page) -> Console:
        for context, console in self.opened:
            if page.context is context:
                return console
        raise KeyError("page not opened here")

    def close(self) -> list[str]:
        problems = []
        for context, console in self.opened:
            problems += [f"CSP violation: {m}" for m in console.csp_violations()]
            problems += [f"uncaught error: {e}" for e in console.errors]
            context.close()
        self.opened.clear()
        return problems


def screenshot(page: Page, name: str, *, full_page: bool = True) -> Path:
    """Save what the page shows as test-artifacts/screenshots/`name`.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path


def fill_wizard(page: Page, *, email: str, password: str, name: str | None = None) -> None:
    """The setup wizard's admin credentials (the password in both its fields) and, unless None,
    its cluster name; the node and path fields keep what they show."""
    if name is not None:
        page.get_by_label("Cluster name (FQDN)").fill(name)
    page.get_by_label("Admin email", exact=True).fill(email)
    page.get_by_label("Admin password", exact=True).fill(password)
    page.get_by_label("Admin password again", exact=True).fill(password)
