"""Runs, spans and agents inserted straight through SQLAlchemy (not through the ingest API),
for the reading-API tests::

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

from agentops_server.db.models import Agent, Run, Span
from tests.server.database import direct_session
from tests.server.ingest_events import T0


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
    with direct_session(database_url) as session:
        yield Rows(session, org_id)
        session.commit()
