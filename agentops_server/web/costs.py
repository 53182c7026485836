"""The costs page: what the org's calls cost by agent, team, model or environment, per day or
month, and its CSV export under the session.

The breakdown is :func:`~agentops_server.services.analytics.costs.cost_breakdown`, as ``GET
/api/v1/analytics/costs`` calls it (``analytics:read``); the export is
:func:`~agentops_server.services.telemetry.exports.export` of the costs, as ``GET
/api/v1/exports/costs.csv`` streams it (``runs:read``, with the run explorer's filters), for
the session cookie rather than a bearer token.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import urlencode

from litestar import Controller, Request, get
from litestar.di import NamedDependency
from litestar.response import Stream, Template
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from agentops_server.api.v1.telemetry.run_filters import RUN_FILTER
from agentops_server.auth.guards import requires
from agentops_server.security.permissions import Permission
from agentops_server.security.principal import Principal
from agentops_server.services.analytics import costs
from agentops_server.services.analytics.reading import parse_range
from agentops_server.services.governance.agents import list_agents
from agentops_server.services.telemetry.exports import export
from agentops_server.services.telemetry.run_filters import RunFilter
from agentops_server.web.charts import chart_data
from agentops_server.web.dashboard import chosen_range, compact, cost_chart, range_text, usd
from agentops_server.web.pages import page

__all__ = ["CostPages"]

PATH = "/costs"
EXPORT_PATH = PATH + "/export.csv"
RANGES: dict[str, tuple[str, dt.timedelta]] = {
    "7d": ("Last 7 days", dt.timedelta(days=7)),
    "30d": ("Last 30 days", dt.timedelta(days=30)),
    "90d": ("Last 90 days", dt.timedelta(days=90)),
    "365d": ("Last 365 days", dt.timedelta(days=365)),
}
DIMENSIONS = {"agent": "Agent", "team": "Team", "model": "Model", "environment": "Environment"}
GRANULARITIES = {"day": "Daily", "month": "Monthly"}
BLANK = {"agent": "(no agent)", "team": "(no team)", "model": "(no model)", "environment": "—"}
"""How a key the rollups keep as ``""`` is shown."""


class CostPages(Controller):
    """``/costs`` (``analytics:read``) and its CSV export (``runs:read``, as the API's)."""

    @get(PATH, guards=[requires(Permission.ANALYTICS_READ)])
    async def costs_page(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
    ) -> Template:
        """The breakdown the query chooses: ``range``, ``group_by``, ``granularity``."""
        query = request.query_params
        chosen = {
            "range": chosen_range(query.get("range"), RANGES, "30d"),
            "group_by": chosen_range(query.get("group_by"), DIMENSIONS, "agent"),
            "granularity": chosen_range(query.get("granularity"), GRANULARITIES, "day"),
        }
        span = parse_range(None, None, default=RANGES[chosen["range"]][1])
        breakdown = await costs.cost_breakdown(
            db_session, request.auth.org_id, span, chosen["group_by"], chosen["granularity"]
        )
        names = await _names(request.auth, db_session, chosen["group_by"])
        blank = BLANK[chosen["group_by"]]
        per = GRANULARITIES[chosen["granularity"]].lower()
        title = f"Cost by {chosen['group_by']}, {per}"
        shown = {group.key: names.get(group.key, group.key) or blank for group in breakdown.groups}
        export_query = {
            "started_after": span.start.isoformat(),
            "started_before": span.end.isoformat(),
        }
        return await page(
            request,
            db_session,
            "costs.html",
            breakdown=breakdown,
            chosen=chosen,
            ranges=[(key, label) for key, (label, _) in RANGES.items()],
            dimensions=DIMENSIONS,
            granularities=GRANULARITIES,
            period=range_text(span),
            shown=shown,
            chart=chart_data(cost_chart("costs", title, breakdown, blank, names)),
            export_url=f"{EXPORT_PATH}?{urlencode(export_query)}",
            usd=usd,
            compact=compact,
        )

    @get(
        EXPORT_PATH,
        guards=[requires(Permission.RUNS_READ)],
        dependencies={"where": RUN_FILTER},
        media_type="text/csv; charset=utf-8",
    )
    async def costs_csv(
        self,
        request: Request[Principal, Principal, Any],
        engine: NamedDependency[AsyncEngine],
        where: NamedDependency[RunFilter],
    ) -> Stream:
        """One CSV line per LLM call of the runs the filters choose (those of
        ``/api/v1/exports/costs.csv``): tokens and cost."""
        return Stream(
            export(engine, request.auth.org_id, where, kind="costs", fmt="csv"),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="costs.csv"'},
        )


async def _names(principal: Principal, session: AsyncSession, group_by: str) -> dict[str, str]:
    """Teams' names by id (rollups key teams by id), as the agents list shows them."""
    if group_by != "team" or not principal.can(Permission.AGENTS_READ):
        return {}
    agents = await list_agents(session, principal.org_id)
    return {str(agent.team_id): agent.team or "" for agent in agents.items if agent.team_id}
