"""Migrations: they build exactly the schema the models describe, on both databases."""

from __future__ import annotations

import datetime as dt
import uuid

from alembic import command
from sqlalchemy import select
from sqlalchemy.orm import Session

from agentops_server.db.engine import create_db_engine
from agentops_server.db.migrate import alembic_config, head_revision, is_current, upgrade
from agentops_server.db.models import Agent, Org


def test_migrations_leave_no_difference_from_the_models(database_url: str) -> None:
    upgrade(database_url)
    command.check(alembic_config(database_url))  # raises if autogenerate finds any change


def test_upgrade_twice_is_harmless_and_current(database_url: str) -> None:
    upgrade(database_url)
    upgrade(database_url)
    engine = create_db_engine(database_url)
    with engine.connect() as connection:
        assert is_current(connection)
    engine.dispose()
    assert head_revision() is not None


def test_times_come_back_as_aware_utc_whatever_zone_they_were_written_in(
    migrated_url: str,
) -> None:
    paris = dt.timezone(dt.timedelta(hours=1))
    written = dt.datetime(2026, 11, 25, 10, 30, tzinfo=paris)
    engine = create_db_engine(migrated_url)
    with Session(engine) as session:
        org = Org(id=uuid.uuid4(), name="tz", slug="tz")
        session.add(org)
        session.flush()
        session.add(Agent(org_id=org.id, name="a", first_seen_at=written, last_seen_at=written))
        session.commit()
    with Session(engine) as session:
        agent = session.scalars(select(Agent)).one()
    engine.dispose()
    assert agent.first_seen_at.tzinfo is not None
    assert agent.first_seen_at.utcoffset() == dt.timedelta(0)
    assert agent.first_seen_at == written
