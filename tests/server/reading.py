"""What the reading-API tests share: rows inserted straight through SQLAlchemy (not through the
ingest API), keys with fewer scopes, and the check of a problem answer.

with seeded(migrated_url, org.org_id) as rows:
    run = rows.run(agent="triage", started_at=T0)
    root = rows.span(run, "triage", kind="agent")
    rows.span(run, "search", parent=root)
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy.orm import Session

from agentops_server.db.engine import create_db_engine
from agentops_server.db.models import Agent, Run, Span
from agentops_server.services.orgs import IssuedKey, issue_key

T0 = dt.datetime(2026, 11, 1, 12, 0, tzinfo=dt.UTC)


class Rows:
    """Adds runs, spans and agents of one org to a session."""

    def __init__(self, session: Session, org_id: uuid.UUID) -> None:
        self.session = session
        self.org_id = org_id

    def run(
        self,
        *,
        agent: str = "triage",
        status: str = "ok",
        environment: str = "prod",
        started_at: dt.datetime = T0,
        **fields: Any,
    ) -> Run:
        """A run, ended one second after it started unless told otherwise."""
        fields.setdefault("ended_at", started_at + dt.timedelta(seconds=1))
        row = Run(
            org_id=self.org_id,
            id=fields.pop("id", uuid.uuid4()),
            agent=agent,
            name=fields.pop("name", agent),
            environment=environment,
            status=status,
            started_at=started_at,
            **fields,
        )
        self.session.add(row)
        self.session.flush()
        return row

    def span(
        self,
        run: Run,
        name: str,
        *,
        kind: str = "tool",
        parent: Span | uuid.UUID | None = None,
        offset_ms: int = 0,
        **fields: Any,
    ) -> Span:
        """A span of ``run`` starting ``offset_ms`` after the run, lasting 10 ms by default."""
        started_at = run.started_at + dt.timedelta(milliseconds=offset_ms)
        fields.setdefault("ended_at", started_at + dt.timedelta(milliseconds=10))
        row = Span(
            org_id=self.org_id,
            id=fields.pop("id", uuid.uuid4()),
            run_id=run.id,
            parent_id=parent.id if isinstance(parent, Span) else parent,
            kind=kind,
            name=name,
            status=fields.pop("status", "ok"),
            started_at=started_at,
            **fields,
        )
        self.session.add(row)
        self.session.flush()
        return row

    def agent(self, name: str, *, first_seen_at: dt.datetime, last_seen_at: dt.datetime) -> Agent:
        """An agent, as registered when its first run arrived."""
        row = Agent(
            org_id=self.org_id,
            id=uuid.uuid4(),
            name=name,
            first_seen_at=first_seen_at,
            last_seen_at=last_seen_at,
        )
        self.session.add(row)
        self.session.flush()
        return row


@contextmanager
def seeded(database_url: str, org_id: uuid.UUID) -> Iterator[Rows]:
    """Rows of ``org_id``, committed when the block ends."""
    engine = create_db_engine(database_url)
    try:
        with Session(engine, expire_on_commit=False) as session:
            yield Rows(session, org_id)
            session.commit()
    finally:
        engine.dispose()


def limited_key(database_url: str, org_id: uuid.UUID, *, scopes: list[str]) -> IssuedKey:
    """A new key of ``org_id`` carrying only ``scopes``."""
    engine = create_db_engine(database_url)
    try:
        with Session(engine) as session:
            issued = issue_key(session, org_id, name="limited", scopes=scopes)
            session.commit()
            return issued
    finally:
        engine.dispose()


def assert_problem(response: Any, status: int, code: str) -> None:
    """``response`` is an ``application/problem+json`` answer with ``status`` and ``code``."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == code
