"""Accounts through the real API: sign up (a new org and its owner), sign in, who am I::

    owner = signup(client)
    client.get("/api/v1/auth/me", headers=owner["headers"])
    tokens = login(client, owner["email"])       # the JSON of POST /auth/login

Members of an org made without the API are :class:`tests.server.principals.People`.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, TypedDict

import pyotp

from agentops_server.security.permissions import Role
from tests.server.api import Client, bearer
from tests.server.principals import PASSWORD, People

AUTH = "/api/v1/auth"


class SignedUp(TypedDict):
    """What :func:`signup` made: ids, credentials and ready-to-use headers."""

    user_id: uuid.UUID
    org_id: uuid.UUID
    org_slug: str
    session_id: uuid.UUID
    email: str
    password: str
    access_token: str
    refresh_token: str
    headers: dict[str, str]


def unique_email(prefix: str = "user") -> str:
    """An address no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}@example.com"


def signup(
    client: Client,
    *,
    email: str | None = None,
    password: str = PASSWORD,
    name: str = "Ada Lovelace",
    org_name: str | None = None,
    org_slug: str | None = None,
) -> SignedUp:
    """Sign up through ``POST /api/v1/auth/signup`` (a new org and its owner); fails the test
    unless it answers 201."""
    address = email or unique_email("owner")
    body: dict[str, Any] = {
        "email": address,
        "password": password,
        "name": name,
        "org_name": org_name or f"Org {uuid.uuid4().hex[:10]}",
    }
    if org_slug is not None:
        body["org_slug"] = org_slug
    response = client.post(f"{AUTH}/signup", json=body)
    assert response.status_code == 201, response.text
    made = response.json()
    tokens = made["tokens"]
    return SignedUp(
        user_id=uuid.UUID(made["user"]["id"]),
        org_id=uuid.UUID(made["org"]["id"]),
        org_slug=made["org"]["slug"],
        session_id=uuid.UUID(tokens["session_id"]),
        email=made["user"]["email"],
        password=password,
        access_token=tokens["access_token"],
        refresh_token=tokens["refresh_token"],
        headers=bearer(tokens["access_token"]),
    )


def signup_in_two_orgs(
    client: Client, database_url: str, role: Role, *, name: str = "Ada Lovelace"
) -> tuple[SignedUp, SignedUp]:
    """Ada, who signed up with the org Home (slug ``home``), and the owner of Elsewhere
    (``elsewhere``), where Ada is a ``role`` too (made in the database, as accepting an
    invitation would; with a session there of its own)."""
    ada = signup(client, name=name, org_name="Home")
    other = signup(client, org_name="Elsewhere")
    People(database_url, other["org_id"]).add(role, email=ada["email"])
    return ada, other


def login(
    client: Client, email: str, password: str = PASSWORD, *, org: str | None = None
) -> dict[str, Any]:
    """The JSON answer of ``POST /api/v1/auth/login`` (tokens, or an MFA challenge); fails
    the test unless it answers 200."""
    body: dict[str, Any] = {"email": email, "password": password}
    if org is not None:
        body["org"] = org
    response = client.post(f"{AUTH}/login", json=body)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def me(client: Client, headers: dict[str, str]) -> dict[str, Any]:
    """The JSON answer of ``GET /api/v1/auth/me``; fails the test unless it answers 200."""
    response = client.get(f"{AUTH}/me", headers=headers)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def totp_code(secret: str, *, steps_ahead: int = 0) -> str:
    """The TOTP code of ``secret`` now, or ``steps_ahead`` 30-second steps later (the hub
    accepts one step of drift, so the next step's code is a fresh, valid code now)."""
    return pyotp.TOTP(secret).at(time.time(), counter_offset=steps_ahead)
