"""budgets: budgets, their ledger, leases and alerts, and each org's budget-set version; RLS

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07

Five tenant tables, each with its row-level security policy (PostgreSQL).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from agentops_server.db.rls import isolate_table

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_TABLES = ("budgets", "budget_versions", "budget_ledger", "budget_leases", "budget_alerts")
_MONEY = sa.Numeric(20, 10)


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON(none_as_null=True).with_variant(
        postgresql.JSONB(none_as_null=True, astext_type=sa.Text()), "postgresql"
    )


def _moment(name: str, *, nullable: bool = False) -> sa.Column[Any]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _keys() -> list[Any]:
    return [
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
    ]


def _constraints(table: str) -> list[Any]:
    return [
        sa.ForeignKeyConstraint(["org_id"], ["orgs.id"], name=op.f(f"fk_{table}_org_id_orgs")),
        sa.PrimaryKeyConstraint("org_id", "id", name=op.f(f"pk_{table}")),
    ]


def upgrade() -> None:
    op.create_table(
        "budgets",
        *_keys(),
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("scope_kind", sa.String(length=16), nullable=False),
        sa.Column("scope_value", sa.String(length=256), nullable=False),
        sa.Column("limit_usd", _MONEY, nullable=False),
        sa.Column("limit_tokens", sa.BigInteger(), nullable=True),
        sa.Column("period", sa.String(length=16), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("hard", sa.Boolean(), nullable=False),
        sa.Column("thresholds", _json(), nullable=False),
        sa.Column("on_unknown_cost", sa.String(length=32), nullable=False),
        sa.Column("unknown_cost_ceiling", _MONEY, nullable=True),
        sa.Column("fail_mode", sa.String(length=16), nullable=False),
        sa.Column("auto_pause", sa.Boolean(), nullable=False),
        sa.Column("auto_resume", sa.Boolean(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("notify", _json(), nullable=False),
        _moment("created_at"),
        _moment("updated_at"),
        *_constraints("budgets"),
    )
    with op.batch_alter_table("budgets", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_budgets_org_id_name"), ["org_id", "name"], unique=True)

    op.create_table(
        "budget_versions",
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"], ["orgs.id"], name=op.f("fk_budget_versions_org_id_orgs")
        ),
        sa.PrimaryKeyConstraint("org_id", name=op.f("pk_budget_versions")),
    )

    op.create_table(
        "budget_ledger",
        *_keys(),
        sa.Column("budget_id", sa.Uuid(), nullable=False),
        _moment("window_start"),
        sa.Column("amount_usd", _MONEY, nullable=False),
        sa.Column("tokens", sa.BigInteger(), nullable=False),
        sa.Column("span_id", sa.Uuid(), nullable=False),
        sa.Column("run_id", sa.Uuid(), nullable=False),
        sa.Column("lease_id", sa.Uuid(), nullable=True),
        _moment("at"),
        *_constraints("budget_ledger"),
    )
    with op.batch_alter_table("budget_ledger", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_budget_ledger_org_id_budget_id_span_id"),
            ["org_id", "budget_id", "span_id"],
            unique=True,
        )
        batch_op.create_index(
            batch_op.f("ix_budget_ledger_org_id_budget_id_window_start"),
            ["org_id", "budget_id", "window_start"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_budget_ledger_org_id_lease_id"), ["org_id", "lease_id"], unique=False
        )

    op.create_table(
        "budget_leases",
        *_keys(),
        sa.Column("request_id", sa.Uuid(), nullable=False),
        sa.Column("budget_id", sa.Uuid(), nullable=False),
        sa.Column("holder", sa.String(length=256), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("granted_usd", _MONEY, nullable=False),
        sa.Column("granted_tokens", sa.BigInteger(), nullable=True),
        sa.Column("spent_usd", _MONEY, nullable=False),
        sa.Column("spent_tokens", sa.BigInteger(), nullable=True),
        _moment("window_start", nullable=True),
        _moment("window_end", nullable=True),
        _moment("expires_at"),
        sa.Column("budget_version", sa.Integer(), nullable=False),
        _moment("created_at"),
        _moment("updated_at"),
        *_constraints("budget_leases"),
    )
    with op.batch_alter_table("budget_leases", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_budget_leases_org_id_request_id"), ["org_id", "request_id"], unique=True
        )
        batch_op.create_index(
            batch_op.f("ix_budget_leases_org_id_budget_id_window_start"),
            ["org_id", "budget_id", "window_start"],
            unique=False,
        )

    op.create_table(
        "budget_alerts",
        *_keys(),
        sa.Column("budget_id", sa.Uuid(), nullable=False),
        _moment("window_start"),
        sa.Column("threshold", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("spent_usd", _MONEY, nullable=False),
        _moment("raised_at"),
        *_constraints("budget_alerts"),
    )
    with op.batch_alter_table("budget_alerts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_budget_alerts_org_id_budget_id_window_start_threshold_kind"),
            ["org_id", "budget_id", "window_start", "threshold", "kind"],
            unique=True,
        )

    for table in _TABLES:
        isolate_table(table)


def downgrade() -> None:
    for table in reversed(_TABLES):
        op.drop_table(table)  # its policy and indexes go with it
