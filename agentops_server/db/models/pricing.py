"""Pricing: each org's own prices (overrides of the catalog, custom models) and its pricing jobs."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, Uuid, func
from sqlalchemy.orm import Mapped, mapped_column

from agentops_server.db.models.base import Base, Moment, Money

__all__ = ["ModelPriceRow", "PricingJob"]


class ModelPriceRow(Base):
    """An org's price for a model, in USD per million tokens: it overrides the catalog's price
    of that model (``override``) or prices a model the catalog does not know (``custom``).
    ``provider`` is ``""`` for a price that holds whatever provider a span names."""

    __tablename__ = "model_prices"

    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("orgs.id"), primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    provider: Mapped[str] = mapped_column(String(64), default="")
    model: Mapped[str] = mapped_column(String(256))
    input: Mapped[Decimal] = mapped_column(Money)
    output: Mapped[Decimal] = mapped_column(Money)
    cached_input: Mapped[Decimal | None] = mapped_column(Money)
    cache_write: Mapped[Decimal | None] = mapped_column(Money)
    reasoning: Mapped[Decimal | None] = mapped_column(Money)
    tiers: Mapped[list[Any]] = mapped_column(default=list)
    note: Mapped[str] = mapped_column(String(1000), default="")
    created_at: Mapped[dt.datetime] = mapped_column(Moment, server_default=func.now())
    updated_at: Mapped[dt.datetime] = mapped_column(Moment, server_default=func.now())

    __table_args__ = (Index(None, "org_id", "model", "provider", unique=True),)


class PricingJob(Base):
    """A recompute of the costs of an org's spans that started in ``[range_from, range_to)``."""

    __tablename__ = "pricing_jobs"

    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("orgs.id"), primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    range_from: Mapped[dt.datetime] = mapped_column(Moment)
    range_to: Mapped[dt.datetime] = mapped_column(Moment)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    """``queued``, ``done`` or ``failed``."""
    spans_priced: Mapped[int] = mapped_column(Integer, default=0)
    runs_totalled: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(String(2000))
    requested_by: Mapped[str] = mapped_column(String(320))
    created_at: Mapped[dt.datetime] = mapped_column(Moment, server_default=func.now())
    finished_at: Mapped[dt.datetime | None] = mapped_column(Moment)

    __table_args__ = (Index(None, "org_id", "created_at"),)
