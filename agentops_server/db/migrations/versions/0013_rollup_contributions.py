"""rollup contributions: what each run adds to its hour's rollups; incremental buckets; RLS

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07

One tenant table (``rollup_contributions``) with its row-level security policy (PostgreSQL).
``analytics_buckets`` loses the tickets (``wanted``, ``done``) that made notices of one hour
skip it, and gains ``incremental``: false for the hours already rolled up, whose rows are not
yet the sum of contributions (the next rollup of one of their runs rebuilds them from the raw
rows first; docs/decisions/0031-analytics-rollups.md).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from agentops_server.db.rls import isolate_table

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON(none_as_null=True).with_variant(
        postgresql.JSONB(none_as_null=True, astext_type=sa.Text()), "postgresql"
    )


def upgrade() -> None:
    op.create_table(
        "rollup_contributions",
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("run_id", sa.Uuid(), nullable=False),
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("rows", _json(), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"], ["orgs.id"], name=op.f("fk_rollup_contributions_org_id_orgs")
        ),
        sa.PrimaryKeyConstraint("org_id", "run_id", name=op.f("pk_rollup_contributions")),
    )
    with op.batch_alter_table("rollup_contributions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_rollup_contributions_org_id_hour"), ["org_id", "hour"], unique=False
        )
    with op.batch_alter_table("analytics_buckets", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("incremental", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
    # Existing hours were made by recomputation: not incremental. New buckets are.
    with op.batch_alter_table("analytics_buckets", schema=None) as batch_op:
        batch_op.alter_column("incremental", server_default=sa.true())
        batch_op.drop_column("wanted")
        batch_op.drop_column("done")
    isolate_table("rollup_contributions")


def downgrade() -> None:
    with op.batch_alter_table("analytics_buckets", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("wanted", sa.BigInteger(), server_default="0", nullable=False)
        )
        batch_op.add_column(sa.Column("done", sa.BigInteger(), server_default="0", nullable=False))
        batch_op.drop_column("incremental")
    op.drop_table("rollup_contributions")  # its policy and index go with it
