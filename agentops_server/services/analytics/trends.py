"""Series over time (``GET /api/v1/analytics/timeseries``), one agent's trends and its current
stats (``GET /api/v1/analytics/agents/{id}/trends``)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from decimal import Decimal

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from agentops_server.backends.stats_cache import StatsCache
from agentops_server.db.models import Agent, RollupRow
from agentops_server.refusals import NotFound
from agentops_server.services.analytics import histogram
from agentops_server.services.analytics.kpis import rate
from agentops_server.services.analytics.reading import Range, buckets, busiest_keys, series
from agentops_server.services.analytics.rollups import DAY, HOUR, Totals, day_of
from agentops_server.services.budgets.state import plain

__all__ = [
    "AgentStats",
    "AgentTrends",
    "Point",
    "Series",
    "Timeseries",
    "agent_trends",
    "timeseries",
]

AGENT_NOT_FOUND = NotFound("agent_not_found", "no such agent in this org")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Point:
    """One bucket of a series (latency percentiles in ms, None when no run finished)."""

    start: dt.datetime
    runs: int
    errors: int
    error_rate: float
    blocked_calls: int
    cost: Decimal
    tokens: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Series:
    """One key's points, a point for every bucket of the range (zeros where nothing ran)."""

    key: str
    points: list[Point]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Timeseries:
    """Series of ``dimension``'s keys (at most ``limit`` of them, the most runs first)."""

    start: dt.datetime
    end: dt.datetime
    granularity: str
    dimension: str
    series: list[Series]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class AgentStats:
    """An agent now: its last run, and today's runs, error rate and spend (UTC day)."""

    agent: str
    last_run_at: dt.datetime | None
    runs_today: int
    failures_today: int
    error_rate_today: float
    spend_today: Decimal


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class AgentTrends:
    """One agent's series and its stats now."""

    agent_id: uuid.UUID
    agent: str
    current: AgentStats
    trends: Timeseries


def point_of(start: dt.datetime, totals: Totals) -> Point:
    """The point ``totals`` make at ``start``."""
    return Point(
        start=start,
        runs=totals.runs,
        errors=totals.failures,
        error_rate=rate(totals.failures, totals.runs),
        blocked_calls=totals.blocked_calls,
        cost=plain(totals.cost),
        tokens=totals.tokens,
        p50_ms=histogram.percentile(totals.latency, 0.50),
        p95_ms=histogram.percentile(totals.latency, 0.95),
        p99_ms=histogram.percentile(totals.latency, 0.99),
    )


async def timeseries(
    session: AsyncSession,
    org_id: uuid.UUID,
    span: Range,
    granularity: str,
    dimension: str,
    *,
    limit: int = 10,
    keys: list[str] | None = None,
) -> Timeseries:
    """The org's series over ``span`` by ``dimension`` (``org``: one series)."""
    if keys is None:
        keys = (
            [""]
            if dimension == "org"
            else await busiest_keys(session, org_id, dimension, span, limit)
        )
    found = await series(session, org_id, dimension, span, granularity=granularity, keys=keys)
    starts = buckets(span, granularity)
    return Timeseries(
        start=span.start,
        end=span.end,
        granularity=granularity,
        dimension=dimension,
        series=[
            Series(
                key=key,
                points=[point_of(at, found.get(key, {}).get(at, Totals())) for at in starts],
            )
            for key in keys
        ],
    )


async def agent_trends(
    session: AsyncSession,
    cache: StatsCache,
    org_id: uuid.UUID,
    agent_id: uuid.UUID,
    *,
    span: Range,
    granularity: str,
) -> AgentTrends:
    """One agent's series over ``span`` and its current stats (cached until the org's next
    rollup). Refusal: ``agent_not_found``."""
    name = await session.scalar(
        select(Agent.name).where(Agent.org_id == org_id, Agent.id == agent_id)
    )
    if name is None:
        raise AGENT_NOT_FOUND
    trends = await timeseries(session, org_id, span, granularity, "agent", keys=[name])

    async def compute() -> AgentStats:
        return await agent_stats(session, org_id, name)

    current = await cache.get_or_compute(org_id, f"agent-stats:{agent_id}", AgentStats, compute)
    return AgentTrends(agent_id=agent_id, agent=name, current=current, trends=trends)


async def agent_stats(session: AsyncSession, org_id: uuid.UUID, agent: str) -> AgentStats:
    """The agent's stats now, from its rollup rows."""
    today = day_of(dt.datetime.now(dt.UTC))
    row = await session.scalar(
        _agent_row(org_id, agent).where(RollupRow.grain == DAY, RollupRow.bucket_start == today)
    )
    totals = Totals() if row is None else Totals.of_row(row)
    latest = await session.scalar(
        _agent_row(org_id, agent)
        .where(RollupRow.grain == HOUR)
        .order_by(RollupRow.bucket_start.desc())
        .limit(1)
    )
    return AgentStats(
        agent=agent,
        last_run_at=None if latest is None else latest.last_run_at,
        runs_today=totals.runs,
        failures_today=totals.failures,
        error_rate_today=rate(totals.failures, totals.runs),
        spend_today=plain(totals.cost),
    )


def _agent_row(org_id: uuid.UUID, agent: str) -> Select[RollupRow]:
    return select(RollupRow).where(
        RollupRow.org_id == org_id, RollupRow.dimension == "agent", RollupRow.key == agent
    )
