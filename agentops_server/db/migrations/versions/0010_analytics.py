"""analytics: hourly and daily rollups and the buckets rolled up; RLS

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07

Two tenant tables, each with its row-level security policy (PostgreSQL).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from agentops_server.db.rls import isolate_table

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_TABLES = ("analytics_rollups", "analytics_buckets")
_COUNTS = (
    ("runs", sa.Integer()),
    ("succeeded", sa.Integer()),
    ("failures", sa.Integer()),
    ("blocked_calls", sa.Integer()),
    ("spans", sa.BigInteger()),
    ("llm_calls", sa.BigInteger()),
    ("tool_calls", sa.BigInteger()),
    ("unpriced_calls", sa.BigInteger()),
    ("input_tokens", sa.BigInteger()),
    ("output_tokens", sa.BigInteger()),
    ("cached_input_tokens", sa.BigInteger()),
    ("cache_write_tokens", sa.BigInteger()),
    ("reasoning_tokens", sa.BigInteger()),
)


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON(none_as_null=True).with_variant(
        postgresql.JSONB(none_as_null=True, astext_type=sa.Text()), "postgresql"
    )


def _moment(name: str, *, nullable: bool = False) -> sa.Column[Any]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "analytics_rollups",
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("grain", sa.String(length=8), nullable=False),
        sa.Column("dimension", sa.String(length=16), nullable=False),
        sa.Column("key", sa.String(length=320), nullable=False),
        _moment("bucket_start"),
        *(sa.Column(name, kind, nullable=False) for name, kind in _COUNTS),
        sa.Column("cost", sa.Numeric(20, 10), nullable=False),
        sa.Column("latency_ms_sum", sa.BigInteger(), nullable=False),
        sa.Column("latency", _json(), nullable=False),
        _moment("last_run_at", nullable=True),
        sa.ForeignKeyConstraint(
            ["org_id"], ["orgs.id"], name=op.f("fk_analytics_rollups_org_id_orgs")
        ),
        sa.PrimaryKeyConstraint(
            "org_id",
            "grain",
            "dimension",
            "key",
            "bucket_start",
            name=op.f("pk_analytics_rollups"),
        ),
    )
    with op.batch_alter_table("analytics_rollups", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_analytics_rollups_org_id_grain_dimension_bucket_start"),
            ["org_id", "grain", "dimension", "bucket_start"],
            unique=False,
        )

    op.create_table(
        "analytics_buckets",
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("grain", sa.String(length=8), nullable=False),
        _moment("bucket_start"),
        _moment("refreshed_at"),
        sa.Column("wanted", sa.BigInteger(), nullable=False),
        sa.Column("done", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"], ["orgs.id"], name=op.f("fk_analytics_buckets_org_id_orgs")
        ),
        sa.PrimaryKeyConstraint(
            "org_id", "grain", "bucket_start", name=op.f("pk_analytics_buckets")
        ),
    )

    for table in _TABLES:
        isolate_table(table)


def downgrade() -> None:
    for table in reversed(_TABLES):
        op.drop_table(table)  # its policy and indexes go with it
