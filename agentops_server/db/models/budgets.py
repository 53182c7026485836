"""Budgets: each org's budgets, their ledger of spend, the leases granted on them, the alerts
raised, and the version of the org's budget set."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from agentops_server.db.models.base import Base, Moment, Money

__all__ = ["BudgetAlert", "BudgetLease", "BudgetLedgerEntry", "BudgetRow", "BudgetVersion"]


class BudgetRow(Base):
    """One budget: the fields of :class:`agentops_sdk.contract.budgets.Budget`, plus whom its
    alerts are mailed to (``notify``: members' emails) and when it was made and changed."""

    __tablename__ = "budgets"

    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("orgs.id"), primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(256))
    scope_kind: Mapped[str] = mapped_column(String(16))
    scope_value: Mapped[str] = mapped_column(String(256), default="")
    limit_usd: Mapped[Decimal] = mapped_column(Money)
    limit_tokens: Mapped[int | None] = mapped_column(BigInteger)
    period: Mapped[str] = mapped_column(String(16))
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    hard: Mapped[bool] = mapped_column(Boolean, default=True)
    thresholds: Mapped[list[Any]] = mapped_column(default=list)
    on_unknown_cost: Mapped[str] = mapped_column(String(32), default="deny")
    unknown_cost_ceiling: Mapped[Decimal | None] = mapped_column(Money)
    fail_mode: Mapped[str] = mapped_column(String(16), default="closed")
    auto_pause: Mapped[bool] = mapped_column(Boolean, default=False)
    auto_resume: Mapped[bool] = mapped_column(Boolean, default=False)
    version: Mapped[int] = mapped_column(Integer, default=1)
    notify: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[dt.datetime] = mapped_column(Moment)
    updated_at: Mapped[dt.datetime] = mapped_column(Moment)

    __table_args__ = (Index(None, "org_id", "name", unique=True),)


class BudgetVersion(Base):
    """Each org's budget-set version: grows with every change of any of its budgets."""

    __tablename__ = "budget_versions"

    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("orgs.id"), primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger, default=0)


class BudgetLedgerEntry(Base):
    """One charge of one span's cost to one budget, in the window of the span's start
    (``window_start``: the epoch for a ``total`` budget). Append-only; a span is charged to a
    budget once (the unique ``(org_id, budget_id, span_id)``)."""

    __tablename__ = "budget_ledger"

    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("orgs.id"), primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    budget_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    window_start: Mapped[dt.datetime] = mapped_column(Moment)
    amount_usd: Mapped[Decimal] = mapped_column(Money)
    tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    span_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    run_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    lease_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    at: Mapped[dt.datetime] = mapped_column(Moment)

    __table_args__ = (
        Index(None, "org_id", "budget_id", "span_id", unique=True),
        Index(None, "org_id", "budget_id", "window_start"),
        Index(None, "org_id", "lease_id"),
    )


class BudgetLease(Base):
    """A grant of part of one budget's window to one holder (:class:`agentops_sdk.contract.
    budgets.Lease`). ``state`` is the state last written: an ``active`` row past ``expires_at``
    reads as ``expired``."""

    __tablename__ = "budget_leases"

    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("orgs.id"), primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    request_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    budget_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    holder: Mapped[str] = mapped_column(String(256))
    state: Mapped[str] = mapped_column(String(16))
    granted_usd: Mapped[Decimal] = mapped_column(Money)
    granted_tokens: Mapped[int | None] = mapped_column(BigInteger)
    spent_usd: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    spent_tokens: Mapped[int | None] = mapped_column(BigInteger)
    window_start: Mapped[dt.datetime | None] = mapped_column(Moment)
    window_end: Mapped[dt.datetime | None] = mapped_column(Moment)
    expires_at: Mapped[dt.datetime] = mapped_column(Moment)
    budget_version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(Moment)
    updated_at: Mapped[dt.datetime] = mapped_column(Moment)

    __table_args__ = (
        Index(None, "org_id", "request_id", unique=True),
        Index(None, "org_id", "budget_id", "window_start"),
    )


class BudgetAlert(Base):
    """An alert raised on a budget's window: a threshold crossed (``threshold``: its percent),
    a soft limit passed, or an overrun projected. Once per window (the unique key)."""

    __tablename__ = "budget_alerts"

    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("orgs.id"), primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    budget_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    window_start: Mapped[dt.datetime] = mapped_column(Moment)
    threshold: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))
    """``threshold``, ``soft_limit`` or ``projected``."""
    spent_usd: Mapped[Decimal] = mapped_column(Money)
    raised_at: Mapped[dt.datetime] = mapped_column(Moment)

    __table_args__ = (
        Index(None, "org_id", "budget_id", "window_start", "threshold", "kind", unique=True),
    )
