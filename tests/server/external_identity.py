"""Helpers for the external sign-in tests (OAuth/OIDC and Supabase): arrange and inspect rows
directly in the test database (as its owner, past row-level security), and play the browser."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import httpx
from litestar import Litestar
from litestar.testing import TestClient
from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from agentops_server.db.engine import create_db_engine
from agentops_server.db.models import Agent, Membership, Org, User
from agentops_server.services.slugs import slugify


def add_user(
    database_url: str, email: str, *, name: str = "", password_hash: str | None = None
) -> uuid.UUID:
    """A user row (``password_hash`` None: external sign-in only)."""
    user_id = uuid.uuid4()
    with _session(database_url) as session:
        session.add(User(id=user_id, email=email, name=name, password_hash=password_hash))
        session.commit()
    return user_id


def add_org(database_url: str, name: str) -> uuid.UUID:
    """An org row, slug from its name."""
    org_id = uuid.uuid4()
    with _session(database_url) as session:
        session.add(Org(id=org_id, name=name, slug=slugify(name)))
        session.commit()
    return org_id


def add_member(
    database_url: str,
    org_id: uuid.UUID,
    user_id: uuid.UUID,
    role: str = "member",
    *,
    joined: dt.datetime | None = None,
) -> None:
    """``user_id`` joins ``org_id`` with ``role`` (at ``joined``, by default now)."""
    with _session(database_url) as session:
        session.add(
            Membership(
                org_id=org_id,
                user_id=user_id,
                role=role,
                created_at=joined or dt.datetime.now(dt.UTC),
            )
        )
        session.commit()


def add_agent(database_url: str, org_id: uuid.UUID, name: str) -> None:
    """An agent of ``org_id`` (so a listing shows which org a request acted in)."""
    now = dt.datetime.now(dt.UTC)
    with _session(database_url) as session:
        session.add(Agent(org_id=org_id, name=name, first_seen_at=now, last_seen_at=now))
        session.commit()


def rows(database_url: str, statement: Select[Any]) -> list[Any]:
    """What ``statement`` selects, every org's rows included."""
    with _session(database_url) as session:
        return list(session.execute(statement).all())


def count(database_url: str, model: type[Any]) -> int:
    """How many rows ``model``'s table holds."""
    return len(rows(database_url, select(model)))


def browser_sign_in(
    client: TestClient[Litestar],
    provider: str,
    public_url: str,
    *,
    params: dict[str, str] | None = None,
) -> httpx.Response:
    """Sign in as a browser does: ask the hub to authorize, follow it to the provider, which
    redirects back to the hub's callback (at ``public_url``); the hub's answer to that."""
    callback = provider_leg(client, provider, params=params)
    return client.get(hub_path(callback, public_url))


def provider_leg(
    client: TestClient[Litestar], provider: str, *, params: dict[str, str] | None = None
) -> str:
    """The first half of a sign-in: the URL the provider sends the browser back to."""
    started = client.get(
        f"/api/v1/auth/oauth/{provider}/authorize", params=params, follow_redirects=False
    )
    assert started.status_code == 302, started.text
    at_provider = httpx.get(started.headers["location"], follow_redirects=False)
    assert at_provider.status_code == 302, at_provider.text
    return at_provider.headers["location"]


def hub_path(url: str, public_url: str) -> str:
    """The path and query of a URL on the hub at ``public_url``."""
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}" == public_url, url
    return f"{parts.path}?{parts.query}"


@contextmanager
def _session(database_url: str) -> Iterator[Session]:
    engine = create_db_engine(database_url)
    try:
        with Session(engine) as session:
            yield session
    finally:
        engine.dispose()
