"""The hub's settings: one typed object, read once from ``AGENTOPS_*`` environment variables.

==========================  =========================  =============================================
setting                     environment variable       default
==========================  =========================  =============================================
database_url                AGENTOPS_DATABASE_URL      ``sqlite:///agentops.db`` (working directory)
redis_url                   AGENTOPS_REDIS_URL         None (in-process backends)
secret_key                  AGENTOPS_SECRET_KEY        random per process (set it in production)
max_body_bytes              AGENTOPS_MAX_BODY_BYTES    16 MiB, after gzip decompression
max_batch_events            AGENTOPS_MAX_BATCH_EVENTS  10,000
db_pool_size                AGENTOPS_DB_POOL_SIZE      10
==========================  =========================  =============================================

Database URLs: ``sqlite:///path.db`` or ``postgresql+psycopg://user@host/db``; the hub picks the
async driver itself (aiosqlite, psycopg's async mode).
"""

from __future__ import annotations

import dataclasses
import os
import secrets
from collections.abc import Mapping
from typing import Any

__all__ = ["DEFAULT_DATABASE_URL", "Settings"]

DEFAULT_DATABASE_URL = "sqlite:///agentops.db"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """Everything ``create_app()`` and the CLI need; see the module docstring."""

    database_url: str = DEFAULT_DATABASE_URL
    redis_url: str | None = None
    secret_key: str = dataclasses.field(default_factory=lambda: secrets.token_urlsafe(32))
    max_body_bytes: int = 16 * 1024 * 1024
    max_batch_events: int = 10_000
    db_pool_size: int = 10

    def __post_init__(self) -> None:
        if not self.database_url.startswith(("sqlite", "postgresql")):
            raise ValueError(
                f"AGENTOPS_DATABASE_URL must be a sqlite:// or postgresql:// URL, "
                f"got {self.database_url!r}"
            )
        for name in ("max_body_bytes", "max_batch_events", "db_pool_size"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read ``AGENTOPS_*`` variables, then apply ``overrides``."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            raw = environ.get(f"AGENTOPS_{field.name.upper()}", "").strip()
            if raw:
                values[field.name] = int(raw) if field.type == "int" else raw
        values.update({key: value for key, value in overrides.items() if value is not None})
        return cls(**values)

    @property
    def is_sqlite(self) -> bool:
        """True for the embedded SQLite database."""
        return self.database_url.startswith("sqlite")
