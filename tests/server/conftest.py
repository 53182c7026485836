"""Fixtures for hub tests: every API test runs on SQLite and on the real PostgreSQL.

Each test gets its own database: a fresh SQLite file, or a fresh PostgreSQL database on the
server at 127.0.0.1:5432, dropped afterwards. A migrated one is a copy of a template each
pytest-xdist worker migrates once (SQLite's backup API; PostgreSQL's ``CREATE DATABASE ...
TEMPLATE``): running the migrations for every test cost more than most tests. A test that needs
PostgreSQL and cannot reach it fails; it never skips.

The hub of the ``settings`` fixture mails to ``mail_dir`` (``.eml`` files, read with
:func:`tests.server.mail.mailbox`) and links to ``PUBLIC_URL``. ``people`` makes members of
``org`` (:class:`tests.server.principals.People`); ``owner`` and ``admin`` are two of them.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from advanced_alchemy.extensions.litestar import SQLAlchemyAsyncConfig
from litestar import Litestar
from litestar.testing import TestClient

from agentops_server import Settings, create_app
from agentops_server.db.migrate import upgrade
from agentops_server.db.models import Org
from agentops_server.security.api_keys import SCOPES
from agentops_server.security.permissions import Role
from agentops_server.services.identity.api_keys import IssuedKey, new_key_row
from agentops_server.slugs import slugify
from tests.server.api import bearer
from tests.server.database import direct_session
from tests.server.oidc_provider import LocalIdentityProvider, running_provider
from tests.server.principals import SECRET_KEY, People, Person
from tests.server.servers import serving

PG_DSN = "postgresql://root@127.0.0.1:5432/test"
PUBLIC_URL = "https://hub.example.com"
"""Where the ``settings`` fixture's hub says it is served, in the links it mails."""


@contextmanager
def postgresql_schema() -> Iterator[str]:
    """The URL of a new, empty PostgreSQL schema, dropped afterwards."""
    schema = f"t_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(PG_DSN, autocommit=True) as connection:
        connection.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"postgresql+psycopg://root@127.0.0.1:5432/test?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(PG_DSN, autocommit=True) as connection:
            connection.execute(f"DROP SCHEMA {schema} CASCADE")


@contextmanager
def postgresql_database(template: str = "template1") -> Iterator[str]:
    """The URL of a new PostgreSQL database copied from ``template``, dropped afterwards (with
    whatever still connects to it)."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    _create_database(name, template)
    try:
        yield f"postgresql+psycopg://root@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(PG_DSN, autocommit=True) as connection:
            connection.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _create_database(name: str, template: str) -> None:
    with psycopg.connect(PG_DSN, autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name} TEMPLATE {template}")


@pytest.fixture(scope="session")
def migrated_templates(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """This worker's migrated databases to copy: a SQLite file's path and a PostgreSQL
    database's name (made on first use)."""
    templates: dict[str, str] = {}
    try:
        yield templates
    finally:
        if "postgresql" in templates:
            with psycopg.connect(PG_DSN, autocommit=True) as connection:
                connection.execute(
                    f"DROP DATABASE IF EXISTS {templates['postgresql']} WITH (FORCE)"
                )


def _template(templates: dict[str, str], kind: str, folder: Path) -> str:
    if kind not in templates:
        if kind == "sqlite":
            path = folder / "template.db"
            upgrade(f"sqlite:///{path}")
            templates[kind] = str(path)
        else:
            name = f"tmpl_{uuid.uuid4().hex[:16]}"
            _create_database(name, "template1")
            upgrade(f"postgresql+psycopg://root@127.0.0.1:5432/{name}")
            templates[kind] = name
    return templates[kind]


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of each kind (not yet migrated)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'hub.db'}"
        return
    with postgresql_database() as url:
        yield url


@pytest.fixture
def migrated_url(
    database_url: str,
    migrated_templates: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> str:
    """The database, at the newest schema: a copy of this worker's template, which
    ``agentops-hub db upgrade``'s code migrated (``tests/server/test_migrations.py`` checks that
    migrating in place gives the same schema)."""
    kind = "sqlite" if database_url.startswith("sqlite") else "postgresql"
    template = _template(migrated_templates, kind, tmp_path_factory.getbasetemp())
    if kind == "sqlite":
        with sqlite3.connect(template) as source, sqlite3.connect(database_url[10:]) as copy:
            source.backup(copy)
        source.close()
        copy.close()
        return database_url
    name = database_url.rsplit("/", 1)[1]
    with psycopg.connect(PG_DSN, autocommit=True) as connection:
        connection.execute(f"DROP DATABASE {name} WITH (FORCE)")
    _create_database(name, template)
    return database_url


@pytest.fixture
def mail_dir(tmp_path: Path) -> Path:
    """Where the ``settings`` fixture's hub writes its email, one ``.eml`` file a message."""
    return tmp_path / "mail"


@pytest.fixture
def settings(migrated_url: str, mail_dir: Path) -> Settings:
    """The hub's settings for a test: its database, the secret key people's tokens are signed
    with, email to ``mail_dir``, links to ``PUBLIC_URL``."""
    return Settings(
        database_url=migrated_url,
        secret_key=SECRET_KEY,
        mail_url=f"file://{mail_dir}",
        public_url=PUBLIC_URL,
        stream_max_age=0.05,  # GET /api/v1/stream ends, so that calling every route returns
        upkeep=False,  # no upkeep at start racing a test's own (see tests/server/test_upkeep.py)
    )


@pytest.fixture
def app(settings: Settings) -> Litestar:
    return create_app(settings)


@pytest.fixture
def client(app: Litestar) -> Iterator[TestClient[Litestar]]:
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def hub_url(app: Litestar) -> Iterator[str]:
    """The base URL of ``app`` served for real (uvicorn in a thread), for HTTP from several
    threads or from a real SDK."""
    with serving(app) as url:
        yield url


def make_org(database_url: str, name: str) -> IssuedKey:
    """An org with a key of its own carrying every scope, made straight in the database (so its
    audit log starts empty); ``agentops-hub bootstrap`` makes one the audited way."""
    org_id = uuid.uuid4()
    key, issued = new_key_row(org_id, name="bootstrap", scopes=SCOPES)
    with direct_session(database_url) as session:
        session.add(Org(id=org_id, name=name, slug=slugify(name)))
        session.flush()
        session.add(key)
        session.commit()
    return issued


@pytest.fixture
def org(migrated_url: str) -> IssuedKey:
    """An org and its all-scopes API key."""
    return make_org(migrated_url, "acme")


@pytest.fixture
def auth(org: IssuedKey) -> dict[str, str]:
    """Headers authenticating as ``org``'s key."""
    return bearer(org.key)


@pytest.fixture
def people(migrated_url: str, org: IssuedKey) -> People:
    """Makes members of ``org``."""
    return People(migrated_url, org.org_id)


@pytest.fixture
def owner(people: People) -> Person:
    """Olga, an owner of ``org``, signed in."""
    return people.add(Role.OWNER, email="olga@acme.example", name="Olga")


@pytest.fixture
def admin(people: People) -> Person:
    """Adam, an admin of ``org``, signed in."""
    return people.add(Role.ADMIN, email="adam@acme.example", name="Adam")


@pytest.fixture(scope="module")
def served_provider() -> Iterator[LocalIdentityProvider]:
    """The local OAuth/OIDC provider (and Supabase project), served for a module's tests;
    reset it before each test."""
    with running_provider() as provider:
        yield provider


@pytest.fixture(autouse=True)
def _forget_app_session_keys() -> Iterator[None]:
    """Empty advanced-alchemy's registries of app keys after each test.

    ``SQLAlchemyAsyncConfig`` gives each config session and app-state keys that no config built
    before it in the process has (so that several databases can share one app), records them in
    class-level registries that are never emptied, and finds a free key by recursing once per
    taken one: after ~1000 apps in one process (this suite builds more), building another raises
    RecursionError. The keys need only differ within one app, and no app outlives its test.
    """
    yield
    for registry in (
        "_SESSION_SCOPE_KEY_REGISTRY",
        "_ENGINE_APP_STATE_KEY_REGISTRY",
        "_SESSIONMAKER_APP_STATE_KEY_REGISTRY",
    ):
        getattr(SQLAlchemyAsyncConfig, registry).clear()
