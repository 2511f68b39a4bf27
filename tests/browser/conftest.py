"""Playwright on Debian's Chromium against pytest-django's live server. Never downloads a browser."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

# The sync Playwright API runs an event loop in this thread; Django's ORM calls from the test are safe here.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = os.environ.get("SCENECLF_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-dev-shm-usage"]
PASSWORD = "pw-for-tests"


@pytest.fixture(scope="session")
def chromium():
    if not shutil.which(CHROMIUM) and not Path(CHROMIUM).exists():
        pytest.skip(f"Chromium not found at {CHROMIUM} (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def new_page(chromium, live_server):
    """new_page(user, width=1100, language=None) → a logged-in page in its own browser context."""
    contexts = []

    def _open(user, width: int = 1100, height: int = 800, language: str | None = None):
        context = chromium.new_context(viewport={"width": width, "height": height}, locale="en-US")
        if language:  # Django's language cookie: the UI in that language (tests default to English)
            context.add_cookies([{"name": "django_language", "value": language, "url": live_server.url}])
        context.set_default_timeout(15_000)
        contexts.append(context)
        page = context.new_page()
        page.goto(f"{live_server.url}/accounts/login/")
        page.fill("input[name=username]", user.username)
        page.fill("input[name=password]", PASSWORD)
        page.click("main form button[type=submit]")
        page.wait_for_load_state()
        return page

    yield _open
    for context in contexts:
        context.close()


@pytest.fixture
def screenshot_dir() -> Path | None:
    """Set SCENECLF_SCREENSHOT_DIR (e.g. docs/img) to save the documentation screenshots."""
    target = os.environ.get("SCENECLF_SCREENSHOT_DIR")
    if not target:
        return None
    path = Path(target)
    path.mkdir(parents=True, exist_ok=True)
    return path
