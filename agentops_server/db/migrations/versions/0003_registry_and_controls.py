"""agent registry and controls: agents' profiles, controls, each org's control version; RLS

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06

Agents gain their registry profile (description, tags, environments, owner, metadata, archived);
an agent made through the API has not been seen yet, so its first and last seen times may be
empty. ``controls`` holds one control per scope of an org; ``control_versions`` each org's
version, bumped with every change that the SDKs' control set carries.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from agentops_server.db.rls import isolate_table

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

JSON = sa.JSON(none_as_null=True).with_variant(
    postgresql.JSONB(none_as_null=True, astext_type=sa.Text()), "postgresql"
)


def upgrade() -> None:
    op.create_table(
        "control_versions",
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"], ["orgs.id"], name=op.f("fk_control_versions_org_id_orgs")
        ),
        sa.PrimaryKeyConstraint("org_id", name=op.f("pk_control_versions")),
    )
    op.create_table(
        "controls",
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("scope_kind", sa.String(length=16), nullable=False),
        sa.Column("scope_value", sa.String(length=256), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=1024), nullable=False),
        sa.Column("actor", sa.String(length=1024), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("pause_timeout", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["org_id"], ["orgs.id"], name=op.f("fk_controls_org_id_orgs")),
        sa.PrimaryKeyConstraint("org_id", "id", name=op.f("pk_controls")),
    )
    with op.batch_alter_table("controls", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_controls_org_id_scope_kind_scope_value"),
            ["org_id", "scope_kind", "scope_value"],
            unique=True,
        )

    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("description", sa.String(length=2000), server_default="", nullable=False)
        )
        batch_op.add_column(sa.Column("tags", JSON, server_default=sa.text("'[]'"), nullable=False))
        batch_op.add_column(
            sa.Column("environments", JSON, server_default=sa.text("'[]'"), nullable=False)
        )
        batch_op.add_column(sa.Column("owner_id", sa.Uuid(), nullable=True))
        batch_op.add_column(
            sa.Column("metadata", JSON, server_default=sa.text("'{}'"), nullable=False)
        )
        batch_op.add_column(sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("archived_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.alter_column(
            "first_seen_at", existing_type=sa.DateTime(timezone=True), nullable=True
        )
        batch_op.alter_column(
            "last_seen_at", existing_type=sa.DateTime(timezone=True), nullable=True
        )

    isolate_table("controls")
    isolate_table("control_versions")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in ("controls", "control_versions"):
            op.execute(f"DROP POLICY IF EXISTS tenant_isolation ON {table}")
    op.execute("DELETE FROM agents WHERE first_seen_at IS NULL")
    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.alter_column(
            "last_seen_at", existing_type=sa.DateTime(timezone=True), nullable=False
        )
        batch_op.alter_column(
            "first_seen_at", existing_type=sa.DateTime(timezone=True), nullable=False
        )
        batch_op.drop_column("archived_at")
        batch_op.drop_column("updated_at")
        batch_op.drop_column("metadata")
        batch_op.drop_column("owner_id")
        batch_op.drop_column("environments")
        batch_op.drop_column("tags")
        batch_op.drop_column("description")

    with op.batch_alter_table("controls", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_controls_org_id_scope_kind_scope_value"))
    op.drop_table("controls")
    op.drop_table("control_versions")
