"""policies: immutable policy versions and each org's policy head; RLS

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06

Two tenant tables, each with its row-level security policy (PostgreSQL).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from agentops_server.db.rls import isolate_table

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_TABLES = ("policy_versions", "policy_states")


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON(none_as_null=True).with_variant(
        postgresql.JSONB(none_as_null=True, astext_type=sa.Text()), "postgresql"
    )


def upgrade() -> None:
    op.create_table(
        "policy_versions",
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("document", _json(), nullable=False),
        sa.Column("tests", _json(), nullable=False),
        sa.Column("comment", sa.String(length=1000), nullable=True),
        sa.Column("author_type", sa.String(length=16), nullable=False),
        sa.Column("author_id", sa.Uuid(), nullable=True),
        sa.Column("rolled_back_from", sa.Integer(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["org_id"], ["orgs.id"], name=op.f("fk_policy_versions_org_id_orgs")
        ),
        sa.PrimaryKeyConstraint("org_id", "id", name=op.f("pk_policy_versions")),
    )
    with op.batch_alter_table("policy_versions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_policy_versions_org_id_number"), ["org_id", "number"], unique=True
        )

    op.create_table(
        "policy_states",
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("latest_number", sa.Integer(), nullable=False),
        sa.Column("active_id", sa.Uuid(), nullable=True),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("activated_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["org_id"], ["orgs.id"], name=op.f("fk_policy_states_org_id_orgs")),
        sa.PrimaryKeyConstraint("org_id", name=op.f("pk_policy_states")),
    )

    for table in _TABLES:
        isolate_table(table)


def downgrade() -> None:
    for table in reversed(_TABLES):
        op.drop_table(table)  # its policy and indexes go with it
