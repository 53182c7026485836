"""Fixtures for the pages' tests: one hub process on the real PostgreSQL and one Chromium (the
system's ``/usr/bin/chromium``, never a downloaded browser) for the whole session, and a fresh
browser context (no cookies) for each test.

A missing Chromium fails these tests: ``.ci/run`` installs the ``chromium`` package first.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from litestar import Litestar
from litestar.testing import TestClient
from playwright.sync_api import Browser, Page, sync_playwright

from agentops_server.db.migrate import upgrade
from tests.e2e.hubs import SharedHub, hub
from tests.server.conftest import (
    _forget_app_session_keys,
    app,
    database_url,
    mail_dir,
    migrated_templates,
    migrated_url,
    org,
    people,
    postgresql_schema,
    settings,
)
from tests.server.principals import SECRET_KEY
from tests.web.people import Owner, sign_up

__all__ = [
    "_forget_app_session_keys",
    "app",
    "database_url",
    "mail_dir",
    "migrated_templates",
    "migrated_url",
    "org",
    "people",
    "settings",
]

CHROMIUM = Path("/usr/bin/chromium")
"""Debian's Chromium (``apt-get install -y chromium``)."""


@pytest.fixture(scope="session")
def web_hub() -> Iterator[SharedHub]:
    """A hub process on a migrated PostgreSQL schema (row-level security on, as in
    production), shared by the session's tests; each test signs up an org of its own."""
    with postgresql_schema() as database_url:
        upgrade(database_url)
        with hub(database_url, secret_key=SECRET_KEY) as process:
            yield SharedHub(process.url, database_url, process.log)


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """Headless Chromium, once per session."""
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM))
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser, web_hub: SharedHub) -> Iterator[Page]:
    """A page in a browser context of its own (no cookies), on the hub; confirmation dialogs
    are accepted, and a script error, a resource the CSP refused or a missing asset fails the
    test (a page answering 4xx is for the test to judge)."""
    context = browser.new_context(base_url=web_hub.url, viewport={"width": 1280, "height": 800})
    context.set_default_timeout(10_000)
    tab = context.new_page()
    problems: list[str] = []
    tab.on("dialog", lambda dialog: dialog.accept())
    tab.on("pageerror", lambda error: problems.append(f"script error: {error}"))
    tab.on(
        "console",
        lambda message: (
            problems.append(message.text)
            if "Refused to" in message.text or "Content Security Policy" in message.text
            else None
        ),
    )
    tab.on(
        "response",
        lambda answer: (
            problems.append(f"{answer.status} {answer.url}")
            if answer.request.resource_type != "document"
            and answer.status >= 400
            and answer.request.resource_type != "fetch"
            else None
        ),
    )
    yield tab
    context.close()
    assert problems == []


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the tests save screenshots of the main pages: ``AGENTOPS_SCREENSHOTS`` (CI keeps
    it as an artifact; docs/screenshots is made this way) or the session's temporary folder."""
    chosen = os.environ.get("AGENTOPS_SCREENSHOTS")
    folder = Path(chosen) if chosen else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def browser_owner(browser: Browser, web_hub: SharedHub) -> Owner:
    """The owner of a new org, signed up in a browser context of their own (the test's
    ``page`` is someone else's)."""
    context = browser.new_context(base_url=web_hub.url)
    try:
        return sign_up(context.new_page(), web_hub)
    finally:
        context.close()


@pytest.fixture
def browser_client(app: Litestar) -> Iterator[TestClient[Litestar]]:
    """A client of the app over https (the ``settings`` fixture's hub is served over https,
    so its cookies are ``Secure``)."""
    with TestClient(app, base_url="https://hub.example.com") as client:
        yield client
