"""What agents report: runs and spans."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    Uuid,
    func,
)
from sqlalchemy.orm import Mapped, mapped_column

from agentops_server.db.models.base import Base, Moment, Money

__all__ = ["Run", "RunSearchDocument", "Span"]


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
    # Totals of the run's LLM spans, kept by derived work (services/costs/totals.py); the
    # tokens above are the ones the SDK counted.
    cost: Mapped[Decimal | None] = mapped_column(Money)
    sdk_cost: Mapped[Decimal | None] = mapped_column(Money)
    cached_input_tokens: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    cache_write_tokens: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    reasoning_tokens: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    llm_calls: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    unpriced_calls: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    received_at: Mapped[dt.datetime] = mapped_column(Moment, server_default=func.now())
    duration_ms: Mapped[float | None] = mapped_column(Float)
    """``ended_at - started_at`` in milliseconds, set at ingest (for filters and sorting)."""

    __table_args__ = (
        Index(None, "org_id", "started_at", "id"),
        Index(None, "org_id", "agent", "started_at"),
        Index(None, "org_id", "status", "started_at"),
        Index(None, "org_id", "environment", "started_at"),
        Index(None, "org_id", "cost", "id"),
        Index(None, "org_id", "duration_ms", "id"),
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
    # In the key: on PostgreSQL spans are partitioned by it and a partitioned table's keys must
    # hold it (migration 0012, db/partitions.py); on SQLite the stored key stays (org_id, id).
    started_at: Mapped[dt.datetime] = mapped_column(Moment, primary_key=True)
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
    cached_input_tokens: Mapped[int | None] = mapped_column(BigInteger)
    cache_write_tokens: Mapped[int | None] = mapped_column(BigInteger)
    reasoning_tokens: Mapped[int | None] = mapped_column(BigInteger)
    # What the hub priced the call at (authoritative) and how: see services/costs/prices.py.
    cost: Mapped[Decimal | None] = mapped_column(Money)
    cost_match: Mapped[str | None] = mapped_column(String(16))
    """``exact``, ``fallback`` or ``unmatched`` (cost NULL); NULL for spans that are no call."""
    pricing_version: Mapped[str | None] = mapped_column(String(64))
    priced_model: Mapped[str | None] = mapped_column(String(320))
    sdk_cost: Mapped[Decimal | None] = mapped_column(Money)
    """What the SDK priced the call at, if it sent a cost."""
    blocked_by: Mapped[str | None] = mapped_column(String(16))
    """The enforcement stage that refused the call (``controls``, ``policy``, ``budget``,
    ``approval``...), from its deny decision; NULL for a span that was not blocked."""

    __table_args__ = (
        Index(None, "org_id", "run_id", "started_at"),
        Index(None, "org_id", "started_at"),
        Index(None, "org_id", "model", "run_id"),
        Index(None, "org_id", "blocked_by", "run_id"),
    )


class RunSearchDocument(Base):
    """The searchable text of one run or span (its name, input, output and error), kept in
    step with it at ingest; its run is ``run_id`` (a run's own document has ``id == run_id``).

    The full-text index lives beside it, outside the models: a GIN index on
    ``to_tsvector('simple', body)`` on PostgreSQL, the FTS5 table ``run_search_fts`` (kept in
    step by triggers) on SQLite; both made by migration 0011 (docs/decisions/0032-run-search.md).
    """

    __tablename__ = "run_search"

    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("orgs.id"), primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    run_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    started_at: Mapped[dt.datetime] = mapped_column(Moment)
    body: Mapped[str] = mapped_column(Text)

    __table_args__ = (
        Index(None, "org_id", "run_id"),
        Index(None, "org_id", "started_at"),
    )
