"""Signing in through the pages, and their session cookie: what signing in sets, the second
factor's step, that the cookie is no bearer token, that ending the hub session behind it ends
it, and that signing in only ever leads back into the hub."""

from __future__ import annotations

import re

import pytest
from litestar import Litestar
from litestar.testing import TestClient

from agentops_server.security.permissions import Role
from agentops_server.web.sessions import COOKIE
from tests.server.accounts import signup, totp_code
from tests.server.principals import PASSWORD, People, Person
from tests.server.test_mfa import enable
from tests.web.people import CSRF_INPUT


@pytest.fixture
def member(people: People) -> Person:
    return people.add(Role.MEMBER, password=PASSWORD)


def sign_in(client: TestClient[Litestar], email: str, next_path: str = "") -> str:
    """Sign in through the sign-in page; where it sends the browser."""
    token = CSRF_INPUT.search(client.get("/sign-in").text)
    assert token
    form = {"_csrf_token": token[1], "email": email, "password": PASSWORD, "next": next_path}
    answer = client.post("/sign-in", data=form, follow_redirects=False)
    assert answer.status_code == 303, answer.text
    return answer.headers["location"]


def test_signing_in_sets_a_secure_http_only_same_site_session_cookie(
    browser_client: TestClient[Litestar], member: Person
) -> None:
    token = CSRF_INPUT.search(browser_client.get("/sign-in").text)
    assert token
    form = {"_csrf_token": token[1], "email": member.email, "password": PASSWORD}

    answer = browser_client.post("/sign-in", data=form, follow_redirects=False)

    cookie = next(c for c in answer.headers.get_list("set-cookie") if c.startswith(COOKIE))
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
    assert {"httponly", "secure", "samesite", "path", "max-age"} <= attributes
    assert "samesite=lax" in cookie.lower()


def test_the_session_cookie_is_not_a_bearer_token(
    browser_client: TestClient[Litestar], member: Person
) -> None:
    sign_in(browser_client, member.email)
    cookie = browser_client.cookies[COOKIE]

    answer = browser_client.get("/api/v1/agents", headers={"Authorization": f"Bearer {cookie}"})

    assert answer.status_code == 401


def test_ending_the_hub_session_behind_the_cookie_signs_the_pages_out(
    browser_client: TestClient[Litestar], member: Person
) -> None:
    sign_in(browser_client, member.email)
    assert browser_client.get("/agents").status_code == 200
    listed = browser_client.get("/api/v1/auth/sessions", headers=member.headers).json()["items"]
    (page_session,) = [item for item in listed if not item["current"]]

    ended = browser_client.delete(
        f"/api/v1/auth/sessions/{page_session['id']}", headers=member.headers
    )

    assert ended.status_code == 204, ended.text
    answer = browser_client.get("/agents", follow_redirects=False)
    assert (answer.status_code, answer.headers["location"]) == (303, "/sign-in?next=/agents")


@pytest.mark.parametrize(
    ("asked", "sent_to"),
    [
        ("/approvals", "/approvals"),
        ("//evil.example/phish", "/"),
        ("https://evil.example/", "/"),
        ("/\\evil.example", "/"),
    ],
)
def test_signing_in_leads_back_to_a_page_of_the_hub_only(
    browser_client: TestClient[Litestar], member: Person, asked: str, sent_to: str
) -> None:
    assert sign_in(browser_client, member.email, asked) == sent_to


@pytest.mark.parametrize("use", ["totp", "recovery code"])
def test_an_account_with_a_second_factor_signs_in_with_its_code(
    browser_client: TestClient[Litestar], use: str
) -> None:
    account = signup(browser_client)
    secret, recovery_codes = enable(browser_client, account)
    token = CSRF_INPUT.search(browser_client.get("/sign-in").text)
    assert token
    form = {"_csrf_token": token[1], "email": account["email"], "password": PASSWORD}
    challenge = browser_client.post("/sign-in", data=form)
    assert challenge.status_code == 200
    mfa_token = re.search(r'name="mfa_token" value="([^"]+)"', challenge.text)
    assert mfa_token
    assert COOKIE not in browser_client.cookies
    step = {"_csrf_token": token[1], "mfa_token": mfa_token[1]}

    wrong = browser_client.post("/sign-in/second-factor", data={**step, "code": "000000"})
    code = totp_code(secret, steps_ahead=1) if use == "totp" else recovery_codes[0]
    right = browser_client.post(
        "/sign-in/second-factor", data={**step, "code": code}, follow_redirects=False
    )

    assert wrong.status_code == 401
    assert 'data-code="invalid_mfa_code"' in wrong.text
    assert (right.status_code, right.headers["location"]) == (303, "/")
    assert browser_client.get("/", follow_redirects=False).headers["location"] == "/dashboard"
