"""Callers of every kind for authorisation tests: members of each role and keys of each scope,
made straight in the database (no sign-up API needed), each with a fresh session or key.

principal = Principals(migrated_url, org.org_id)
headers = principal.member(Role.VIEWER)      # a new viewer, signed in
headers = principal.key({"read"})            # a new key with the read scope
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable

from sqlalchemy.orm import Session

from agentops_server.auth.permissions import Role
from agentops_server.auth.tokens import encode_access_token
from agentops_server.db.engine import create_db_engine
from agentops_server.db.models import Membership, User, UserSession
from agentops_server.services.orgs import issue_key

SECRET_KEY = "test-secret"  # the ``settings`` fixture's


class Principals:
    """Makes members and keys of one org."""

    def __init__(self, database_url: str, org_id: uuid.UUID) -> None:
        self.engine = create_db_engine(database_url)
        self.org_id = org_id

    def close(self) -> None:
        self.engine.dispose()

    def member(self, role: Role, *, email: str | None = None) -> dict[str, str]:
        """Authorization headers of a new member with ``role``."""
        return bearer(self.member_token(role, email=email)[0])

    def member_token(self, role: Role, *, email: str | None = None) -> tuple[str, uuid.UUID]:
        """An access token of a new member with ``role``, and the member's user id."""
        user_id, session_id = uuid.uuid4(), uuid.uuid4()
        with Session(self.engine) as session:
            session.add(User(id=user_id, email=email or f"{role}-{user_id.hex[:12]}@example.com"))
            session.flush()
            session.add(Membership(org_id=self.org_id, user_id=user_id, role=role.value))
            session.add(
                UserSession(
                    org_id=self.org_id,
                    id=session_id,
                    user_id=user_id,
                    method="test",
                    expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1),
                )
            )
            session.commit()
        token = encode_access_token(
            SECRET_KEY, user_id=user_id, org_id=self.org_id, session_id=session_id, ttl=900
        )
        return token, user_id

    def key(self, scopes: Iterable[str]) -> dict[str, str]:
        """Authorization headers of a new API key with ``scopes``."""
        with Session(self.engine) as session:
            issued = issue_key(session, self.org_id, name="test", scopes=scopes)
            session.commit()
        return bearer(issued.key)


def bearer(credential: str) -> dict[str, str]:
    """Authorization headers carrying ``credential``."""
    return {"Authorization": f"Bearer {credential}"}
