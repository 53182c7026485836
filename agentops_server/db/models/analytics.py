"""Analytics rollups: what runs did, hour by hour and day by day, per org and dimension.

Derived work keeps them (:mod:`agentops_server.services.analytics.rollups`); the analytics APIs
read only them. See docs/decisions/0031-analytics-rollups.md.
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String, Uuid, true
from sqlalchemy.orm import Mapped, mapped_column

from agentops_server.db.models.base import Base, Moment, Money

__all__ = ["RollupBucket", "RollupContribution", "RollupRow"]


class RollupRow(Base):
    """The totals of the runs that started in one bucket (an hour or a UTC day) for one key of
    one dimension: ``org`` (key ``""``), ``agent`` (its name), ``team`` (its id; ``""``: no
    team), ``environment``, ``model`` (the runs that called it, and those calls only).

    ``latency`` is the histogram of the finished runs' durations: ``{"bucket index": count}``
    over the fixed log-spaced buckets of :mod:`agentops_server.services.analytics.histogram`."""

    __tablename__ = "analytics_rollups"

    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("orgs.id"), primary_key=True)
    grain: Mapped[str] = mapped_column(String(8), primary_key=True)
    """``hour`` or ``day``."""
    dimension: Mapped[str] = mapped_column(String(16), primary_key=True)
    key: Mapped[str] = mapped_column(String(320), primary_key=True)
    bucket_start: Mapped[dt.datetime] = mapped_column(Moment, primary_key=True)
    runs: Mapped[int] = mapped_column(Integer, default=0)
    succeeded: Mapped[int] = mapped_column(Integer, default=0)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    blocked_calls: Mapped[int] = mapped_column(Integer, default=0)
    spans: Mapped[int] = mapped_column(BigInteger, default=0)
    llm_calls: Mapped[int] = mapped_column(BigInteger, default=0)
    tool_calls: Mapped[int] = mapped_column(BigInteger, default=0)
    unpriced_calls: Mapped[int] = mapped_column(BigInteger, default=0)
    input_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    output_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    cached_input_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    cache_write_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    reasoning_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    cost: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    latency_ms_sum: Mapped[int] = mapped_column(BigInteger, default=0)
    latency: Mapped[dict[str, Any]] = mapped_column(default=dict)
    last_run_at: Mapped[dt.datetime | None] = mapped_column(Moment)

    __table_args__ = (Index(None, "org_id", "grain", "dimension", "bucket_start"),)


class RollupBucket(Base):
    """One bucket of an org that has been rolled up: the row a rollup locks before it reads
    and changes the bucket's rows, so two rollups of one bucket take turns.

    ``incremental``: the hour's rows are the sum of its runs' :class:`RollupContribution`\\ s.
    Hours rolled up before migration 0013 are not (they have rows, no contributions) until a
    rollup of one of their runs rebuilds them from the raw rows."""

    __tablename__ = "analytics_buckets"

    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("orgs.id"), primary_key=True)
    grain: Mapped[str] = mapped_column(String(8), primary_key=True)
    bucket_start: Mapped[dt.datetime] = mapped_column(Moment, primary_key=True)
    refreshed_at: Mapped[dt.datetime] = mapped_column(Moment)
    incremental: Mapped[bool] = mapped_column(Boolean, server_default=true())


class RollupContribution(Base):
    """What one run adds to the rollup rows of the hour it started in (``hour``): ``rows``
    holds ``[dimension, key, values]`` for each key the run counts under, ``values`` being the
    :data:`~agentops_server.services.analytics.rollups.STORED` columns but ``last_run_at``
    (the run's ``started_at``), the cost as text. A rollup of the run subtracts it from the
    hour's rows and adds the run's new one (docs/decisions/0031-analytics-rollups.md)."""

    __tablename__ = "rollup_contributions"

    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("orgs.id"), primary_key=True)
    run_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    hour: Mapped[dt.datetime] = mapped_column(Moment)
    started_at: Mapped[dt.datetime] = mapped_column(Moment)
    rows: Mapped[list[Any]]

    __table_args__ = (Index(None, "org_id", "hour"),)
