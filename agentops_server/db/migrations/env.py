"""Alembic environment: runs migrations on the sync engine of the configured URL."""

from __future__ import annotations

from typing import Any

from alembic import context

from agentops_server.db.engine import create_db_engine
from agentops_server.db.models import Base

config = context.config
target_metadata = Base.metadata

_UNMODELLED = ("run_search_fts", "ix_run_search_document", "spans_p", "spans_default")
"""Made by hand, not in the models: the full-text index of run search (migration 0011) and the
partitions of ``spans`` on PostgreSQL (migration 0012, db/partitions.py)."""


def include_object(_object: Any, name: str | None, _type: str, _reflected: bool, _to: Any) -> bool:
    """Leave the full-text index (and SQLite's FTS5 shadow tables) and the span partitions (with
    their indexes) out of autogenerate."""
    return not (name or "").startswith(_UNMODELLED)


def run_migrations_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
        include_object=include_object,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    url = config.get_main_option("sqlalchemy.url")
    assert url is not None
    engine = create_db_engine(url)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            include_object=include_object,
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
