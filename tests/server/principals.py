"""Callers of every kind, made straight in the database (no sign-up API, no invitation): members
of an org with any role, each signed in with a session of their own, their teams, users of no
org yet, and API keys with any scopes::

    people = People(migrated_url, org.org_id)
    owner = people.add(Role.OWNER, email="olga@acme.example", name="Olga")
    client.get("/api/v1/members", headers=owner.headers)
    platform = people.team("platform", owner)
    reader = limited_key(migrated_url, org.org_id, scopes=["read"])

The ``people``, ``owner`` and ``admin`` fixtures of ``conftest.py`` are made this way.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from agentops_server.db.models import Membership, Team, TeamMember, User, UserSession
from agentops_server.security.passwords import hash_password_blocking
from agentops_server.security.permissions import Role
from agentops_server.security.tokens import encode_access_token
from agentops_server.services.identity.api_keys import IssuedKey, new_key_row
from agentops_server.services.identity.users import normalize_email
from tests.server.api import bearer
from tests.server.database import db_id, direct_session, scalar

SECRET_KEY = "test-secret"
"""The secret key of the ``settings`` fixture's hub, which signs the people's access tokens."""
PASSWORD = "Tr0ub4dor&3-horse"
"""A password strong enough for the hub, for people who sign in with one."""


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
    """Makes members (and teams) of one org."""

    def __init__(self, database_url: str, org_id: uuid.UUID) -> None:
        self.database_url = database_url
        self.org_id = org_id

    def add(
        self,
        role: Role,
        *,
        email: str | None = None,
        name: str = "",
        password: str | None = None,
        teams: Iterable[uuid.UUID] = (),
        joined: dt.datetime | None = None,
    ) -> Person:
        """A member with ``role`` (and of ``teams``) who joined at ``joined`` (by default now),
        signed in. The user with ``email`` joins if there is one (a member of another org, say);
        else a new user is made with ``name`` and ``password`` (None: no password)."""
        address = normalize_email(email or f"{role.value}-{uuid.uuid4().hex[:10]}@example.com")
        now = dt.datetime.now(dt.UTC)
        session_id = uuid.uuid4()
        with direct_session(self.database_url) as session:
            user_id = _user(session, address, name, password)
            session.add(
                Membership(
                    org_id=self.org_id,
                    user_id=user_id,
                    role=role.value,
                    created_at=joined or now,  # ordered past SQLite's whole seconds
                )
            )
            session.flush()
            session.add_all(
                TeamMember(org_id=self.org_id, team_id=team, user_id=user_id) for team in teams
            )
            session.add(
                UserSession(
                    org_id=self.org_id,
                    id=session_id,
                    user_id=user_id,
                    method="test",
                    expires_at=now + dt.timedelta(days=1),
                )
            )
            session.commit()
        token = encode_access_token(
            SECRET_KEY, user_id=user_id, org_id=self.org_id, session_id=session_id, ttl=900
        )
        return Person(user_id, address, role, token, session_id)

    def team(self, name: str, *members: Person) -> uuid.UUID:
        """A new team of the org with ``members``."""
        team_id = uuid.uuid4()
        with direct_session(self.database_url) as session:
            session.add(Team(org_id=self.org_id, id=team_id, name=name))
            session.flush()
            session.add_all(
                TeamMember(org_id=self.org_id, team_id=team_id, user_id=member.user_id)
                for member in members
            )
            session.commit()
        return team_id

    def role_of(self, user_id: uuid.UUID) -> str | None:
        """The role ``user_id`` has in the org, or None if they are not a member."""
        role: str | None = scalar(
            self.database_url,
            "SELECT role FROM memberships WHERE org_id = :org AND user_id = :user",
            org=db_id(self.database_url, self.org_id),
            user=db_id(self.database_url, user_id),
        )
        return role


def add_user(
    database_url: str, email: str, *, name: str = "", password: str | None = None
) -> uuid.UUID:
    """A user of no org (as an external sign-in or an invitation may find them); ``password``
    None: they can sign in only through an external identity."""
    with direct_session(database_url) as session:
        user_id = _user(session, normalize_email(email), name, password)
        session.commit()
    return user_id


def limited_key(
    database_url: str, org_id: uuid.UUID, *, scopes: Iterable[str], revoked: bool = False
) -> IssuedKey:
    """A new API key of ``org_id`` carrying only ``scopes`` (``revoked`` already, if asked)."""
    row, issued = new_key_row(org_id, name="limited", scopes=scopes)
    if revoked:
        row.revoked_at = dt.datetime.now(dt.UTC)
    with direct_session(database_url) as session:
        session.add(row)
        session.commit()
    return issued


def _user(session: Session, address: str, name: str, password: str | None) -> uuid.UUID:
    """The id of the user with ``address``, made (not committed) if there is none."""
    found = session.scalar(select(User.id).where(User.email == address))
    if found is not None:
        return found
    user = User(
        id=uuid.uuid4(),
        email=address,
        name=name,
        password_hash=None if password is None else hash_password_blocking(password),
    )
    session.add(user)
    session.flush()
    return user.id
