"""Browser fixtures of the web console's tests (see harness.browser): one Chromium per test
module, skipped with the reason when it or Playwright is missing; pages whose CSP violations and
uncaught script errors fail the test that opened them."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from harness.browser import CHROMIUM, CHROMIUM_ARGS, Pages, skip_reason

with contextlib.suppress(ImportError):  # without it, skip_reason() says so
    from playwright.sync_api import Browser, sync_playwright


# Module-scoped, not session-scoped: while sync Playwright runs, its event loop is the thread's
# running loop, and the pytest-asyncio tests of other directories could not start theirs.
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield launched
        launched.close()


@pytest.fixture
def pages(browser: Browser) -> Iterator[Pages]:
    """Open pages with `pages.open(url)`; after the test, CSP violations and uncaught script
    errors on any of them fail it."""
    opened = Pages(browser)
    yield opened
    problems = opened.close()
    if problems:
        pytest.fail("; ".join(problems))


@pytest.fixture(scope="module")
def module_pages(browser: Browser) -> Iterator[Pages]:
    """`pages` shared by the tests of one module; checked at the module's end."""
    opened = Pages(browser)
    yield opened
    problems = opened.close()
    if problems:
        pytest.fail("; ".join(problems))
