"""Every page under the Content-Security-Policy in a real browser: no violation in the console, and what
moved from inline script to static/js/app.js still works (confirm dialogs, language switch, copy button)."""

from __future__ import annotations

import pytest
from playwright.sync_api import Error as PlaywrightError

from labeling.services.projects import create_api_token
from tests.test_security import _project_pages
from tests.workspace.factories import make_items, publish_scenes

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _watch(page) -> list[str]:  # type: ignore[no-untyped-def]
    problems: list[str] = []
    page.on(
        "console", lambda msg: problems.append(f"{page.url}: {msg.text}") if msg.type in ("error", "warning") else None
    )
    page.on("pageerror", lambda exc: problems.append(f"{page.url}: {exc}"))
    return problems


def _visit(page, url: str):  # type: ignore[no-untyped-def]
    """The page's response, or None for a URL the browser shows no page for (a 405 with an empty body, a download).
    The browser then moves to its own error page: wait for that, or the next visit is cut short by it."""
    for _ in range(2):
        try:
            return page.goto(url)
        except PlaywrightError as exc:
            page.wait_for_load_state()
            if "interrupted by another navigation" not in str(exc):
                return None
    return None


def test_no_csp_violation_on_any_page(new_page, live_server, project, owner):
    publish_scenes(project)
    make_items(project)
    create_api_token(project=project, name="shown", created_by=owner)
    page = new_page(owner)
    problems = _watch(page)
    visited = []
    for path in [*_project_pages(), "/api/v1/docs", "/api/v1/redoc", "/no/such/page/"]:
        response = _visit(page, f"{live_server.url}{path}")
        if response is None:
            continue
        page.wait_for_load_state("networkidle")
        if response is not None and response.status < 400:
            visited.append(path)
    csp = [text for text in problems if "Content Security Policy" in text or "Refused to" in text]
    # ReDoc's bundle reaches for its logo on cdn.redoc.ly; keeping other hosts out is the point of the policy.
    csp = [text for text in csp if "https://cdn.redoc.ly/" not in text]
    assert not csp, csp
    assert len(visited) >= 10


def test_moved_scripts_still_work(new_page, live_server, project, owner):
    page = new_page(owner)
    problems = _watch(page)
    page.goto(f"{live_server.url}/projects/{project.slug}/tokens/")
    page.fill("input[name=name]", "ci")
    page.click("main form button.primary")
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.click("#copy-token")
    page.wait_for_function("document.getElementById('copy-status').textContent.length > 0")
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.click("button.danger")
    assert dialogs and "Revoke" in dialogs[0]
    assert page.locator("button.danger").count() == 1  # dismissed: still active
    with page.expect_navigation():
        page.select_option("select[name=language]", "zh-hans")
    assert page.locator("html").get_attribute("lang") == "zh-hans"
    assert not [text for text in problems if "Content Security Policy" in text], problems
