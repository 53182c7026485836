"""Tenant isolation below the API: row-level security on PostgreSQL, the data-access layer on both.

A query that forgets its org filter must still see nothing of another org, whatever database user
the hub connects as.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from agentops_server import Settings
from agentops_server.db import models
from agentops_server.db.engine import create_async_db_engine, create_db_engine, run_in_session
from agentops_server.db.migrate import upgrade
from agentops_server.db.rls import APP_ROLE
from agentops_server.db.tenancy import CrossTenantWrite, TenantSession, tenant
from agentops_server.services.identity.api_keys import IssuedKey
from agentops_server.services.identity.orgs import bootstrap_org
from tests.server.api import Client, bearer, client_with
from tests.server.conftest import PG_DSN, make_org, postgresql_schema
from tests.server.ingest_events import INGEST, batch, run_event, span_event
from tests.server.principals import SECRET_KEY

OWNER_ROLE = "agentops_test_owner"  # a plain login role that owns its schema: no superuser


def seed(client: Client, key: IssuedKey) -> None:
    """One run with a span, through the real ingest API."""
    run = run_event()
    response = client.post(INGEST, json=batch(run, span_event(run)), headers=bearer(key.key))
    assert response.status_code == 200, response.text


def seeded_orgs(client: Client, database_url: str) -> tuple[IssuedKey, IssuedKey]:
    """acme and globex, each with one run and its span."""
    acme, globex = make_org(database_url, "acme"), make_org(database_url, "globex")
    seed(client, acme)
    seed(client, globex)
    return acme, globex


def tenant_tables_in(database_url: str) -> list[str]:
    """Every table of the database with an ``org_id`` column, plus ``orgs`` (from the database
    itself, not the models: a table a migration added without a model counts too). A
    partitioned table counts once: its partitions, which the app role may not read or write
    (db/partitions.py), are reached only through it and its policy."""
    engine = create_db_engine(database_url)
    try:
        with engine.connect() as connection:
            if engine.dialect.name == "postgresql":
                names = (
                    connection.execute(
                        text(
                            "SELECT c.relname FROM pg_attribute a "
                            "JOIN pg_class c ON c.oid = a.attrelid "
                            "JOIN pg_namespace n ON n.oid = c.relnamespace "
                            "WHERE n.nspname = current_schema() AND a.attname = 'org_id' "
                            "AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'v') "
                            "AND NOT c.relispartition"
                        )
                    )
                    .scalars()
                    .all()
                )
            else:
                tables = connection.execute(
                    text("SELECT name FROM sqlite_master WHERE type = 'table'")
                ).scalars()
                names = [
                    table
                    for table in tables
                    if "org_id"
                    in connection.execute(text(f"PRAGMA table_info('{table}')")).scalars(1).all()
                ]
            return sorted({*names, "orgs"})
    finally:
        engine.dispose()


def as_tenant(database_url: str, org_id: uuid.UUID | None, statements: list[str]) -> list[Any]:
    """Run raw SQL on the app's engine as ``org_id``'s tenant; the first column of each."""

    async def run() -> list[Any]:
        engine = create_async_db_engine(database_url, tenant_isolation=True)
        try:
            with tenant(org_id=org_id):
                async with engine.connect() as connection:
                    return [
                        (await connection.execute(text(sql))).scalars().all() for sql in statements
                    ]
        finally:
            await engine.dispose()

    return asyncio.run(run())


def orm_rows(database_url: str, org_id: uuid.UUID | None) -> dict[str, set[uuid.UUID]]:
    """For each tenant model, the orgs whose rows an unfiltered ORM select returns."""

    async def run() -> dict[str, set[uuid.UUID]]:
        engine = create_async_db_engine(database_url, tenant_isolation=True)
        found: dict[str, set[uuid.UUID]] = {}
        try:
            with tenant(org_id=org_id):
                async with AsyncSession(engine, sync_session_class=TenantSession) as session:
                    for model in tenant_models():
                        column = model.id if model is models.Org else model.org_id  # type: ignore[attr-defined]
                        found[model.__tablename__] = set(
                            (await session.execute(select(column))).scalars()
                        )
        finally:
            await engine.dispose()
        return found

    return asyncio.run(run())


def tenant_models() -> list[type[models.Base]]:
    return [
        mapper.class_
        for mapper in models.Base.registry.mappers
        if mapper.class_.__tablename__ in models.TENANT_TABLES
    ]


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, migrated PostgreSQL schema (row-level security is PostgreSQL's)."""
    with postgresql_schema() as url:
        upgrade(url)
        yield url


@pytest.fixture
def pg_client(pg_url: str) -> Iterator[Client]:
    with client_with(Settings(database_url=pg_url, secret_key=SECRET_KEY)) as client:
        yield client


def test_every_tenant_table_has_a_forced_row_level_security_policy(pg_url: str) -> None:
    engine = create_db_engine(pg_url)
    try:
        with engine.connect() as connection:
            secured = {
                name: (enabled, forced, policies)
                for name, enabled, forced, policies in connection.execute(
                    text(
                        "SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity, "
                        "(SELECT count(*) FROM pg_policies p WHERE p.schemaname = n.nspname "
                        "AND p.tablename = c.relname) FROM pg_class c "
                        "JOIN pg_namespace n ON n.oid = c.relnamespace "
                        "WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p')"
                    )
                )
            }
    finally:
        engine.dispose()
    tables = tenant_tables_in(pg_url)

    unprotected = [name for name in tables if secured[name] != (True, True, 1)]

    assert set(tables) >= models.TENANT_TABLES
    assert unprotected == []


def test_the_app_role_can_neither_log_in_nor_bypass_row_level_security(pg_url: str) -> None:
    with psycopg.connect(PG_DSN) as connection:
        row = connection.execute(
            "SELECT rolsuper, rolbypassrls, rolcanlogin FROM pg_roles WHERE rolname = %s",
            (APP_ROLE,),
        ).fetchone()

    assert row == (False, False, False)


def test_a_query_without_an_org_filter_sees_only_the_current_orgs_rows(
    pg_client: Client, pg_url: str
) -> None:
    acme, _ = seeded_orgs(pg_client, pg_url)
    tables = tenant_tables_in(pg_url)
    statements = [
        f"SELECT DISTINCT {'id' if table == 'orgs' else 'org_id'} FROM {table}" for table in tables
    ]

    seen = dict(zip(tables, as_tenant(pg_url, acme.org_id, statements), strict=True))

    assert {org for orgs in seen.values() for org in orgs} == {acme.org_id}
    assert seen["runs"] == seen["spans"] == seen["api_keys"] == [acme.org_id]


def test_without_a_tenant_the_app_sees_no_tenant_rows(pg_client: Client, pg_url: str) -> None:
    seed(pg_client, make_org(pg_url, "acme"))
    tables = tenant_tables_in(pg_url)

    counts = as_tenant(pg_url, None, [f"SELECT count(*) FROM {table}" for table in tables])

    assert counts == [[0]] * len(tables)


def test_writing_a_row_into_another_org_is_refused_by_the_database(pg_url: str) -> None:
    acme, globex = make_org(pg_url, "acme"), make_org(pg_url, "globex")
    insert = (
        "INSERT INTO api_keys (org_id, id, prefix, hash, name, scopes) "
        f"VALUES ('{globex.org_id}', '{uuid.uuid4()}', 'feedbeef', 'x', 'planted', '[]')"
    )

    with pytest.raises(DBAPIError, match="row-level security"):
        as_tenant(pg_url, acme.org_id, [insert])


def test_updates_without_an_org_filter_touch_only_the_current_org(
    pg_client: Client, pg_url: str
) -> None:
    acme, globex = seeded_orgs(pg_client, pg_url)

    as_tenant(pg_url, acme.org_id, ["UPDATE runs SET status = 'error' RETURNING org_id"])

    statuses = as_tenant(pg_url, globex.org_id, ["SELECT status FROM runs"])
    assert statuses == [["ok"]]


def test_the_data_access_layer_scopes_every_orm_query_to_the_current_org(
    client: Client, migrated_url: str
) -> None:
    acme, _ = seeded_orgs(client, migrated_url)

    as_acme = orm_rows(migrated_url, acme.org_id)
    as_nobody = orm_rows(migrated_url, None)

    assert {org for orgs in as_acme.values() for org in orgs} == {acme.org_id}
    assert as_acme["runs"] == as_acme["spans"] == as_acme["api_keys"] == {acme.org_id}
    assert all(not orgs for orgs in as_nobody.values())


def test_the_data_access_layer_refuses_to_write_another_orgs_row(migrated_url: str) -> None:
    acme, globex = make_org(migrated_url, "acme"), make_org(migrated_url, "globex")

    async def plant() -> None:
        engine = create_async_db_engine(migrated_url, tenant_isolation=True)
        try:
            with tenant(org_id=acme.org_id):
                async with AsyncSession(engine, sync_session_class=TenantSession) as session:
                    session.add(models.Team(org_id=globex.org_id, id=uuid.uuid4(), name="spies"))
                    await session.commit()
        finally:
            await engine.dispose()

    with pytest.raises(CrossTenantWrite):
        asyncio.run(plant())


@pytest.fixture
def owner_schema_url() -> Iterator[str]:
    """A fresh schema owned by a plain login role, migrated by that role: the hub connects as a
    table owner, not a superuser (owners skip row-level security unless it is forced)."""
    schema = f"o_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(PG_DSN, autocommit=True) as connection:
        for role, options in ((OWNER_ROLE, "LOGIN"), (APP_ROLE, "NOLOGIN")):
            exists = connection.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
            if exists.fetchone() is None:
                with contextlib.suppress(psycopg.errors.DuplicateObject):
                    connection.execute(f"CREATE ROLE {role} {options}")
        connection.execute(f"GRANT {APP_ROLE} TO {OWNER_ROLE}")  # what the docs ask a DBA to do
        connection.execute(f"CREATE SCHEMA {schema} AUTHORIZATION {OWNER_ROLE}")
    url = f"postgresql+psycopg://{OWNER_ROLE}@127.0.0.1:5432/test?options=-csearch_path%3D{schema}"
    try:
        yield url
    finally:
        with psycopg.connect(PG_DSN, autocommit=True) as connection:
            connection.execute(f"DROP SCHEMA {schema} CASCADE")


def test_isolation_holds_when_the_hub_connects_as_the_tables_owner(owner_schema_url: str) -> None:
    upgrade(owner_schema_url)
    acme = run_in_session(owner_schema_url, lambda session: bootstrap_org(session, "acme"))
    globex = run_in_session(owner_schema_url, lambda session: bootstrap_org(session, "globex"))

    owner_as_itself = create_db_engine(owner_schema_url)  # no role switch: FORCE must still bind
    try:
        with owner_as_itself.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM api_keys")).scalar() == 0
    finally:
        owner_as_itself.dispose()
    seen = as_tenant(owner_schema_url, acme.org_id, ["SELECT DISTINCT org_id FROM api_keys"])
    assert seen == [[acme.org_id]]
    assert globex.org_id != acme.org_id
