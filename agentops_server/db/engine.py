"""Engines for the hub's two databases, with the settings each needs.

One URL configures both: ``sqlite:///file.db`` or ``postgresql+psycopg://…``. The app runs on the
async driver (aiosqlite, psycopg's async mode); migrations and the CLI on the sync one.

Both kinds of engine hide a statement's parameters in the errors they raise (and so in the logs
and error reports those reach): parameters hold what requests sent, emails and token hashes.

SQLite runs in WAL mode with ``synchronous=FULL``: a commit is on disk before the hub acknowledges
it, readers do not block the writer, and ``busy_timeout`` makes concurrent writers wait rather
than fail.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine

from agentops_server.db.rls import APP_ROLE
from agentops_server.db.tenancy import TenantSession, install_row_level_security

__all__ = [
    "async_url",
    "create_async_db_engine",
    "create_db_engine",
    "open_session",
    "run_in_session",
    "sync_url",
]

T = TypeVar("T")


def sync_url(url: str) -> str:
    """The URL with the sync driver: ``sqlite`` or ``postgresql+psycopg``."""
    parsed = make_url(url)
    driver = "sqlite" if parsed.get_backend_name() == "sqlite" else "postgresql+psycopg"
    return parsed.set(drivername=driver).render_as_string(hide_password=False)


def async_url(url: str) -> str:
    """The URL with the async driver: ``sqlite+aiosqlite`` or ``postgresql+psycopg``."""
    parsed = make_url(url)
    driver = "sqlite+aiosqlite" if parsed.get_backend_name() == "sqlite" else "postgresql+psycopg"
    return parsed.set(drivername=driver).render_as_string(hide_password=False)


def create_db_engine(url: str, *, tenant_isolation: bool = False, **options: Any) -> Engine:
    """A sync engine (migrations, CLI); the CLI's acting for an org has ``tenant_isolation``."""
    engine = create_engine(sync_url(url), hide_parameters=True, **options)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    if tenant_isolation:
        install_row_level_security(engine, APP_ROLE)
    return engine


def create_async_db_engine(
    url: str, *, pool_size: int = 10, tenant_isolation: bool = False, **options: Any
) -> AsyncEngine:
    """An async engine; the app's has ``tenant_isolation`` (row-level security on PostgreSQL,
    see :mod:`agentops_server.db.tenancy`)."""
    target = async_url(url)
    if make_url(target).get_backend_name() == "postgresql":
        options.setdefault("pool_size", pool_size)
        options.setdefault("max_overflow", pool_size)
        options.setdefault("pool_pre_ping", True)
    engine = create_async_engine(target, hide_parameters=True, **options)
    if engine.dialect.name == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    if tenant_isolation:
        install_row_level_security(engine.sync_engine, APP_ROLE)
    return engine


def open_session(engine: AsyncEngine) -> AsyncSession:
    """A session on ``engine`` that keeps to its tenant (:mod:`agentops_server.db.tenancy`), as
    the app's request sessions do: for work outside a request (authentication, background
    tasks, the CLI)."""
    return AsyncSession(engine, sync_session_class=TenantSession, expire_on_commit=False)


def run_in_session(url: str, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run ``work`` in a session of the database at ``url``, isolated by tenant as the app's
    are, from code with no event loop (the CLI, the demo): so they call the services the API
    calls."""

    async def run() -> T:
        engine = create_async_db_engine(url, tenant_isolation=True)
        try:
            async with open_session(engine) as session:
                return await work(session)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    for pragma in (
        "journal_mode=WAL",
        "synchronous=FULL",
        "busy_timeout=30000",
        "foreign_keys=ON",
    ):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()
