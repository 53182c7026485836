"""PostgreSQL row-level security for tenant tables, used by the migrations.

The migration that adds a tenant table (one with an ``org_id`` column, and ``orgs`` itself)
must call :func:`isolate_table` for it; ``tests/server/test_tenancy.py`` lists tenant tables
without a policy and fails. On SQLite these functions do nothing: there, isolation holds in the
data-access layer (:mod:`agentops_server.db.tenancy`).

The policies read two transaction-local settings, ``app.org_id`` and ``app.user_id``, which
:func:`agentops_server.db.tenancy.install_row_level_security` sets at the start of every
transaction of the app, after switching to the restricted role :data:`APP_ROLE`. ``FORCE`` makes
the policies bind the tables' owner too; superusers and ``BYPASSRLS`` roles would still skip
them, which is why the app never queries as the connecting user.
"""

from __future__ import annotations

from alembic import op

__all__ = ["APP_ROLE", "create_app_role", "isolate_table"]

APP_ROLE = "agentops_app"
"""The role the app's transactions run as: no login, no ``BYPASSRLS``, never a superuser."""

CURRENT_ORG = "NULLIF(current_setting('app.org_id', true), '')::uuid"
CURRENT_USER_ID = "NULLIF(current_setting('app.user_id', true), '')::uuid"


def create_app_role() -> None:
    """Create the restricted role once per cluster and let the migrating user switch to it."""
    if not _is_postgresql():
        return
    # Checked before creating: a hub user without CREATEROLE can still migrate once a DBA has
    # made the role and granted it (CREATE ROLE agentops_app NOLOGIN; GRANT agentops_app TO hub).
    op.execute(
        f"""
        DO $$
        BEGIN
            IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{APP_ROLE}') THEN
                CREATE ROLE {APP_ROLE} NOLOGIN NOSUPERUSER NOBYPASSRLS;
            END IF;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;  -- a concurrent migration of another schema made it
        END
        $$
        """
    )
    op.execute(
        f"""
        DO $$
        BEGIN
            IF NOT pg_has_role(current_user, '{APP_ROLE}', 'MEMBER') THEN
                EXECUTE format('GRANT {APP_ROLE} TO %I', current_user);
            END IF;
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE EXCEPTION 'the hub''s database user % may not switch to role {APP_ROLE}; '
                'as a superuser, run: GRANT {APP_ROLE} TO %', current_user, current_user;
        END
        $$
        """
    )
    op.execute(f"GRANT USAGE ON SCHEMA {_schema()} TO {APP_ROLE}")
    op.execute(f"GRANT SELECT ON alembic_version TO {APP_ROLE}")  # /ready reads it


def isolate_table(
    table: str,
    *,
    org_column: str = "org_id",
    user_visible: bool = False,
    append_only: bool = False,
) -> None:
    """Give ``table`` its tenant policy and the app role its privileges on it.

    ``user_visible`` tables also show a user their own rows of every org (``user_id`` column);
    writes still need the org. ``append_only`` tables take inserts and reads only.
    """
    if not _is_postgresql():
        return
    privileges = "SELECT, INSERT" if append_only else "SELECT, INSERT, UPDATE, DELETE"
    visible = f"{org_column} = {CURRENT_ORG}"
    if user_visible:
        visible = f"({visible} OR user_id = {CURRENT_USER_ID})"
    if table == "orgs":
        visible = (
            f"(id = {CURRENT_ORG} OR id IN (SELECT org_id FROM memberships "
            f"WHERE user_id = {CURRENT_USER_ID}))"
        )
    op.execute(f"GRANT {privileges} ON {table} TO {APP_ROLE}")
    op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
    op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
    op.execute(
        f"CREATE POLICY tenant_isolation ON {table} USING ({visible}) "
        f"WITH CHECK ({org_column} = {CURRENT_ORG})"
    )


def grant_identity_table(table: str) -> None:
    """Let the app role use a global identity table (users and their credentials)."""
    if _is_postgresql():
        op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO {APP_ROLE}")


def _is_postgresql() -> bool:
    return bool(op.get_bind().dialect.name == "postgresql")


def _schema() -> str:
    schema = op.get_bind().exec_driver_sql("SELECT current_schema()").scalar()
    return f'"{schema}"'
