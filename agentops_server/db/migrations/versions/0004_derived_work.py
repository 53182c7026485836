"""derived work: the outbox of tasks committed changes still owe

Revision ID: 0004
Revises: 0002
Create Date: 2026-12-06

Not a tenant table: the worker reads every org's rows as one system process. On PostgreSQL the
app's role may only insert (in the transaction of the change); it can neither read nor change a
row, so no request sees another org's notices. Workers and the CLI use the connecting user.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from agentops_server.db.rls import APP_ROLE

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "derived_work",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("notice", sa.String(length=100), nullable=False),
        sa.Column("task", sa.String(length=300), nullable=False),
        sa.Column(
            "payload",
            sa.JSON(none_as_null=True).with_variant(
                postgresql.JSONB(none_as_null=True, astext_type=sa.Text()), "postgresql"
            ),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("failed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_derived_work")),
    )
    op.create_index(
        op.f("ix_derived_work_failed_at_created_at"),
        "derived_work",
        ["failed_at", "created_at"],
        unique=False,
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"GRANT INSERT ON derived_work TO {APP_ROLE}")


def downgrade() -> None:
    op.drop_index(op.f("ix_derived_work_failed_at_created_at"), table_name="derived_work")
    op.drop_table("derived_work")
