"""Accounts for API tests: sign up, sign in, add members, read the hub's email.

    owner = signup(client)                                  # a new org and its owner, signed in
    client.get("/api/v1/auth/me", headers=owner["headers"])
    viewer_headers, viewer_id = add_member(client, owner["headers"], Role.VIEWER)
    tokens = login(client, owner["email"])                  # the JSON of POST /auth/login

Everything goes through the real API, except :func:`add_member`, which writes the user and the
membership through the services (as accepting an invitation would) and signs them in.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import email
import email.policy
import re
import time
import uuid
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any, TypedDict

import pyotp
from litestar import Litestar
from litestar.testing import TestClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from agentops_server import Settings, create_app
from agentops_server.auth.permissions import Role
from agentops_server.db.engine import create_db_engine
from agentops_server.db.models import Membership
from agentops_server.db.tenancy import TenantSession, tenant
from agentops_server.services import audit, sessions
from agentops_server.services.users import create_user, find_user_by_email

Client = TestClient[Litestar]

AUTH = "/api/v1/auth"
PASSWORD = "Tr0ub4dor&3-horse"
"""A password strong enough for the hub; every helper uses it unless told otherwise."""


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


def bearer(token: str) -> dict[str, str]:
    """``Authorization`` headers carrying ``token`` (an access token or an API key)."""
    return {"Authorization": f"Bearer {token}"}


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


def add_member(
    client: Client,
    owner_headers: dict[str, str],
    role: Role | str,
    *,
    email: str | None = None,
    password: str = PASSWORD,
) -> tuple[dict[str, str], uuid.UUID]:
    """A new user with ``role`` in the org of ``owner_headers`` (who records
    ``member.added``), signed in there: their headers and user id. They can also sign in with
    ``email`` and ``password``. An existing ``email`` joins with its account."""
    owner = me(client, owner_headers)
    org_id, owner_id = uuid.UUID(owner["org"]["id"]), uuid.UUID(owner["user"]["id"])
    app = client.app
    with client.portal() as portal:
        pair = portal.call(
            _add_member,
            app,
            org_id,
            owner_id,
            Role(role),
            email or unique_email(str(Role(role))),
            password,
        )
    return bearer(pair.access_token), pair.user_id


async def _add_member(
    app: Litestar,
    org_id: uuid.UUID,
    owner_id: uuid.UUID,
    role: Role,
    address: str,
    password: str,
) -> sessions.TokenPair:
    async with AsyncSession(
        app.state.engine, sync_session_class=TenantSession, expire_on_commit=False
    ) as session:
        with tenant(org_id=org_id, user_id=owner_id):
            user = await find_user_by_email(session, address) or await create_user(
                session, email=address, password=password, name=address
            )
            user_id = user.id
            session.add(
                Membership(
                    org_id=org_id,
                    user_id=user_id,
                    role=role.value,
                    created_at=datetime.datetime.now(datetime.UTC),  # ordered past SQLite's seconds
                )
            )
            await audit.record(
                session,
                org_id,
                audit.Actor("user", owner_id),
                "member.added",
                target_type="user",
                target_id=user_id,
                after={"email": address, "role": role.value},
            )
            await session.commit()
        return await sessions.start_session(
            session, app.state.settings, user_id=user_id, org_id=org_id, method="test"
        )


@contextlib.contextmanager
def client_with(settings: Settings, **changes: Any) -> Iterator[Client]:
    """A client of a hub built from ``settings`` with ``changes`` (a file mailer, tight rate
    limits, short token lifetimes…)."""
    with TestClient(create_app(dataclasses.replace(settings, **changes))) as client:
        yield client


def rows(database_url: str, sql: str, **params: Any) -> list[Any]:
    """Rows of ``sql``, read straight from the database (past tenancy: tests inspect all)."""
    engine = create_db_engine(database_url)
    try:
        with engine.connect() as connection:
            return list(connection.execute(text(sql), params))
    finally:
        engine.dispose()


def execute(database_url: str, sql: str, **params: Any) -> None:
    """Run ``sql`` straight on the database and commit (to move times into the past)."""
    engine = create_db_engine(database_url)
    try:
        with engine.begin() as connection:
            connection.execute(text(sql), params)
    finally:
        engine.dispose()


def mailbox(directory: Path) -> list[EmailMessage]:
    """Every message the file mailer wrote to ``directory``, oldest first."""
    if not directory.exists():
        return []
    return [
        _parse(path.read_bytes())
        for path in sorted(directory.iterdir())
        if path.suffix == ".eml" and not path.name.startswith(".")
    ]


def parse_email(data: bytes) -> EmailMessage:
    """An RFC 5322 message as an :class:`EmailMessage`."""
    return _parse(data)


RESET_TOKEN = re.compile(r"\bpr_[0-9a-f]{32}_[0-9a-f]{32}_[A-Za-z0-9_-]{32,}")


def reset_token_in(message: EmailMessage) -> str:
    """The password-reset token a message carries (fails the test if there is none)."""
    body = message.get_body(("plain",))
    assert body is not None
    found = RESET_TOKEN.search(body.get_content())
    assert found is not None, body.get_content()
    return found.group(0)


def totp_code(secret: str, *, steps_ahead: int = 0) -> str:
    """The TOTP code of ``secret`` now, or ``steps_ahead`` 30-second steps later (the hub
    accepts one step of drift, so the next step's code is a fresh, valid code now)."""
    return pyotp.TOTP(secret).at(time.time(), counter_offset=steps_ahead)


def _parse(data: bytes) -> EmailMessage:
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message
