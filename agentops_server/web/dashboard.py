"""The dashboard: the org's key figures of a range against the range before, and its charts.

The figures are :func:`~agentops_server.services.analytics.kpis.summary` and the charts
:func:`~agentops_server.services.analytics.trends.timeseries`, as ``GET
/api/v1/analytics/summary`` and ``/timeseries`` call them, under the same permission
(``analytics:read``). The charts' data is in the page (``charts.js`` draws it);
``dashboard.js`` fetches the page again when the org's stream announces a run, and swaps in
its figures and charts.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal
from typing import Any

from litestar import Controller, Request, get
from litestar.di import NamedDependency
from litestar.response import Template
from sqlalchemy.ext.asyncio import AsyncSession

from agentops_server.auth.guards import requires
from agentops_server.security.permissions import Permission
from agentops_server.security.principal import Principal
from agentops_server.services.analytics import costs, kpis, trends
from agentops_server.services.analytics.reading import Range, parse_range
from agentops_server.web.charts import Chart, Line, chart_data, point_chart, top_and_other
from agentops_server.web.pages import page

__all__ = ["RANGES", "DashboardPages", "KpiCard", "chosen_range", "cost_chart", "kpi_cards"]

PATH = "/dashboard"
RANGES: dict[str, tuple[str, dt.timedelta, str, str]] = {
    "24h": ("Last 24 hours", dt.timedelta(hours=24), "hour", "hour"),
    "7d": ("Last 7 days", dt.timedelta(days=7), "hour", "day"),
    "30d": ("Last 30 days", dt.timedelta(days=30), "day", "day"),
}
"""The dashboard's ranges: label, length, and the granularity of its charts of runs and of its
charts of cost (daily over 7 days: an hour of each of 50 agents would be 8,400 rollup rows)."""
DEFAULT_RANGE = "7d"
KEYS_PER_CHART = 8
"""Models or agents drawn one by one; the others are summed as ``other``."""


@dataclasses.dataclass(frozen=True, slots=True)
class KpiCard:
    """One key figure: its value shown, and its change from the range before."""

    key: str
    label: str
    value: str
    change: str
    trend: str
    """``up``, ``down``, ``flat`` or ``none`` (nothing to compare with)."""


class DashboardPages(Controller):
    """``/dashboard`` (``analytics:read``)."""

    @get(PATH, guards=[requires(Permission.ANALYTICS_READ)])
    async def dashboard_page(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
    ) -> Template:
        """The range's key figures and charts (``?range=24h``, ``7d``, ``30d``)."""
        key = chosen_range(request.query_params.get("range"), RANGES, DEFAULT_RANGE)
        label, length, granularity, cost_granularity = RANGES[key]
        span = parse_range(None, None, default=length)
        org_id = request.auth.org_id
        summary = await kpis.summary(db_session, org_id, span)
        org = await trends.timeseries(db_session, org_id, span, granularity, "org")
        by_model = await costs.cost_breakdown(db_session, org_id, span, "model", cost_granularity)
        by_agent = await costs.cost_breakdown(db_session, org_id, span, "agent", cost_granularity)
        charts = _charts(org, by_model, by_agent)
        return await page(
            request,
            db_session,
            "dashboard.html",
            ranges=[(value, RANGES[value][0]) for value in RANGES],
            chosen=key,
            label=label,
            period=range_text(span),
            cards=kpi_cards(summary),
            charts=[chart_data(chart) for chart in charts],
            empty=summary.current.runs == 0 and summary.previous.runs == 0,
        )


def chosen_range(wanted: str | None, choices: dict[str, Any], default: str) -> str:
    """``wanted`` if it is one of ``choices``, else ``default`` (a page never refuses a range
    it offers: an unknown one shows the default)."""
    return wanted if wanted in choices else default


def kpi_cards(summary: kpis.Summary) -> list[KpiCard]:
    """The dashboard's cards: runs, error rate, cost, tokens, active agents, p95 latency."""
    now, before, change = summary.current, summary.previous, summary.change
    points = change.error_rate_points * 100
    return [
        _card("runs", "Runs", f"{now.runs:,}", change.runs),
        KpiCard(
            "error_rate",
            "Error rate",
            _percent(now.error_rate),
            f"{points:+.1f} pts" if before.runs else "no runs before",
            _trend(points if before.runs else None),
        ),
        _card("cost", "Cost", usd(now.cost), change.cost),
        _card("tokens", "Tokens", compact(now.tokens.total), change.tokens),
        _card("active_agents", "Active agents", f"{summary.active_agents:,}", change.active_agents),
        _card("p95_latency", "p95 latency", duration(now.latency.p95_ms), change.p95_latency),
    ]


def usd(amount: Decimal | float) -> str:
    """Dollars: cents from $1, four places below (LLM calls are cheap)."""
    value = float(amount)
    return f"${value:,.2f}" if value >= 1 or value == 0 else f"${value:,.4f}"


def compact(count: int) -> str:
    """A count with a thousands (k), millions (M) or billions (B) suffix."""
    for size, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(count) >= size:
            return f"{count / size:.1f}{suffix}"
    return str(count)


def duration(ms: float | None) -> str:
    """Milliseconds as ms or s; an em dash with no finished run."""
    if ms is None:
        return "—"
    return f"{ms:,.0f} ms" if ms < 1000 else f"{ms / 1000:,.2f} s"


def _percent(fraction: float) -> str:
    return f"{fraction * 100:.1f}%"


def _card(key: str, label: str, value: str, relative: float | None) -> KpiCard:
    change = "no data before" if relative is None else f"{relative * 100:+.0f}%"
    return KpiCard(key, label, value, change, _trend(relative))


def _trend(change: float | None) -> str:
    if change is None:
        return "none"
    return "up" if change > 0 else "down" if change < 0 else "flat"


def _charts(
    org: trends.Timeseries, by_model: costs.CostBreakdown, by_agent: costs.CostBreakdown
) -> list[Chart]:
    whole = org.series[0].points if org.series else []
    return [
        point_chart("runs", "Runs", "count", whole, {"runs": "runs", "errors": "errors"}),
        point_chart("error_rate", "Error rate", "percent", whole, {"error rate": "error_rate"}),
        cost_chart("cost_by_model", "Cost by model", by_model, "(no model)"),
        cost_chart("cost_by_agent", "Cost by agent", by_agent, "(no agent)"),
    ]


def cost_chart(
    chart_id: str,
    title: str,
    breakdown: costs.CostBreakdown,
    blank: str,
    names: dict[str, str] | None = None,
) -> Chart:
    """Stacked bars of each key's cost per bucket (shown by ``names``, or ``blank`` for the
    key ``""``), the costliest first, those past :data:`KEYS_PER_CHART` summed as ``other``;
    a key that cost nothing is left out."""
    shown = names or {}
    lines = [
        Line(shown.get(group.key, group.key) or blank, [point.cost for point in group.points])
        for group in breakdown.groups
        if group.cost
    ]
    return Chart(
        id=chart_id,
        title=title,
        kind="bar",
        format="usd",
        x=[point.start for point in breakdown.points],
        lines=top_and_other(lines, KEYS_PER_CHART),
    )


def range_text(span: Range) -> str:
    """``span`` as a reader sees it (UTC)."""
    return f"{span.start:%Y-%m-%d %H:%M} to {span.end:%Y-%m-%d %H:%M} UTC"
