"""Browser tests of the console: Debian's Chromium, headless, driven by Playwright against the real server.

Every page a test looks at is saved as a screenshot under console-screenshots/<language>/ (git-ignored).
A test fails if any page threw a JavaScript error, logged one, or failed to load one of its assets.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any
from unittest.mock import patch

import pytest
from playwright.sync_api import Browser, Playwright, sync_playwright

from console_kit import CHROMIUM, LAUNCH_ARGS, TIMEOUT_MS, Console, real_clock_environment, watch
from skylift_testkit import Server


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail("the console's browser tests need Debian's chromium (.ci/run installs it)")
        pytest.skip("no /usr/bin/chromium: apt-get install chromium to run the console's browser tests")
    # The shifted-date run (.ci/run) preloads libfaketime into every process; Chromium (and Playwright's
    # driver) hang under it. They run on the real clock: the server, whose clock matters, stays shifted,
    # and cookies carry relative lifetimes (Max-Age), so the two clocks need not agree.
    with patch.dict(os.environ, real_clock_environment(), clear=True):
        running = sync_playwright().start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    launched = playwright.chromium.launch(
        executable_path=str(CHROMIUM), args=LAUNCH_ARGS, timeout=TIMEOUT_MS * 2, env=real_clock_environment()
    )
    yield launched
    launched.close()


@pytest.fixture
def open_console(browser: Browser, server: Server) -> Iterator[Any]:
    """Open browsers on the console (each its own cookies); none may log a script error."""
    opened: list[tuple[Console, Any]] = []

    def make(accept_language: str = "en-US,en;q=0.9", viewport: tuple[int, int] = (1280, 900)) -> Console:
        context = browser.new_context(
            locale=accept_language.split(",")[0].split(";")[0],
            extra_http_headers={"Accept-Language": accept_language},
            viewport={"width": viewport[0], "height": viewport[1]},
        )
        context.set_default_timeout(TIMEOUT_MS)
        console = Console(server, context.new_page())
        watch(console)
        opened.append((console, context))
        return console

    yield make
    problems = [p for console, _ in opened for p in console.problems]
    for _, context in opened:
        context.close()
    assert not problems, "\n".join(problems)
