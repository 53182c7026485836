"""SQLAlchemy models of the hub's tables.

Every tenant table carries ``org_id``, and ``org_id`` leads its primary key, unique keys and
indexes, so the tables can be distributed by org (Citus) and no query needs rows of two orgs.
Ids are the UUIDv7s the SDK made (time-ordered), stored as native UUIDs. JSON columns are JSONB on
PostgreSQL. Money is ``Numeric``, never a float.
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Uuid,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from agentops_server.db.types import UtcDateTime

__all__ = ["Agent", "ApiKey", "Base", "Org", "Run", "Span"]

# None is SQL NULL (not JSON null) however a row is written, so IS NULL filters work.
Json = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")
Money = Numeric(20, 10)
Moment = UtcDateTime()


class Base(DeclarativeBase):
    """Declarative base with constraint names Alembic can diff on both databases."""

    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        dict[str, Any]: Json,
        list[Any]: Json,
        Any: Json,
    }


class Org(Base):
    """A tenant: everything else belongs to exactly one org."""

    __tablename__ = "orgs"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(Moment, server_default=func.now())


class ApiKey(Base):
    """An API key, stored only as a hash; ``prefix`` is the visible part (``ak_…``)."""

    __tablename__ = "api_keys"

    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("orgs.id"), primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    prefix: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(128))
    name: Mapped[str] = mapped_column(String(200), default="")
    scopes: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[dt.datetime] = mapped_column(Moment, server_default=func.now())
    revoked_at: Mapped[dt.datetime | None] = mapped_column(Moment)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(Moment)

    __table_args__ = (Index(None, "org_id", "prefix", unique=True),)


class Agent(Base):
    """An agent, registered the first time one of its runs arrives."""

    __tablename__ = "agents"

    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("orgs.id"), primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(256))
    first_seen_at: Mapped[dt.datetime] = mapped_column(Moment)
    last_seen_at: Mapped[dt.datetime] = mapped_column(Moment)

    __table_args__ = (Index(None, "org_id", "name", unique=True),)


class Run(Base):
    """One execution of an agent, as last reported by the SDK."""

    __tablename__ = "runs"

    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("orgs.id"), primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    agent: Mapped[str] = mapped_column(String(256))
    name: Mapped[str] = mapped_column(String(256))
    environment: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[dt.datetime] = mapped_column(Moment)
    ended_at: Mapped[dt.datetime | None] = mapped_column(Moment)
    tags: Mapped[list[Any]] = mapped_column(default=list)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)
    input: Mapped[Any | None] = mapped_column()
    output: Mapped[Any | None] = mapped_column()
    error: Mapped[dict[str, Any] | None] = mapped_column()
    span_count: Mapped[int] = mapped_column(Integer, default=0)
    error_count: Mapped[int] = mapped_column(Integer, default=0)
    input_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    output_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    cost: Mapped[Decimal | None] = mapped_column(Money)
    received_at: Mapped[dt.datetime] = mapped_column(Moment, server_default=func.now())

    __table_args__ = (
        Index(None, "org_id", "started_at", "id"),
        Index(None, "org_id", "agent", "started_at"),
        Index(None, "org_id", "status", "started_at"),
        Index(None, "org_id", "environment", "started_at"),
    )


class Span(Base):
    """One agent, tool, step or LLM call inside a run."""

    __tablename__ = "spans"

    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("orgs.id"), primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    # No foreign key to runs: a span may arrive before its run.
    run_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    parent_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(256))
    status: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[dt.datetime] = mapped_column(Moment)
    ended_at: Mapped[dt.datetime | None] = mapped_column(Moment)
    tags: Mapped[list[Any]] = mapped_column(default=list)
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    input: Mapped[Any | None] = mapped_column()
    output: Mapped[Any | None] = mapped_column()
    error: Mapped[dict[str, Any] | None] = mapped_column()
    events: Mapped[list[Any]] = mapped_column(default=list)
    model: Mapped[str | None] = mapped_column(String(256))
    provider: Mapped[str | None] = mapped_column(String(256))
    input_tokens: Mapped[int | None] = mapped_column(BigInteger)
    output_tokens: Mapped[int | None] = mapped_column(BigInteger)
    cost: Mapped[Decimal | None] = mapped_column(Money)

    __table_args__ = (Index(None, "org_id", "run_id", "started_at"),)
