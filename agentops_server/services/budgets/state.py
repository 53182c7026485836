"""A budget's figures in a window, computed when read: what its ledger charged, what its leases
hold back, and what is left (nothing sweeps windows: :func:`~agentops_sdk.contract.budgets.
window_of` says which one a moment is in).

What a lease holds back follows the contract (``agentops_sdk.contract.budgets``): a live lease,
``granted_usd`` less what the ledger already charged to it; a released or expired one, what its
holder reported spending less what was charged to it (spans still on their way). Only leases of
the window count: a lease ends with its window.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Final

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from agentops_sdk.contract.budgets import BudgetState, window_of
from agentops_server.db.models import BudgetLease, BudgetLedgerEntry, BudgetRow

__all__ = [
    "EPOCH",
    "Clock",
    "Holds",
    "Window",
    "budget_state",
    "holds_of",
    "lock_budget",
    "spent_in",
    "percent_of",
    "plain",
    "projected",
    "utc_now",
    "window_at",
]

EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
"""The ledger's and alerts' window start for a ``total`` budget (one window, never ending)."""
Clock = Callable[[], dt.datetime]
"""What the budget services read the time from (aware, UTC): :func:`utc_now`, or a test's
clock, given to the app (``create_app(clock=...)``) and its tasks."""
_ZERO: Final = Decimal(0)
_PROJECT_AFTER: Final = 0.1
"""The share of a window that must have passed before its spend is projected to its end."""


@dataclasses.dataclass(frozen=True, slots=True)
class Window:
    """A budget's window: ``[start, end)``, both None for ``total``; ``key`` is the ledger's
    window start (``start``, or :data:`EPOCH`)."""

    start: dt.datetime | None
    end: dt.datetime | None

    @property
    def key(self) -> dt.datetime:
        """The window start the ledger and the alerts store."""
        return self.start or EPOCH


@dataclasses.dataclass(frozen=True, slots=True)
class Holds:
    """What a budget's leases in one window hold back."""

    usd: Decimal
    tokens: int
    outstanding: int
    """Leases active now."""


def utc_now() -> dt.datetime:
    """The system's time: the hub's clock unless a test gives it another."""
    return dt.datetime.now(dt.UTC)


def window_at(row: BudgetRow, at: dt.datetime) -> Window:
    """The window of budget ``row`` that holds ``at``."""
    found = window_of(row.period, row.timezone, at)  # type: ignore[arg-type]
    return Window(None, None) if found is None else Window(*found)


async def lock_budget(session: AsyncSession, org_id: uuid.UUID, budget_id: uuid.UUID) -> None:
    """Serialise the grants and reports of one budget until the transaction ends: PostgreSQL
    locks its row (``FOR UPDATE``); SQLite, which ignores that, takes the database's write lock
    with a no-op write (the transaction's first statement: pysqlite begins it there)."""
    chosen = BudgetRow.org_id == org_id, BudgetRow.id == budget_id
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(select(BudgetRow.id).where(*chosen).with_for_update())
    else:
        await session.execute(update(BudgetRow).where(*chosen).values(version=BudgetRow.version))


async def spent_in(
    session: AsyncSession, org_id: uuid.UUID, budget_id: uuid.UUID, window: Window
) -> tuple[Decimal, int]:
    """What the ledger charged the budget in ``window``: USD and tokens."""
    usd, tokens = (
        await session.execute(
            select(
                func.sum(BudgetLedgerEntry.amount_usd), func.sum(BudgetLedgerEntry.tokens)
            ).where(
                BudgetLedgerEntry.org_id == org_id,
                BudgetLedgerEntry.budget_id == budget_id,
                BudgetLedgerEntry.window_start == window.key,
            )
        )
    ).one()
    return Decimal(usd or 0), int(tokens or 0)


async def holds_of(
    session: AsyncSession,
    org_id: uuid.UUID,
    budget_id: uuid.UUID,
    window: Window,
    now: dt.datetime,
    *,
    excluding: uuid.UUID | None = None,
) -> Holds:
    """What the budget's leases of ``window`` (but ``excluding``) hold back at ``now``."""
    charged = (
        select(
            BudgetLedgerEntry.lease_id,
            func.sum(BudgetLedgerEntry.amount_usd).label("usd"),
            func.sum(BudgetLedgerEntry.tokens).label("tokens"),
        )
        .where(
            BudgetLedgerEntry.org_id == org_id,
            BudgetLedgerEntry.budget_id == budget_id,
            BudgetLedgerEntry.lease_id.is_not(None),
        )
        .group_by(BudgetLedgerEntry.lease_id)
        .subquery()
    )
    in_window = (
        BudgetLease.window_start.is_(None)
        if window.start is None
        else BudgetLease.window_start == window.start
    )
    rows = await session.execute(
        select(
            BudgetLease.id,
            BudgetLease.state,
            BudgetLease.expires_at,
            BudgetLease.granted_usd,
            BudgetLease.granted_tokens,
            BudgetLease.spent_usd,
            BudgetLease.spent_tokens,
            charged.c.usd,
            charged.c.tokens,
        )
        .outerjoin(charged, charged.c.lease_id == BudgetLease.id)
        .where(BudgetLease.org_id == org_id, BudgetLease.budget_id == budget_id, in_window)
    )
    usd, tokens, outstanding = _ZERO, 0, 0
    for (
        lease_id,
        state,
        expires_at,
        granted,
        granted_tokens,
        spent,
        spent_tokens,
        c_usd,
        c_tok,
    ) in rows.all():
        if lease_id == excluding:
            continue
        live = state == "active" and now < expires_at
        outstanding += live
        charged_usd, charged_tokens = Decimal(c_usd or 0), int(c_tok or 0)
        usd += max(_ZERO, (granted if live else spent) - charged_usd)
        held_tokens = (granted_tokens if live else spent_tokens) or 0
        tokens += max(0, held_tokens - charged_tokens)
    return Holds(usd, tokens, outstanding)


async def budget_state(session: AsyncSession, row: BudgetRow, now: dt.datetime) -> BudgetState:
    """Budget ``row`` at ``now``, in its current window."""
    window = window_at(row, now)
    spent, spent_tokens = await spent_in(session, row.org_id, row.id, window)
    holds = await holds_of(session, row.org_id, row.id, window, now)
    forecast = projected(window, spent, now)
    return BudgetState(
        budget_id=row.id,
        window_start=window.start,
        window_end=window.end,
        spent_usd=plain(spent),
        reserved_usd=plain(holds.usd),
        remaining_usd=plain(row.limit_usd - spent - holds.usd),
        projected_usd=None if forecast is None else plain(forecast),
        spent_tokens=spent_tokens,
        outstanding_leases=holds.outstanding,
        percent=percent_of(spent, row.limit_usd),
    )


def projected(window: Window, spent: Decimal, now: dt.datetime) -> Decimal | None:
    """The window's spend at its end at the pace so far (None for ``total``; the spend so far
    until a tenth of the window has passed: earlier, one call would project a fortune)."""
    if window.start is None or window.end is None:
        return None
    length = (window.end - window.start).total_seconds()
    elapsed = min(max((now - window.start).total_seconds(), 0.0), length)
    if elapsed < length * _PROJECT_AFTER:
        return spent
    return (spent * Decimal(length) / Decimal(elapsed)).quantize(Decimal("1e-10"))


def plain(value: Decimal) -> Decimal:
    """``value`` as it reads best on the wire: ``10``, ``2.5``, ``0`` (not ``1.0E+1`` or
    ``0E-10``, as a Numeric column gives it back)."""
    return value.quantize(Decimal(1)) if value == value.to_integral() else value.normalize()


def percent_of(spent: Decimal, limit: Decimal) -> float:
    """``spent`` as a percentage of ``limit`` (a zero limit: 0, or 100 once anything is spent)."""
    if limit == 0:
        return 100.0 if spent > 0 else 0.0
    return float(spent * 100 / limit)
