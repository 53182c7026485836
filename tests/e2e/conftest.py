"""Fixtures for tests that drive real processes: the hub's database fixtures, shared with
``tests/server`` (every test here runs on SQLite and on the real PostgreSQL), and a hub process
a module's tests share."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack

import pytest

from agentops_server.db.migrate import upgrade
from tests.e2e.hubs import SharedHub, hub
from tests.server.conftest import (
    database_url,
    migrated_templates,
    migrated_url,
    org,
    postgresql_schema,
)
from tests.server.principals import SECRET_KEY

__all__ = ["database_url", "migrated_templates", "migrated_url", "org", "shared_hub"]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def shared_hub(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SharedHub]:
    """A hub process on a migrated database of each kind (its secret key signs the sessions
    of ``tests.server.principals.People``)."""
    with ExitStack() as stack:
        if request.param == "sqlite":
            database_url = f"sqlite:///{tmp_path_factory.mktemp('hub') / 'hub.db'}"
        else:
            database_url = stack.enter_context(postgresql_schema())
        upgrade(database_url)
        process = stack.enter_context(hub(database_url, secret_key=SECRET_KEY))
        yield SharedHub(process.url, database_url, process.log)
