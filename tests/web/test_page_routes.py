"""Authorisation of the pages: every page names one permission of the matrix (or is public),
and each role reaches exactly the pages its permissions allow, signed in with the session
cookie and sending the form's CSRF token. The API's route walks (tests/server) leave the pages
to this one."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from litestar import Litestar
from litestar.handlers import HTTPRouteHandler
from litestar.routes import HTTPRoute
from litestar.testing import TestClient

from agentops_server.api.headers import API_CSP, HTML_CSP
from agentops_server.auth.guards import permission_of
from agentops_server.security.permissions import ROLE_PERMISSIONS, Role
from agentops_server.settings import Settings
from tests.server.principals import People
from tests.server.routes import fill
from tests.web.people import signed_in


def pages(app: Litestar) -> Iterator[tuple[str, str, HTTPRouteHandler]]:
    """(method, path format, handler) of every page (the static files aside)."""
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler in route.route_handlers:
            if not handler.opt.get("page") or route.path.startswith("/static"):
                continue
            for method in sorted(handler.http_methods - {"HEAD", "OPTIONS"}):
                yield method, route.path_format, handler


def test_every_page_is_guarded_by_one_permission_or_declared_public(app: Litestar) -> None:
    unguarded = [
        f"{method} {path}"
        for method, path, handler in pages(app)
        if permission_of(handler) is None and not handler.opt.get("public")
    ]

    assert unguarded == []


def test_a_guarded_page_sends_a_stranger_to_sign_in(
    app: Litestar, browser_client: TestClient[Litestar]
) -> None:
    guarded = [path for method, path, h in pages(app) if method == "GET" and permission_of(h)]

    for path in map(fill, guarded):
        answer = browser_client.get(path, follow_redirects=False)
        assert (answer.status_code, answer.headers["location"]) == (303, f"/sign-in?next={path}")


@pytest.mark.parametrize("role", list(Role))
def test_each_role_reaches_exactly_the_pages_its_permissions_allow(
    app: Litestar,
    browser_client: TestClient[Litestar],
    settings: Settings,
    people: People,
    role: Role,
) -> None:
    misjudged = []
    for method, path, handler in pages(app):
        permission = permission_of(handler)
        if permission is None:
            continue
        token = signed_in(browser_client, settings, people, role)  # some pages end the session
        answer = browser_client.request(
            method, fill(path), data={"_csrf_token": token} if method == "POST" else None
        )
        refused = answer.status_code == 403 and 'data-code="permission_denied"' in answer.text
        if refused == (permission in ROLE_PERMISSIONS[role]) or answer.status_code in (303, 401):
            misjudged.append(f"{method} {path} [{permission}]: {answer.status_code}")

    assert misjudged == []


def test_a_post_without_the_csrf_token_is_refused_before_the_page_runs(
    browser_client: TestClient[Litestar], settings: Settings, people: People
) -> None:
    signed_in(browser_client, settings, people, Role.OWNER)
    form = {"scope_kind": "org", "state": "killed", "reason": "forged", "confirm": "yes"}

    answer = browser_client.post("/controls", data=form)

    assert answer.status_code == 403
    assert 'data-code="csrf_failed"' in answer.text
    assert 'data-org-state="active"' in browser_client.get("/controls").text


def test_every_page_answers_with_the_security_headers(
    app: Litestar, browser_client: TestClient[Litestar], settings: Settings, people: People
) -> None:
    wrong = []
    for method, path, _ in pages(app):
        token = signed_in(browser_client, settings, people, Role.OWNER)
        answer = browser_client.request(
            method, fill(path), data={"_csrf_token": token} if method == "POST" else None
        )
        html = answer.headers.get("content-type", "").startswith("text/html")
        expected = {
            "content-security-policy": HTML_CSP if html else API_CSP,
            "x-frame-options": "DENY",
            "referrer-policy": "no-referrer",
            "x-content-type-options": "nosniff",
        }
        if {name: answer.headers.get(name) for name in expected} != expected:
            wrong.append(f"{method} {path}: {answer.status_code} {dict(answer.headers)}")

    assert wrong == []
