"""Fixtures for hub tests: every API test runs on SQLite and on the real PostgreSQL.

Each test gets its own database: a fresh SQLite file, or a fresh PostgreSQL schema (selected
through ``search_path`` in the URL) on the server at 127.0.0.1:5432, dropped afterwards. A test
that needs PostgreSQL and cannot reach it fails; it never skips.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from advanced_alchemy.extensions.litestar import SQLAlchemyAsyncConfig
from litestar import Litestar
from litestar.testing import TestClient
from sqlalchemy.orm import Session

from agentops_server import Settings, create_app
from agentops_server.db.engine import create_db_engine
from agentops_server.db.migrate import upgrade
from agentops_server.services.orgs import IssuedKey, create_org

PG_DSN = "postgresql://root@127.0.0.1:5432/test"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of each kind (not yet migrated)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'hub.db'}"
        return
    schema = f"t_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(PG_DSN, autocommit=True) as connection:
        connection.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"postgresql+psycopg://root@127.0.0.1:5432/test?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(PG_DSN, autocommit=True) as connection:
            connection.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
def migrated_url(database_url: str) -> str:
    """The database, migrated to the newest schema with ``agentops-hub db upgrade``'s code."""
    upgrade(database_url)
    return database_url


@pytest.fixture
def settings(migrated_url: str) -> Settings:
    return Settings(database_url=migrated_url, secret_key="test-secret")


@pytest.fixture
def app(settings: Settings) -> Litestar:
    return create_app(settings)


@pytest.fixture
def client(app: Litestar) -> Iterator[TestClient[Litestar]]:
    with TestClient(app) as test_client:
        yield test_client


def make_org(database_url: str, name: str) -> IssuedKey:
    """Create an org with a key carrying every scope, as ``agentops-hub bootstrap`` does."""
    engine = create_db_engine(database_url)
    try:
        with Session(engine) as session:
            return create_org(session, name)
    finally:
        engine.dispose()


@pytest.fixture
def org(migrated_url: str) -> IssuedKey:
    """An org and its all-scopes API key."""
    return make_org(migrated_url, "acme")


@pytest.fixture
def auth(org: IssuedKey) -> dict[str, str]:
    """Headers authenticating as ``org``'s key."""
    return {"Authorization": f"Bearer {org.key}"}


@pytest.fixture(autouse=True)
def _forget_app_session_keys() -> Iterator[None]:
    """advanced-alchemy keeps the session and state keys of every app ever built in class-level
    registries and finds a free key recursively: past ~1000 apps in one process, building one
    raises RecursionError. A test's apps are gone when it ends, and so may their keys be."""
    yield
    for registry in (
        "_SESSION_SCOPE_KEY_REGISTRY",
        "_ENGINE_APP_STATE_KEY_REGISTRY",
        "_SESSIONMAKER_APP_STATE_KEY_REGISTRY",
    ):
        getattr(SQLAlchemyAsyncConfig, registry).clear()
