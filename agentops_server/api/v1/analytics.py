"""``/api/v1/analytics`` and ``/api/v1/reports``: KPIs, series, agent trends, cost breakdowns
and period reports, all read from rollups (see docs/analytics.md)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from litestar import Controller, Request, get
from litestar.di import NamedDependency
from litestar.params import PathParameter, QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession

from agentops_server.api.problems import problems
from agentops_server.auth.guards import requires
from agentops_server.backends.stats_cache import StatsCache
from agentops_server.refusals import Invalid
from agentops_server.security.permissions import Permission
from agentops_server.security.principal import Principal
from agentops_server.services.analytics import costs, kpis, reports, trends
from agentops_server.services.analytics.reading import (
    parse_dimension,
    parse_granularity,
    parse_range,
)
from agentops_server.values import Timestamp

__all__ = ["AnalyticsController", "ReportController"]

Since = Annotated[
    Timestamp | None,
    QueryParameter(name="from", description="ISO 8601 (naive: UTC), rounded down to the hour."),
]
Until = Annotated[
    Timestamp | None,
    QueryParameter(
        name="to",
        description="ISO 8601 (naive: UTC), excluded, rounded up to the hour; default: now.",
    ),
]
Granularity = Annotated[
    str, QueryParameter(description="`hour` (ranges up to 31 days), `day`, `week`, `month`.")
]
INVALID_RANGE = (
    Invalid("invalid_range", "`to` must be after `from`, both inside the calendar"),
    Invalid("range_too_long", "the range is too long (hourly: 31 days; else about 3 years)"),
)
INVALID_GRANULARITY = Invalid("invalid_granularity", "not one of the granularities")
INVALID_DIMENSION = Invalid("invalid_dimension", "not one of the dimensions")


class AnalyticsController(Controller):
    """What the org's agents did, how well, and what it cost (``analytics:read``: every role
    and the ``read`` scope). Ranges are whole UTC hours; `from` defaults to 7 days before `to`
    (30 days for costs)."""

    path = "/analytics"
    tags = ("analytics",)

    @get(
        "/summary",
        guards=[requires(Permission.ANALYTICS_READ)],
        summary="Key figures of a range, and their change",
        responses=problems(*INVALID_RANGE),
    )
    async def summary(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        since: Since = None,
        until: Until = None,
    ) -> kpis.Summary:
        """Runs, error rate, blocked calls, cost, tokens, active agents and latency
        percentiles of the range, of the range of the same length before it, and the change."""
        return await kpis.summary(db_session, request.auth.org_id, parse_range(since, until))

    @get(
        "/timeseries",
        guards=[requires(Permission.ANALYTICS_READ)],
        summary="Series over time, by one dimension",
        responses=problems(*INVALID_RANGE, INVALID_GRANULARITY, INVALID_DIMENSION),
    )
    async def timeseries(
        self,
        *,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        since: Since = None,
        until: Until = None,
        granularity: Granularity = "day",
        dimension: Annotated[
            str,
            QueryParameter(
                description="`org` (one series), `agent`, `team` (its id), `environment`, `model`."
            ),
        ] = "org",
        limit: Annotated[
            int, QueryParameter(ge=1, le=50, description="At most this many keys, most runs first.")
        ] = 10,
    ) -> trends.Timeseries:
        """Runs, errors, error rate, blocked calls, cost, tokens and latency percentiles per
        bucket, one series per key of the dimension (every bucket present, zeros included)."""
        span = parse_range(since, until)
        return await trends.timeseries(
            db_session,
            request.auth.org_id,
            span,
            parse_granularity(granularity, span),
            parse_dimension(dimension),
            limit=limit,
        )

    @get(
        "/agents/{agent_id:str}/trends",
        guards=[requires(Permission.ANALYTICS_READ)],
        summary="One agent's trends and its stats now",
        responses=problems(trends.AGENT_NOT_FOUND, *INVALID_RANGE, INVALID_GRANULARITY),
    )
    async def agent_trends(
        self,
        *,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        stats_cache: NamedDependency[StatsCache],
        agent_id: Annotated[str, PathParameter(description="The agent's id (a UUID).")],
        since: Since = None,
        until: Until = None,
        granularity: Granularity = "day",
    ) -> trends.AgentTrends:
        """The agent's latency, errors and cost over the range, and its last run, runs today,
        error rate today and spend today (UTC)."""
        try:
            wanted = uuid.UUID(agent_id)
        except ValueError:
            raise trends.AGENT_NOT_FOUND from None
        span = parse_range(since, until)
        return await trends.agent_trends(
            db_session,
            stats_cache,
            request.auth.org_id,
            wanted,
            span=span,
            granularity=parse_granularity(granularity, span),
        )

    @get(
        "/costs",
        guards=[requires(Permission.ANALYTICS_READ)],
        summary="Cost breakdowns, daily or monthly",
        responses=problems(*INVALID_RANGE, INVALID_GRANULARITY, INVALID_DIMENSION),
    )
    async def cost_breakdown(
        self,
        *,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        since: Since = None,
        until: Until = None,
        group_by: Annotated[
            str, QueryParameter(description="`agent`, `team` (its id), `model`, `environment`.")
        ] = "agent",
        granularity: Annotated[str, QueryParameter(description="`day` or `month`.")] = "day",
    ) -> costs.CostBreakdown:
        """The range's cost (USD) and tokens by the chosen dimension, costliest first, and per
        day or month; calls the hub could not price are counted apart."""
        span = parse_range(since, until, default=costs.DEFAULT_RANGE)
        if granularity not in costs.COST_GRANULARITIES:
            raise Invalid("invalid_granularity", "`granularity` is `day` or `month`.")
        return await costs.cost_breakdown(
            db_session,
            request.auth.org_id,
            span,
            parse_dimension(group_by, costs.BREAKDOWNS),
            granularity,
        )


class ReportController(Controller):
    """Period reports (``analytics:read``)."""

    path = "/reports"
    tags = ("analytics",)

    @get(
        "/summary",
        guards=[requires(Permission.ANALYTICS_READ)],
        summary="A day's, week's or month's report",
        responses=problems(
            Invalid("invalid_period", "`period` is not day, week or month"),
            Invalid("invalid_range", "the period is outside the calendar"),
        ),
    )
    async def summary(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        period: Annotated[str, QueryParameter(description="`day`, `week`, `month`.")] = "week",
        at: Annotated[
            Timestamp | None,
            QueryParameter(description="A moment in the period (ISO 8601); default: now."),
        ] = None,
    ) -> reports.Report:
        """The period's runs, success rate, cost, top agents and models, the budgets' status
        now, and incidents (kills, pauses, blocked calls, denied approvals). Weeks start on
        Monday; periods are UTC."""
        span = reports.period_range(period, at)
        return await reports.report(db_session, request.auth.org_id, period, span)
