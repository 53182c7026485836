"""A period's report (``GET /api/v1/reports/summary``): runs, success, cost, top agents and
models, budget status and incidents, as JSON for the reporting page."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Callable
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from agentops_sdk.contract.budgets import BudgetState
from agentops_server.db.models import ApprovalRequest, AuditEvent, BudgetRow
from agentops_server.refusals import Invalid
from agentops_server.services.analytics.kpis import Kpis, kpis_of, rate
from agentops_server.services.analytics.reading import Range, totals_by_key
from agentops_server.services.analytics.rollups import Totals, day_of
from agentops_server.services.budgets.state import budget_state, plain

__all__ = ["PERIODS", "BudgetStatus", "Incidents", "Ranked", "Report", "period_range", "report"]

PERIODS = ("day", "week", "month")
_TOP = 5
_CONTROL_ACTIONS = ("control.set", "control.changed")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Ranked:
    """One of the top agents or models of the period."""

    key: str
    runs: int
    error_rate: float
    cost: Decimal
    tokens: int


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class BudgetStatus:
    """One budget and its current window."""

    id: uuid.UUID
    name: str
    scope_kind: str
    scope_value: str
    period: str
    limit_usd: Decimal
    hard: bool
    state: BudgetState


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Incidents:
    """What was stopped in the period: agents (or scopes) killed and paused by a control,
    calls blocked by the SDK (a control, policy or budget), approvals denied."""

    kills: int
    pauses: int
    blocked_calls: int
    approvals_denied: int


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Report:
    """The org's report of one day, week (from Monday) or month, UTC."""

    period: str
    start: dt.datetime
    end: dt.datetime
    totals: Kpis
    success_rate: float
    """Runs that ended ``ok`` over runs."""
    top_agents_by_cost: list[Ranked]
    top_agents_by_runs: list[Ranked]
    top_models_by_cost: list[Ranked]
    budgets: list[BudgetStatus]
    incidents: Incidents


def period_range(period: str, at: dt.datetime | None) -> Range:
    """The ``period`` (``day``, ``week``, ``month``) that holds ``at`` (default: now).

    Refusals: ``invalid_period``, ``invalid_range`` (outside the calendar)."""
    if period not in PERIODS:
        raise Invalid("invalid_period", f"`period` is one of {', '.join(PERIODS)}.")
    moment = dt.datetime.now(dt.UTC) if at is None else at
    try:
        return _period_of(period, day_of(moment))
    except (OverflowError, ValueError):
        raise Invalid("invalid_range", "The period is outside the calendar.") from None


def _period_of(period: str, day: dt.datetime) -> Range:
    if period == "day":
        return Range(day, day + dt.timedelta(days=1))
    if period == "week":
        monday = day - dt.timedelta(days=day.weekday())
        return Range(monday, monday + dt.timedelta(days=7))
    first = day.replace(day=1)
    if first.month == 12:
        return Range(first, first.replace(year=first.year + 1, month=1))
    return Range(first, first.replace(month=first.month + 1))


async def report(session: AsyncSession, org_id: uuid.UUID, period: str, span: Range) -> Report:
    """The org's report of ``period`` ``span``."""
    whole = (await totals_by_key(session, org_id, "org", span)).get("", Totals())
    agents = await totals_by_key(session, org_id, "agent", span, latency=False)
    models = await totals_by_key(session, org_id, "model", span, latency=False)
    return Report(
        period=period,
        start=span.start,
        end=span.end,
        totals=kpis_of(whole),
        success_rate=rate(whole.succeeded, whole.runs),
        top_agents_by_cost=_top(agents, lambda totals: totals.cost),
        top_agents_by_runs=_top(agents, lambda totals: totals.runs),
        top_models_by_cost=_top(models, lambda totals: totals.cost),
        budgets=await _budgets(session, org_id),
        incidents=await _incidents(session, org_id, span, whole.blocked_calls),
    )


def _top(by_key: dict[str, Totals], measure: Callable[[Totals], Decimal | int]) -> list[Ranked]:
    ordered = sorted(by_key.items(), key=lambda item: (-measure(item[1]), item[0]))
    return [
        Ranked(
            key=key,
            runs=totals.runs,
            error_rate=rate(totals.failures, totals.runs),
            cost=plain(totals.cost),
            tokens=totals.tokens,
        )
        for key, totals in ordered[:_TOP]
        if totals.runs
    ]


async def _budgets(session: AsyncSession, org_id: uuid.UUID) -> list[BudgetStatus]:
    now = dt.datetime.now(dt.UTC)
    rows = await session.scalars(
        select(BudgetRow).where(BudgetRow.org_id == org_id).order_by(BudgetRow.name)
    )
    return [
        BudgetStatus(
            id=row.id,
            name=row.name,
            scope_kind=row.scope_kind,
            scope_value=row.scope_value,
            period=row.period,
            limit_usd=plain(row.limit_usd),
            hard=row.hard,
            state=await budget_state(session, row, now),
        )
        for row in list(rows)
    ]


async def _incidents(
    session: AsyncSession, org_id: uuid.UUID, span: Range, blocked_calls: int
) -> Incidents:
    changes = await session.scalars(
        select(AuditEvent.after).where(
            AuditEvent.org_id == org_id,
            AuditEvent.action.in_(_CONTROL_ACTIONS),
            AuditEvent.at >= span.start,
            AuditEvent.at < span.end,
        )
    )
    states = [(after or {}).get("state") for after in changes]
    denied = await session.scalar(
        select(func.count()).where(
            ApprovalRequest.org_id == org_id,
            ApprovalRequest.state == "denied",
            ApprovalRequest.decided_at >= span.start,
            ApprovalRequest.decided_at < span.end,
        )
    )
    return Incidents(
        kills=states.count("killed"),
        pauses=states.count("paused"),
        blocked_calls=blocked_calls,
        approvals_denied=int(denied or 0),
    )
