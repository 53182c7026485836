"""pricing: org prices and pricing jobs; what each span and run cost; RLS

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07

Two tenant tables, each with its row-level security policy (PostgreSQL), and the cost columns
of spans and runs (spans.cost and runs.cost were there from the first migration).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from agentops_server.db.rls import isolate_table

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_TABLES = ("model_prices", "pricing_jobs")
_MONEY = sa.Numeric(20, 10)
_NOW = sa.text("(CURRENT_TIMESTAMP)")


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON(none_as_null=True).with_variant(
        postgresql.JSONB(none_as_null=True, astext_type=sa.Text()), "postgresql"
    )


def upgrade() -> None:
    with op.batch_alter_table("spans", schema=None) as batch_op:
        batch_op.add_column(sa.Column("cached_input_tokens", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("cache_write_tokens", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("reasoning_tokens", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("cost_match", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("pricing_version", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("priced_model", sa.String(length=320), nullable=True))
        batch_op.add_column(sa.Column("sdk_cost", _MONEY, nullable=True))
        batch_op.create_index(batch_op.f("ix_spans_org_id_started_at"), ["org_id", "started_at"])

    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sdk_cost", _MONEY, nullable=True))
        for column in ("cached_input_tokens", "cache_write_tokens", "reasoning_tokens"):
            batch_op.add_column(
                sa.Column(column, sa.BigInteger(), nullable=False, server_default="0")
            )
        for column in ("llm_calls", "unpriced_calls"):
            batch_op.add_column(sa.Column(column, sa.Integer(), nullable=False, server_default="0"))

    op.create_table(
        "model_prices",
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("provider", sa.String(length=64), nullable=False),
        sa.Column("model", sa.String(length=256), nullable=False),
        sa.Column("input", _MONEY, nullable=False),
        sa.Column("output", _MONEY, nullable=False),
        sa.Column("cached_input", _MONEY, nullable=True),
        sa.Column("cache_write", _MONEY, nullable=True),
        sa.Column("reasoning", _MONEY, nullable=True),
        sa.Column("tiers", _json(), nullable=False),
        sa.Column("note", sa.String(length=1000), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=_NOW, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=_NOW, nullable=False),
        sa.ForeignKeyConstraint(["org_id"], ["orgs.id"], name=op.f("fk_model_prices_org_id_orgs")),
        sa.PrimaryKeyConstraint("org_id", "id", name=op.f("pk_model_prices")),
    )
    with op.batch_alter_table("model_prices", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_model_prices_org_id_model_provider"),
            ["org_id", "model", "provider"],
            unique=True,
        )

    op.create_table(
        "pricing_jobs",
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("range_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("range_to", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("spans_priced", sa.Integer(), nullable=False),
        sa.Column("runs_totalled", sa.Integer(), nullable=False),
        sa.Column("error", sa.String(length=2000), nullable=True),
        sa.Column("requested_by", sa.String(length=320), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=_NOW, nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["org_id"], ["orgs.id"], name=op.f("fk_pricing_jobs_org_id_orgs")),
        sa.PrimaryKeyConstraint("org_id", "id", name=op.f("pk_pricing_jobs")),
    )
    with op.batch_alter_table("pricing_jobs", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_pricing_jobs_org_id_created_at"), ["org_id", "created_at"]
        )

    for table in _TABLES:
        isolate_table(table)


def downgrade() -> None:
    for table in reversed(_TABLES):
        op.drop_table(table)  # its policy and indexes go with it
    with op.batch_alter_table("runs", schema=None) as batch_op:
        for column in (
            "unpriced_calls",
            "llm_calls",
            "reasoning_tokens",
            "cache_write_tokens",
            "cached_input_tokens",
            "sdk_cost",
        ):
            batch_op.drop_column(column)
    with op.batch_alter_table("spans", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_spans_org_id_started_at"))
        for column in (
            "sdk_cost",
            "priced_model",
            "pricing_version",
            "cost_match",
            "reasoning_tokens",
            "cache_write_tokens",
            "cached_input_tokens",
        ):
            batch_op.drop_column(column)
