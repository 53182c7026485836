"""People of the pages' tests: an owner who signs up through the sign-up page, the API as
that owner, and members of their org who sign in through the sign-in page."""

from __future__ import annotations

import dataclasses
import re
import uuid
from typing import Any

import httpx
from litestar import Litestar
from litestar.testing import TestClient
from playwright.sync_api import Page

from agentops_server.security.permissions import Role
from agentops_server.services.identity.sessions import TokenPair
from agentops_server.settings import Settings
from agentops_server.web.sessions import COOKIE, session_cookie
from tests.e2e.hubs import SharedHub
from tests.server.principals import PASSWORD, People

CSRF_INPUT = re.compile(r'name="_csrf_token" value="([^"]+)"')
"""The CSRF token in a page's forms."""


@dataclasses.dataclass(frozen=True)
class Owner:
    """An org's owner, signed up through the page, and the hub's JSON API as them."""

    email: str
    org_id: uuid.UUID
    org_name: str
    api: httpx.Client

    def controls(self) -> list[dict[str, Any]]:
        """The org's controls, as ``GET /api/v1/controls`` answers."""
        response = self.api.get("/api/v1/controls")
        assert response.status_code == 200, response.text
        controls: list[dict[str, Any]] = response.json()["controls"]
        return controls

    def add_agent(self, name: str, **fields: Any) -> None:
        """An agent in the registry."""
        response = self.api.post("/api/v1/agents", json={"name": name, **fields})
        assert response.status_code == 201, response.text


def sign_up(page: Page, hub: SharedHub, org_name: str | None = None) -> Owner:
    """Sign up through the page (an org named ``org_name``, by default a new name): the browser
    is signed in as the new org's owner."""
    email = f"owner-{uuid.uuid4().hex[:8]}@example.com"
    page.goto("/sign-up")
    org_name = org_name or f"Acme {uuid.uuid4().hex[:8]}"
    page.get_by_label("Org name").fill(org_name)
    page.get_by_label("Your name").fill("Olga Owner")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Create org and sign in").click()
    page.wait_for_url("**/dashboard")
    tokens = httpx.post(
        f"{hub.url}/api/v1/auth/login", json={"email": email, "password": PASSWORD}
    ).json()
    api = httpx.Client(
        base_url=hub.url, headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    return Owner(email, uuid.UUID(tokens["org_id"]), org_name, api)


def sign_in_as(page: Page, hub: SharedHub, owner: Owner, role: Role) -> str:
    """A new member of ``owner``'s org with ``role``, signed in through the page; their email."""
    member = People(hub.database_url, owner.org_id).add(role, password=PASSWORD)
    page.goto("/sign-in")
    page.get_by_label("Email").fill(member.email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/dashboard")
    return member.email


def csrf_token(page: Page) -> str:
    """The CSRF token of the page shown (every signed-in page has one: the sign-out form)."""
    token = page.locator("input[name=_csrf_token]").first.get_attribute("value")
    assert token
    return token


def signed_in(client: TestClient[Litestar], settings: Settings, people: People, role: Role) -> str:
    """A new member with ``role``, signed in on ``client`` with a page session; the CSRF token
    of its forms."""
    person = people.add(role)
    tokens = TokenPair("", "", 0, people.org_id, person.user_id, person.session_id)
    cookie = session_cookie(settings, tokens)
    client.cookies.set(COOKIE, cookie.value or "", domain="hub.example.com")
    match = CSRF_INPUT.search(client.get("/sign-in").text)
    assert match
    return match[1]
