"""run explorer: search documents with a full-text index, run durations, blocked-by stages,
per-org retention; RLS

Revision ID: 0011
Revises: 0009
Create Date: 2026-12-07

One tenant table (``run_search``) with its row-level security policy (PostgreSQL) and its
full-text index: a GIN index on ``to_tsvector('simple', body)`` on PostgreSQL, an external-content
FTS5 table kept in step by triggers on SQLite (docs/decisions/0032-run-search.md). Existing runs
get their duration and search documents; existing spans their blocked-by stage on PostgreSQL
(SQLite reads no JSON path cheaply enough to be worth it in a migration: earlier blocked spans
there are not found by the filter).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from agentops_server.db.rls import isolate_table

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

SEARCH_INDEX = "ix_run_search_document"
"""The PostgreSQL GIN index (not in the models: autogenerate skips it, see migrations/env.py)."""
SEARCH_FTS = "run_search_fts"
"""The SQLite FTS5 table over ``run_search.body`` (likewise skipped, with its shadow tables)."""

_BODY_LIMIT = 32768


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("duration_ms", sa.Float(), nullable=True))
        batch_op.create_index(batch_op.f("ix_runs_org_id_cost_id"), ["org_id", "cost", "id"])
        batch_op.create_index(
            batch_op.f("ix_runs_org_id_duration_ms_id"), ["org_id", "duration_ms", "id"]
        )
    with op.batch_alter_table("spans", schema=None) as batch_op:
        batch_op.add_column(sa.Column("blocked_by", sa.String(length=16), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_spans_org_id_model_run_id"), ["org_id", "model", "run_id"]
        )
        batch_op.create_index(
            batch_op.f("ix_spans_org_id_blocked_by_run_id"), ["org_id", "blocked_by", "run_id"]
        )
    with op.batch_alter_table("orgs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("retention_days", sa.Integer(), nullable=False, server_default="30")
        )

    op.create_table(
        "run_search",
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("run_id", sa.Uuid(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["org_id"], ["orgs.id"], name=op.f("fk_run_search_org_id_orgs")),
        sa.PrimaryKeyConstraint("org_id", "id", name=op.f("pk_run_search")),
    )
    with op.batch_alter_table("run_search", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_run_search_org_id_run_id"), ["org_id", "run_id"])
        batch_op.create_index(
            batch_op.f("ix_run_search_org_id_started_at"), ["org_id", "started_at"]
        )
    if dialect == "postgresql":
        _postgresql_search()
    else:
        _sqlite_search()
    isolate_table("run_search")


def _postgresql_search() -> None:
    op.execute(f"CREATE INDEX {SEARCH_INDEX} ON run_search USING gin (to_tsvector('simple', body))")
    op.execute(
        "UPDATE runs SET duration_ms = EXTRACT(EPOCH FROM ended_at - started_at) * 1000 "
        "WHERE ended_at IS NOT NULL"
    )
    op.execute(
        "UPDATE spans SET blocked_by = d.stage FROM ("
        " SELECT s.org_id, s.id, e -> 'attributes' ->> 'stage' AS stage"
        " FROM spans s, jsonb_array_elements(s.events) e"
        " WHERE s.status = 'blocked' AND e ->> 'name' = 'agentops.decision'"
        " AND e -> 'attributes' ->> 'outcome' = 'deny') d"
        " WHERE spans.org_id = d.org_id AND spans.id = d.id"
    )
    for table in ("runs", "spans"):
        op.execute(
            "INSERT INTO run_search (org_id, id, run_id, started_at, body) "
            f"SELECT org_id, id, {'id' if table == 'runs' else 'run_id'}, started_at, "
            "left(lower(regexp_replace(concat_ws(' ', name, input::text, output::text, "
            "error ->> 'type', error ->> 'message'), '[^[:alnum:]]+', ' ', 'g')), "
            f"{_BODY_LIMIT}) FROM {table}"
        )


def _sqlite_search() -> None:
    op.execute(
        f"CREATE VIRTUAL TABLE {SEARCH_FTS} USING fts5("
        "body, content='run_search', content_rowid='rowid')"
    )
    op.execute(
        f"CREATE TRIGGER {SEARCH_FTS}_insert AFTER INSERT ON run_search BEGIN "
        f"INSERT INTO {SEARCH_FTS} (rowid, body) VALUES (new.rowid, new.body); END"
    )
    op.execute(
        f"CREATE TRIGGER {SEARCH_FTS}_delete AFTER DELETE ON run_search BEGIN "
        f"INSERT INTO {SEARCH_FTS} ({SEARCH_FTS}, rowid, body) "
        "VALUES ('delete', old.rowid, old.body); END"
    )
    op.execute(
        f"CREATE TRIGGER {SEARCH_FTS}_update AFTER UPDATE ON run_search BEGIN "
        f"INSERT INTO {SEARCH_FTS} ({SEARCH_FTS}, rowid, body) "
        "VALUES ('delete', old.rowid, old.body); "
        f"INSERT INTO {SEARCH_FTS} (rowid, body) VALUES (new.rowid, new.body); END"
    )
    op.execute(
        "UPDATE runs SET duration_ms = "
        "(julianday(ended_at) - julianday(started_at)) * 86400000.0 WHERE ended_at IS NOT NULL"
    )
    for table in ("runs", "spans"):
        op.execute(
            "INSERT INTO run_search (org_id, id, run_id, started_at, body) "
            f"SELECT org_id, id, {'id' if table == 'runs' else 'run_id'}, started_at, "
            "substr(name || ' ' || coalesce(input, '') || ' ' || coalesce(output, '') || ' ' "
            "|| coalesce(json_extract(error, '$.type'), '') || ' ' "
            f"|| coalesce(json_extract(error, '$.message'), ''), 1, {_BODY_LIMIT}) FROM {table}"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute(f"DROP TABLE IF EXISTS {SEARCH_FTS}")  # its triggers go with run_search
    op.drop_table("run_search")  # its policy and indexes go with it
    with op.batch_alter_table("orgs", schema=None) as batch_op:
        batch_op.drop_column("retention_days")
    with op.batch_alter_table("spans", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_spans_org_id_blocked_by_run_id"))
        batch_op.drop_index(batch_op.f("ix_spans_org_id_model_run_id"))
        batch_op.drop_column("blocked_by")
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_runs_org_id_duration_ms_id"))
        batch_op.drop_index(batch_op.f("ix_runs_org_id_cost_id"))
        batch_op.drop_column("duration_ms")
