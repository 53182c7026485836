"""One agent's page, ``/agents/{agent_id}``: how it does, what it costs, what governs it.

Each part is the service of the API route that answers it: the agent
(:func:`~agentops_server.services.governance.agents.get_agent`, ``GET /api/v1/agents/{id}``),
its latency percentiles, errors and cost by day
(:func:`~agentops_server.services.analytics.trends.agent_trends`, ``GET
/api/v1/analytics/agents/{id}/trends``), its recent runs (``GET /api/v1/runs?agent=``), and the
controls, budgets and policy rules that reach it, out of ``GET /api/v1/controls``, ``GET
/api/v1/budgets/effective`` and ``GET /api/v1/policies/effective``
(:mod:`agentops_server.services.governance.applicable`). The page needs ``agents:read``; a part
whose permission the caller lacks is left out.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from decimal import Decimal
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
from agentops_server.web.pages import page

__all__ = ["AgentDetailPages", "sparkline"]

RECENT_RUNS = 10
TREND_DAYS = 14
SPARK_WIDTH, SPARK_HEIGHT = 240, 48


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
                "spark": sparkline([point.cost for point in points]),
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


def sparkline(
    values: Sequence[Decimal | float], width: int = SPARK_WIDTH, height: int = SPARK_HEIGHT
) -> str:
    """The ``points`` of an SVG polyline drawing ``values`` left to right in a ``width`` by
    ``height`` box, the largest at the top (all zero: a line along the bottom)."""
    if not values:
        return ""
    top = max(float(value) for value in values) or 1.0
    step = width / max(len(values) - 1, 1)
    return " ".join(
        f"{index * step:.1f},{height - float(value) / top * (height - 2) - 1:.1f}"
        for index, value in enumerate(values)
    )
