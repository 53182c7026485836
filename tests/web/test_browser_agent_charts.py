"""An agent's charts, and charts with no data, in Chromium against a hub process: plotly.js
draws the agent's latency percentiles, error rate and cost over its runs sent to the ingest API,
under the CSP (a script error or a refused resource fails the test, see ``page``); hover shows a
value, the legend hides a series and dragging zooms on time. A chart with nothing to draw says
so instead of an empty plot over plotly.js's default range (January to November 2000), until
data arrives. Saves a screenshot."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, expect

from tests.e2e.hubs import SharedHub
from tests.server.test_analytics_api import NOW, a_run
from tests.web.people import sign_up
from tests.web.test_browser_dashboard import (
    PLOT,
    drag_across,
    plotly_warnings,
    sender,
    trace_names,
)

AGENT_CHARTS = ("latency", "error_rate", "cost")


def test_an_agents_page_draws_its_latency_errors_and_cost_from_its_runs(
    page: Page, web_hub: SharedHub, screenshots: Path
) -> None:
    warnings = plotly_warnings(page)
    owner = sign_up(page, web_hub)
    sender(owner)(
        a_run("triage", tokens=1_000_000, seconds=1),
        a_run("triage", "error", seconds=3),
        a_run("triage", at=NOW - dt.timedelta(days=3), seconds=2),
        a_run("billing", tokens=500_000, seconds=10),
    )

    page.goto("/agents")
    page.get_by_role("link", name="triage", exact=True).click()
    expect(page.get_by_role("heading", name="triage")).to_be_visible()
    for chart in AGENT_CHARTS:
        expect(page.locator(f"[data-chart={chart}] .main-svg").first).to_be_attached()
    page.screenshot(path=screenshots / "agent-charts.png", full_page=True)

    assert trace_names(page, "latency") == ["p50", "p95", "p99"]
    latency = _drawn(page, "latency")
    assert [len(_values(trace)) for trace in latency] == [2, 2, 2]  # the two days it ran
    assert _values(_drawn(page, "error_rate")[0])[-1] == 0.5
    assert round(sum(_values(_drawn(page, "cost")[0])), 6) == 2.0  # billing's $1 is not its
    markers = page.locator(f"{PLOT.format('latency')} .scatterlayer .trace").first
    expect(markers.locator(".point")).to_have_count(2)

    plot = page.locator(PLOT.format("latency"))
    markers.locator(".point").last.hover(force=True)  # today's p50 (plotly.js's layers above)
    p50_today = round(_values(latency[0])[-1])
    expect(plot.locator(".hoverlayer")).to_contain_text(f"{p50_today:,} ms")

    plot.locator(".legendtoggle").first.click()  # plotly waits out a double click first
    page.wait_for_function(f"() => {_plot_js('latency')}._fullData[0].visible === 'legendonly'")
    assert page.evaluate(f"{_plot_js('latency')}._fullData[1].visible") is True
    drag_across(page, page.locator(PLOT.format("cost")))
    page.wait_for_function(f"() => {_plot_js('cost')}._fullLayout.xaxis.autorange === false")
    assert warnings == []


def _plot_js(chart: str) -> str:
    return f"document.querySelector({json.dumps(PLOT.format(chart))})"


def _drawn(page: Page, chart: str) -> list[dict[str, Any]]:
    """The traces plotly.js drew in ``chart``: their names, times and values."""
    traces: list[dict[str, Any]] = page.evaluate(
        f"[...{_plot_js(chart)}.data].map(({{ name, x, y }}) => ({{ name, x, y }}))"
    )
    return traces


def _values(trace: dict[str, Any]) -> list[float]:
    """A trace's values, its gaps (days without a run) left out."""
    return [value for value in trace["y"] if value is not None]


def test_a_chart_with_no_data_says_so_until_the_data_arrives(
    page: Page, web_hub: SharedHub
) -> None:
    warnings = plotly_warnings(page)
    owner = sign_up(page, web_hub)  # a new org's dashboard: nothing cost anything yet
    expect(page.locator("body[data-live=listening]")).to_have_count(1)
    cost = page.locator("[data-chart=cost_by_model]")

    expect(cost.get_by_text("No data for this period.")).to_be_visible()
    expect(cost.locator("[data-chart-plot]")).to_be_hidden()
    expect(cost.locator(".main-svg")).to_have_count(0)
    expect(page.locator("[data-chart=runs] .main-svg").first).to_be_visible()  # zero runs: drawn

    sender(owner)(a_run("triage", tokens=1_000_000))

    expect(cost.locator(".main-svg").first).to_be_visible(timeout=20_000)
    expect(cost.get_by_text("No data for this period.")).to_be_hidden()
    assert trace_names(page, "cost_by_model") == ["house-model"]
    expect(cost.locator(".xtick").first).not_to_contain_text("2000")
    assert warnings == []
