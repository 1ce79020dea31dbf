"""Browser tests: Debian's Chromium, headless, driven by Playwright for Python, against the
local stack started as `make run` starts it (the e2e suite's fixtures, on free ports).

Playwright cannot download its browsers here: it drives /usr/bin/chromium (`make browser`
installs Debian's `chromium` where it is missing). Nothing is skipped: without Chromium the
suite fails and says why.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from e2e.conftest import local_stack, postback, postback_script, state_dir  # noqa: F401 - the e2e fixtures
from e2e.e2e_support import CliResult
from e2e.test_health_e2e import own_receivers  # noqa: F401 - the e2e fixture: receivers stopped after the test
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright

CHROMIUM = os.environ.get("POSTBACK_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "build" / "browser"
Cli = Callable[..., CliResult]


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as running:
        yield running


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: run `make browser`, which installs Debian's chromium"
    launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield launched
    launched.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    opened = browser.new_context(viewport={"width": 1100, "height": 900})
    opened.set_default_timeout(15_000)
    yield opened
    opened.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()
