"""What the ingest tests share: wire events as the SDK writes them, and reading rows back
straight from the database.

    run = run_event(agent="triage")
    payload = batch(run, span_event(run, name="search"))
    response = client.post(INGEST, json=payload, headers=auth)
    assert rows(url, "spans")[0]["name"] == "search"
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import select

from agentops_server.db.models import Agent, Run, Span
from tests.server import database

INGEST = "/api/v1/ingest/batch"
UPLOAD = "/api/v1/ingest/run"
T0 = dt.datetime(2026, 11, 1, 12, 0, tzinfo=dt.UTC)
_MODELS: dict[str, Any] = {"runs": Run, "spans": Span, "agents": Agent}


def run_event(**fields: Any) -> dict[str, Any]:
    """A finished run event (``status="running"`` and ``ended_at=None`` make a start)."""
    event = {
        "type": "run",
        "schema_version": 1,
        "id": str(uuid.uuid4()),
        "agent": "triage",
        "name": "triage",
        "environment": "test",
        "status": "ok",
        "started_at": T0.isoformat(),
        "ended_at": (T0 + dt.timedelta(seconds=2)).isoformat(),
        "tags": ["nightly"],
        "metadata": {"ticket": 7},
        "input": {"question": "why?"},
        "output": "because",
        "error": None,
        "span_count": 1,
        "error_count": 0,
        "input_tokens": 12,
        "output_tokens": 30,
    }
    return event | fields


def started(run: dict[str, Any]) -> dict[str, Any]:
    """The start event of ``run``: what the SDK sends first."""
    return run | {"status": "running", "ended_at": None, "output": None, "span_count": 0}


def span_event(run: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """A finished span of ``run``."""
    event = {
        "type": "span",
        "schema_version": 1,
        "id": str(uuid.uuid4()),
        "run_id": run["id"],
        "parent_id": None,
        "kind": "llm",
        "name": "ask",
        "status": "ok",
        "started_at": (T0 + dt.timedelta(milliseconds=100)).isoformat(),
        "ended_at": (T0 + dt.timedelta(seconds=1)).isoformat(),
        "tags": [],
        "attributes": {"temperature": 0.2},
        "input": {"prompt": "why?"},
        "output": "because",
        "error": None,
        "llm": {"model": "gpt-4o", "provider": "openai", "input_tokens": 12, "output_tokens": 30},
        "events": [{"name": "retry", "at": T0.isoformat(), "attributes": {"attempt": 1}}],
    }
    return event | fields


def batch(*events: Any, **fields: Any) -> dict[str, Any]:
    """A batch envelope around ``events``."""
    envelope = {
        "schema_version": 1,
        "batch_id": str(uuid.uuid4()),
        "sdk": {"name": "agentops-sdk", "version": "test"},
        "events": list(events),
    }
    return envelope | fields


def rows(database_url: str, table: str, org_id: uuid.UUID | None = None) -> list[dict[str, Any]]:
    """Every row of ``table`` (of ``org_id`` if given), read straight from the database."""
    model = _MODELS[table]
    query = select(model.__table__)
    if org_id is not None:
        query = query.where(model.__table__.c.org_id == org_id)
    return [dict(row._mapping) for row in database.rows(database_url, query)]


def by_id(found: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Rows keyed by their id as the wire writes it."""
    return {str(row["id"]): row for row in found}


def utc(moment: dt.datetime | None) -> dt.datetime | None:
    """A stored time as an aware UTC time (SQLite gives naive UTC back)."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=dt.UTC)
