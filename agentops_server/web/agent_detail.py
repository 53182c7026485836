"""One agent's page, ``/agents/{agent_id}``: how it does, what it costs, what governs it.

Each part is the service of the API route that answers it: the agent
(:func:`~agentops_server.services.governance.agents.get_agent`, ``GET /api/v1/agents/{id}``),
its latency percentiles, errors and cost by day
(:func:`~agentops_server.services.analytics.trends.agent_trends`, ``GET
/api/v1/analytics/agents/{id}/trends``), drawn as the dashboard draws its charts (their data
in the page, ``charts.js`` draws it) above a table of the same figures (what a browser without
JavaScript reads), its recent runs (``GET /api/v1/runs?agent=``), and the controls, budgets
and policy rules that reach it, out of ``GET /api/v1/controls``, ``GET
/api/v1/budgets/effective`` and ``GET /api/v1/policies/effective``
(:mod:`agentops_server.services.governance.applicable`). The page needs ``agents:read``; a part
whose permission the caller lacks is left out.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Annotated, Any

from litestar import Controller, Request, Response, get
from litestar.di import NamedDependency
from litestar.params import PathParameter
from sqlalchemy.ext.asyncio import AsyncSession

from agentops_sdk.contract.controls import AgentProfile
from agentops_server.auth.guards import requires
from agentops_server.backends.stats_cache import StatsCache
from agentops_server.security.permissions import Permission
from agentops_server.security.principal import Principal
from agentops_server.services.analytics import trends
from agentops_server.services.analytics.reading import parse_granularity, parse_range
from agentops_server.services.budgets.definitions import load_budget_set
from agentops_server.services.governance.agents import get_agent
from agentops_server.services.governance.applicable import budgets_for, controls_for, rules_for
from agentops_server.services.governance.control_sets import load_control_set
from agentops_server.services.governance.policies import effective_policy
from agentops_server.services.telemetry.runs import RunFilter, list_runs
from agentops_server.web.charts import Chart, chart_data, point_chart
from agentops_server.web.pages import page

__all__ = ["AgentDetailPages", "trend_charts"]

RECENT_RUNS = 10
TREND_DAYS = 14


class AgentDetailPages(Controller):
    """``/agents/{agent_id}``: ``agents:read``, as ``GET /api/v1/agents/{id}``."""

    @get("/agents/{agent_id:str}", guards=[requires(Permission.AGENTS_READ)])
    async def agent_page(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        stats_cache: NamedDependency[StatsCache],
        agent_id: Annotated[str, PathParameter()],
    ) -> Response[Any]:
        """The agent, its trends, its recent runs, and what governs it."""
        caller, org_id = request.auth, request.auth.org_id
        try:
            wanted = uuid.UUID(agent_id)
        except ValueError:
            raise trends.AGENT_NOT_FOUND from None
        agent = await get_agent(db_session, org_id, wanted)
        context: dict[str, Any] = {"agent": agent}
        if caller.can(Permission.ANALYTICS_READ):
            span = parse_range(None, None, default=dt.timedelta(days=TREND_DAYS))
            found = await trends.agent_trends(
                db_session,
                stats_cache,
                org_id,
                wanted,
                span=span,
                granularity=parse_granularity("day", span),
            )
            points = found.trends.series[0].points if found.trends.series else []
            context |= {
                "stats": found.current,
                "points": points,
                "charts": [chart_data(chart) for chart in trend_charts(points)],
            }
        if caller.can(Permission.RUNS_READ):
            recent = await list_runs(
                db_session, org_id, RunFilter(agent=agent.name), limit=RECENT_RUNS
            )
            context["recent"] = recent.items
        control_set = await load_control_set(db_session, org_id)
        profile = control_set.profile(agent.name) or AgentProfile(
            name=agent.name
        )  # added meanwhile
        if caller.can(Permission.CONTROLS_READ):
            now = dt.datetime.now(dt.UTC)
            context["controls"] = controls_for(profile, control_set.controls, now)
        if caller.can(Permission.BUDGETS_READ):
            budget_set = await load_budget_set(db_session, org_id)
            context["budgets"] = budgets_for(profile, budget_set.budgets)
        if caller.can(Permission.POLICIES_READ):
            effective = await effective_policy(db_session, org_id)
            context["policy"] = effective.policy
            context["rules"] = rules_for(profile, effective.policy)
        return await page(request, db_session, "agent.html", **context)


def trend_charts(points: Sequence[trends.Point]) -> list[Chart]:
    """The agent's charts: its latency percentiles, error rate and cost over ``points``."""
    percentiles = {"p50": "p50_ms", "p95": "p95_ms", "p99": "p99_ms"}
    return [
        point_chart("latency", "Latency percentiles", "ms", points, percentiles),
        point_chart("error_rate", "Error rate", "percent", points, {"error rate": "error_rate"}),
        point_chart("cost", "Cost", "usd", points, {"cost": "cost"}),
    ]
