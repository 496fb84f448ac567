"""Browser tests: Debian's Chromium driven by Playwright for Python against a live hub.

Chromium is /usr/bin/chromium (`.ci/run` installs it with apt-get where it is missing;
`playwright install` cannot work here). Where it cannot be started, every test here is
skipped with the reason shown. The hub runs on SQLite in a thread (tests/livehub.py).
Screenshots go to the test run's folder (``<basetemp>/screenshots``) and, with
HUB_SCREENSHOTS=DIR (`make screenshots`), also to DIR.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.livehub import LiveHub

CHROMIUM = os.environ.get("HUB_CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
PHONE = {"width": 390, "height": 844}


def _why_no_browser() -> str | None:
    if not Path(CHROMIUM).exists():
        return f"Chromium is not installed at {CHROMIUM} (apt-get install chromium; .ci/run does it as root)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (make install)"
    return None


@pytest.fixture(params=["sqlite"])
def database_url(request, tmp_path):
    """Browser journeys run on SQLite only: the pages' rules are tested on both databases in tests/integration."""
    path = tmp_path / "hub.sqlite3"
    shutil.copy(request.getfixturevalue("_sqlite_template"), path)
    yield f"sqlite:///{path}"


@pytest.fixture(scope="session")
def browser():
    why = _why_no_browser()
    if why:
        pytest.skip(why)
    from playwright.sync_api import Error, sync_playwright

    with sync_playwright() as p:
        try:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        except Error as exc:
            pytest.skip(f"Chromium at {CHROMIUM} does not start: {str(exc).splitlines()[0]}")
        yield browser
        browser.close()


@pytest.fixture
def live(app):
    with LiveHub(app) as hub:
        yield hub


@pytest.fixture
def phone(browser, live):
    """New phone-sized browser contexts (each its own cookies) in a language: ``phone("km")``."""
    contexts = []

    def _new(lang: str = "en"):
        context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True, device_scale_factor=1,
                                      locale={"en": "en-US", "km": "km-KH"}[lang], base_url=live.url)
        contexts.append(context)
        return context.new_page()

    yield _new
    for context in contexts:
        context.close()


@pytest.fixture(scope="session")
def shots(tmp_path_factory):
    folder = tmp_path_factory.getbasetemp() / "screenshots"
    folder.mkdir(exist_ok=True)
    extra = os.environ.get("HUB_SCREENSHOTS")
    if extra:
        Path(extra).mkdir(parents=True, exist_ok=True)

    def _shot(page, name: str) -> None:
        page.screenshot(path=str(folder / f"{name}.png"), full_page=True)
        if extra:  # the README's copies: one phone screen each, to keep the repository small
            page.screenshot(path=str(Path(extra) / f"{name}.png"))

    return _shot
