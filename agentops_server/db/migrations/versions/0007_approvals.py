"""approvals: approval requests and each org's approvals revision; delayed derived work; RLS

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07

Two tenant tables, each with its row-level security policy (PostgreSQL); ``derived_work`` rows
gain ``not_before``: a task due later (an approval's escalation).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from agentops_server.db.rls import isolate_table

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_TABLES = ("approval_requests", "approval_revisions")


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON(none_as_null=True).with_variant(
        postgresql.JSONB(none_as_null=True, astext_type=sa.Text()), "postgresql"
    )


def _moment(name: str, *, nullable: bool = True) -> sa.Column[Any]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "approval_requests",
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=32), nullable=False),
        sa.Column("agent", sa.String(length=256), nullable=False),
        sa.Column("agent_id", sa.Uuid(), nullable=True),
        sa.Column("environment", sa.String(length=256), nullable=False),
        sa.Column("run_id", sa.String(length=256), nullable=False),
        sa.Column("span_id", sa.String(length=256), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("arguments", _json(), nullable=True),
        sa.Column("arguments_sha256", sa.String(length=64), nullable=False),
        sa.Column("arguments_valid", sa.Boolean(), nullable=False),
        sa.Column("rule", sa.String(length=256), nullable=False),
        sa.Column("policy_version", sa.String(length=64), nullable=True),
        sa.Column("reason", sa.String(length=1024), nullable=True),
        sa.Column("on_expiry", sa.String(length=16), nullable=False),
        sa.Column("on_reject", sa.String(length=16), nullable=False),
        sa.Column("escalate_after", sa.Float(), nullable=True),
        sa.Column("allow_self_approval", sa.Boolean(), nullable=False),
        _moment("created_at", nullable=False),
        _moment("expires_at", nullable=False),
        _moment("escalated_at"),
        _moment("decided_at"),
        sa.Column("decided_by", sa.String(length=320), nullable=True),
        sa.Column("decided_by_id", sa.Uuid(), nullable=True),
        sa.Column("comment", sa.String(length=1024), nullable=True),
        sa.Column("edited_arguments", _json(), nullable=True),
        _moment("claimed_at"),
        sa.Column("claimed_by", sa.String(length=256), nullable=True),
        sa.ForeignKeyConstraint(
            ["org_id"], ["orgs.id"], name=op.f("fk_approval_requests_org_id_orgs")
        ),
        sa.PrimaryKeyConstraint("org_id", "id", name=op.f("pk_approval_requests")),
    )
    with op.batch_alter_table("approval_requests", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_approval_requests_org_id_key"), ["org_id", "key"], unique=True
        )
        batch_op.create_index(
            batch_op.f("ix_approval_requests_org_id_created_at_id"),
            ["org_id", "created_at", "id"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_approval_requests_org_id_state_expires_at"),
            ["org_id", "state", "expires_at"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_approval_requests_org_id_decided_at"),
            ["org_id", "decided_at"],
            unique=False,
        )

    op.create_table(
        "approval_revisions",
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("revision", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"], ["orgs.id"], name=op.f("fk_approval_revisions_org_id_orgs")
        ),
        sa.PrimaryKeyConstraint("org_id", name=op.f("pk_approval_revisions")),
    )

    with op.batch_alter_table("derived_work", schema=None) as batch_op:
        batch_op.add_column(_moment("not_before"))

    for table in _TABLES:
        isolate_table(table)


def downgrade() -> None:
    with op.batch_alter_table("derived_work", schema=None) as batch_op:
        batch_op.drop_column("not_before")
    for table in reversed(_TABLES):
        op.drop_table(table)  # its policy and indexes go with it
