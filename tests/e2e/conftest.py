"""Fixtures for tests that drive real processes: the hub's database fixtures, shared with
``tests/server`` (every test here runs on SQLite and on the real PostgreSQL)."""

from __future__ import annotations

from tests.server.conftest import database_url, migrated_url, org

__all__ = ["database_url", "migrated_url", "org"]
