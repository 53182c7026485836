"""What the org, member, invitation, team, key and audit tests share.

People are made with the hub's own services, not its sign-up API: ``create_user``, a membership
and ``start_session`` (which gives the access token), written as the org's tenant on the app's
kind of engine (row-level security on PostgreSQL)::

    people = People(migrated_url, org.org_id)
    owner = people.add(Role.OWNER)
    client.get("/api/v1/members", headers=owner.headers)

``state(url)`` reads every row of the database as its connecting user, to check that a refused
request changed nothing; ``mailbox(dir)`` reads the emails a file mailer wrote.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import email
import email.policy
import re
import uuid
from collections.abc import AsyncIterator, Iterable
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from agentops_server import Settings
from agentops_server.auth.permissions import Role
from agentops_server.db.engine import create_async_db_engine, create_db_engine
from agentops_server.db.models import Base, Membership, Team, TeamMember
from agentops_server.db.tenancy import TenantSession, tenant
from agentops_server.services.sessions import start_session
from agentops_server.services.users import create_user

SECRET_KEY = "test-secret"  # the ``settings`` fixture's
PASSWORD = "correct horse 42 battery"


@dataclasses.dataclass(frozen=True)
class Person:
    """A member of an org, signed in."""

    user_id: uuid.UUID
    email: str
    role: Role
    access_token: str
    session_id: uuid.UUID

    @property
    def headers(self) -> dict[str, str]:
        """Authorization headers of this person's session."""
        return bearer(self.access_token)


class People:
    """Makes members (and teams) of one org straight through the services."""

    def __init__(self, database_url: str, org_id: uuid.UUID) -> None:
        self.database_url = database_url
        self.org_id = org_id

    def add(
        self,
        role: Role,
        *,
        email: str | None = None,
        name: str = "",
        teams: Iterable[uuid.UUID] = (),
        password: str | None = None,
    ) -> Person:
        """A new user, member of the org with ``role`` (and of ``teams``), signed in."""
        address = email or f"{role.value}-{uuid.uuid4().hex[:10]}@example.com"
        return asyncio.run(self._add(role, address, name, tuple(teams), password))

    def join(self, person: Person, role: Role) -> Person:
        """Make an existing user (``person``, of any org) a member of this org, signed in."""
        return asyncio.run(self._join(person.user_id, person.email, role))

    def team(self, name: str, *members: Person) -> uuid.UUID:
        """A new team of the org with ``members``."""
        return asyncio.run(self._team(name, members))

    async def _add(
        self,
        role: Role,
        address: str,
        name: str,
        teams: tuple[uuid.UUID, ...],
        password: str | None,
    ) -> Person:
        async with self._session() as session:
            with tenant(org_id=self.org_id):
                user = await create_user(session, email=address, password=password, name=name)
                session.add(Membership(org_id=self.org_id, user_id=user.id, role=role.value))
                await session.flush()
                session.add_all(
                    TeamMember(org_id=self.org_id, team_id=team, user_id=user.id) for team in teams
                )
                await session.commit()
            return await self._sign_in(session, user.id, user.email, role)

    async def _join(self, user_id: uuid.UUID, address: str, role: Role) -> Person:
        async with self._session() as session:
            with tenant(org_id=self.org_id):
                session.add(Membership(org_id=self.org_id, user_id=user_id, role=role.value))
                await session.commit()
            return await self._sign_in(session, user_id, address, role)

    async def _sign_in(
        self, session: AsyncSession, user_id: uuid.UUID, address: str, role: Role
    ) -> Person:
        settings = Settings(database_url=self.database_url, secret_key=SECRET_KEY)
        pair = await start_session(
            session, settings, user_id=user_id, org_id=self.org_id, method="test"
        )
        return Person(user_id, address, role, pair.access_token, pair.session_id)

    async def _team(self, name: str, members: tuple[Person, ...]) -> uuid.UUID:
        async with self._session() as session:
            with tenant(org_id=self.org_id):
                team = Team(org_id=self.org_id, id=uuid.uuid4(), name=name)
                session.add(team)
                await session.flush()
                session.add_all(
                    TeamMember(org_id=self.org_id, team_id=team.id, user_id=member.user_id)
                    for member in members
                )
                await session.commit()
                return team.id

    @contextlib.asynccontextmanager
    async def _session(self) -> AsyncIterator[AsyncSession]:
        """An app-like session (tenant-scoped; row-level security on PostgreSQL)."""
        engine = create_async_db_engine(self.database_url, tenant_isolation=True)
        try:
            async with AsyncSession(
                engine, sync_session_class=TenantSession, expire_on_commit=False
            ) as session:
                yield session
        finally:
            await engine.dispose()


def bearer(credential: str) -> dict[str, str]:
    """Authorization headers carrying ``credential``."""
    return {"Authorization": f"Bearer {credential}"}


def state(database_url: str) -> dict[str, list[tuple[str, ...]]]:
    """Every row of every table, as strings, read as the connecting user (no tenant). Keys'
    ``last_used_at`` is left out: authenticating with a key may touch it."""
    engine = create_db_engine(database_url)
    found: dict[str, list[tuple[str, ...]]] = {}
    try:
        with engine.connect() as connection:
            for table in Base.metadata.sorted_tables:
                columns = [column for column in table.c if column.name != "last_used_at"]
                rows = connection.execute(select(*columns))
                found[table.name] = sorted(tuple(map(str, row)) for row in rows)
    finally:
        engine.dispose()
    return found


def scalar(database_url: str, sql: str, **params: Any) -> Any:
    """The first column of the first row of ``sql``, run as the connecting user."""
    engine = create_db_engine(database_url)
    try:
        with engine.connect() as connection:
            return connection.execute(text(sql), params).scalar()
    finally:
        engine.dispose()


def execute(database_url: str, sql: str, **params: Any) -> None:
    """Run ``sql`` as the connecting user and commit (to set up states the API cannot make)."""
    engine = create_db_engine(database_url)
    try:
        with engine.begin() as connection:
            connection.execute(text(sql), params)
    finally:
        engine.dispose()


def db_id(database_url: str, value: uuid.UUID) -> Any:
    """``value`` as the database stores it (SQLite: hex), for raw SQL parameters."""
    return value if database_url.startswith("postgresql") else value.hex


def mailbox(directory: Path) -> list[EmailMessage]:
    """The emails a ``file://`` mailer wrote to ``directory``, oldest first."""
    if not directory.exists():
        return []
    return [
        email.message_from_bytes(
            path.read_bytes(), _class=EmailMessage, policy=email.policy.default
        )
        for path in sorted(directory.glob("*.eml"))
    ]


def invitation_token(message: EmailMessage) -> str:
    """The invitation token in an invitation email's link."""
    body = message.get_body(("plain",))
    assert body is not None
    found = re.search(r"token=(inv_[A-Za-z0-9_-]+)", body.get_content())
    assert found, body.get_content()
    return found.group(1)
