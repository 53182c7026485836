"""The test database read and written straight, as its connecting user: past the app and its
tenancy (on PostgreSQL the user is a superuser, so past row-level security too). For checking
what a request stored or changed, and for arranging states the API cannot make::

    before = state(url)
    assert scalar(url, "SELECT count(*) FROM audit_log") == 1
    (user,) = rows(url, select(User))
    execute(url, "UPDATE invitations SET expires_at = :past", past="2000-01-01 00:00:00")
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Executable, func, select, text
from sqlalchemy.orm import Session

from agentops_server.db.engine import create_db_engine
from agentops_server.db.models import Base


def rows(database_url: str, query: str | Executable, **params: Any) -> list[Any]:
    """The rows ``query`` (SQL text with ``:name`` parameters, or a SQLAlchemy statement)
    selects, every org's included."""
    with direct_session(database_url) as session:
        return list(session.execute(_statement(query), params).all())


def scalar(database_url: str, query: str | Executable, **params: Any) -> Any:
    """The first column of the first row ``query`` selects (None if there is none)."""
    with direct_session(database_url) as session:
        return session.execute(_statement(query), params).scalar()


def count(database_url: str, model: type[Any]) -> int:
    """How many rows ``model``'s table holds, every org's included."""
    found: int = scalar(database_url, select(func.count()).select_from(model))
    return found


def execute(database_url: str, sql: str, **params: Any) -> None:
    """Run ``sql`` and commit (to move times into the past, or to set up states the API cannot
    make)."""
    with direct_session(database_url) as session:
        session.execute(text(sql), params)
        session.commit()


def db_id(database_url: str, value: uuid.UUID | str) -> Any:
    """An id as the database stores it (SQLite: 32 hex digits), for SQL text parameters."""
    as_uuid = uuid.UUID(str(value))
    return as_uuid if database_url.startswith("postgresql") else as_uuid.hex


def state(database_url: str) -> dict[str, list[tuple[str, ...]]]:
    """Every row of every table, as sorted tuples of strings: equal before and after a request
    that must change nothing. Keys' ``last_used_at`` is left out: authenticating with a key may
    touch it."""
    found: dict[str, list[tuple[str, ...]]] = {}
    with direct_session(database_url) as session:
        for table in Base.metadata.sorted_tables:
            columns = [column for column in table.c if column.name != "last_used_at"]
            found[table.name] = sorted(
                tuple(map(str, row)) for row in session.execute(select(*columns))
            )
    return found


@contextmanager
def direct_session(database_url: str) -> Iterator[Session]:
    """A session on the database as its connecting user; commit what it should keep (objects
    stay readable after the commit)."""
    engine = create_db_engine(database_url)
    try:
        with Session(engine, expire_on_commit=False) as session:
            yield session
    finally:
        engine.dispose()


def _statement(query: str | Executable) -> Executable:
    return text(query) if isinstance(query, str) else query
