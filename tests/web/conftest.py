"""Browser fixtures of the web console's tests: Debian's Chromium driven by Playwright.

The browser is never downloaded: Playwright launches /usr/bin/chromium (scripts/setup.sh installs
it). Without it, or without the playwright package, these tests skip and say why. Every page
opened here records its console messages and script errors, and the test fails on a Content-
Security-Policy violation or an uncaught error; screenshots go to test-artifacts/screenshots/.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from harness.agents import ARTEFACTS

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

try:
    from playwright.sync_api import Browser, ConsoleMessage, Page, sync_playwright
except ImportError:  # pragma: no cover - the dev extra installs it
    sync_playwright = None


def _skip_reason() -> str | None:
    if sync_playwright is None:
        return "the playwright package is not installed (pip install -e '.[dev]')"
    if not os.access(CHROMIUM, os.X_OK):
        return f"{CHROMIUM} is missing: install Debian's chromium (scripts/setup.sh does)"
    return None


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield launched
        launched.close()


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


@pytest.fixture
def pages(browser: Browser) -> Iterator[Pages]:
    """Open pages with `pages.open(url)`; after the test, CSP violations and uncaught script
    errors on any of them fail it."""
    opened = Pages(browser)
    yield opened
    problems = opened.close()
    if problems:
        pytest.fail("; ".join(problems))


def screenshot(page: Page, name: str, *, full_page: bool = True) -> Path:
    """Save what the page shows as test-artifacts/screenshots/`name`.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path


@pytest.fixture
def shoot() -> Callable[[Page, str], Path]:
    return screenshot


@pytest.fixture(scope="module")
def module_pages(browser: Browser) -> Iterator[Pages]:
    """`pages` shared by the tests of one module; checked at the module's end."""
    opened = Pages(browser)
    yield opened
    problems = opened.close()
    if problems:
        pytest.fail("; ".join(problems))
