"""span partitions: spans partitioned by day of started_at on PostgreSQL

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07

On PostgreSQL ``spans`` becomes a table partitioned by ``RANGE (started_at)``: one partition a
UTC day (``spans_pYYYYMMDD``) for every day that has spans and the days around today, and a
default partition for any other. Its primary key becomes ``(org_id, id, started_at)`` (a key of a
partitioned table must hold the partition key; ``org_id`` still leads it), its indexes, foreign
key and row-level security policy are made again on the parent, and every existing span is moved
(docs/decisions/0036-span-partitions.md). On SQLite nothing changes: ``spans`` stays one table
keyed by ``(org_id, id)``.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from alembic import op

from agentops_server.db.partitions import DEFAULT, PARENT, create_partition_sql
from agentops_server.db.rls import isolate_table

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

_OLD = "spans_unpartitioned"
_AHEAD = 7
"""Days after today given a partition now (the upkeep job keeps this many ahead)."""
_INDEXES = {
    "ix_spans_org_id_run_id_started_at": "org_id, run_id, started_at",
    "ix_spans_org_id_started_at": "org_id, started_at",
    "ix_spans_org_id_model_run_id": "org_id, model, run_id",
    "ix_spans_org_id_blocked_by_run_id": "org_id, blocked_by, run_id",
}


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    _set_aside_old_table()
    op.execute(
        f"CREATE TABLE {PARENT} (LIKE {_OLD} INCLUDING DEFAULTS) PARTITION BY RANGE (started_at)"
    )
    op.execute(f"ALTER TABLE {PARENT} ADD CONSTRAINT pk_spans PRIMARY KEY (org_id, id, started_at)")
    _keys_and_indexes()
    op.execute(f"CREATE TABLE {DEFAULT} PARTITION OF {PARENT} DEFAULT")
    today = dt.datetime.now(dt.UTC).date()
    around = {today + dt.timedelta(days=offset) for offset in range(-1, _AHEAD + 1)}
    stored = op.get_bind().exec_driver_sql(
        f"SELECT DISTINCT (started_at AT TIME ZONE 'UTC')::date FROM {_OLD}"
    )
    for day in sorted(around | {row[0] for row in stored}):
        op.execute(create_partition_sql(day))
    op.execute(f"INSERT INTO {PARENT} SELECT * FROM {_OLD}")
    op.execute(f"DROP TABLE {_OLD}")
    isolate_table(PARENT)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"ALTER TABLE {PARENT} RENAME TO {_OLD}")
    op.execute(f"ALTER TABLE {_OLD} RENAME CONSTRAINT pk_spans TO pk_{_OLD}")
    for name in _INDEXES:
        op.execute(f"DROP INDEX {name}")
    op.execute(f"CREATE TABLE {PARENT} (LIKE {_OLD} INCLUDING DEFAULTS)")
    op.execute(f"ALTER TABLE {PARENT} ADD CONSTRAINT pk_spans PRIMARY KEY (org_id, id)")
    _keys_and_indexes()
    # Rows of one id under two start times cannot both stay under (org_id, id): the newest wins.
    op.execute(
        f"INSERT INTO {PARENT} SELECT DISTINCT ON (org_id, id) * FROM {_OLD} "
        "ORDER BY org_id, id, ended_at DESC NULLS LAST"
    )
    op.execute(f"DROP TABLE {_OLD}")  # and its partitions
    isolate_table(PARENT)


def _set_aside_old_table() -> None:
    """Rename the old table out of the way, its key and indexes with it (their names are taken
    again by the new table)."""
    op.execute(f"ALTER TABLE {PARENT} RENAME TO {_OLD}")
    op.execute(f"ALTER TABLE {_OLD} RENAME CONSTRAINT pk_spans TO pk_{_OLD}")
    for name in _INDEXES:
        op.execute(f"DROP INDEX {name}")
    op.execute(f"DROP POLICY tenant_isolation ON {_OLD}")


def _keys_and_indexes() -> None:
    op.create_foreign_key(op.f("fk_spans_org_id_orgs"), PARENT, "orgs", ["org_id"], ["id"])
    for name, columns in _INDEXES.items():
        op.execute(sa.text(f"CREATE INDEX {name} ON {PARENT} ({columns})"))
