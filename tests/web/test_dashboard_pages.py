"""The dashboard, costs and report pages, and an agent's charts, rendered through the app from
runs sent to the ingest API: the figures and chart data the analytics services give, the CSV
export under the session, the empty org, and where signing in leads. Which roles reach them is
tests/web/test_page_routes.py's walk."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from litestar.testing import TestClient

from agentops_server import Settings, create_app
from agentops_server.backends.derived_work import InProcessRunner
from agentops_server.security.permissions import ROLE_PERMISSIONS, Permission, Role
from agentops_server.services.identity.api_keys import IssuedKey
from tests.server.derived import Hub
from tests.server.principals import People
from tests.server.test_analytics_api import NOW, a_run, send
from tests.web.people import signed_in

CHART = re.compile(
    r'<figure class="chart card" data-chart="([^"]+)">.*?data-chart-data>(.*?)</script>', re.S
)
NO_DATA = re.compile(r'data-chart="([^"]+)">.*?data-chart-empty( hidden)?>', re.S)


@pytest.fixture
def hub(settings: Settings) -> Iterator[Hub]:
    """The app over https (its session cookie is ``Secure``), with a derived-work runner the
    test waits for (rollups are derived work)."""
    runner = InProcessRunner(backoff=0.01)
    with TestClient(
        create_app(settings, derived_work=runner), base_url="https://hub.example.com"
    ) as client:
        yield Hub(client, runner)


@pytest.fixture
def seeded(hub: Hub, settings: Settings, org: IssuedKey, people: People) -> Hub:
    """Three runs this hour (one failed; 1.5M house-model tokens, $3 in all) of two agents, one
    run eight days ago; signed in as a viewer."""
    owner = people.add(Role.OWNER)
    price = {"model": "house-model", "input": "1", "output": "2"}
    answer = hub.client.post("/api/v1/pricing/overrides", json=price, headers=owner.headers)
    assert answer.status_code == 201, answer.text
    send(
        hub,
        org,
        a_run("triage", tokens=1_000_000, seconds=1),
        a_run("triage", "error", seconds=3),
        a_run("billing", tokens=500_000, seconds=10),
        a_run("triage", at=NOW - dt.timedelta(days=8)),
    )
    signed_in(hub.client, settings, people, Role.VIEWER)
    return hub


def test_the_dashboard_shows_the_ranges_key_figures_and_their_change(seeded: Hub) -> None:
    html = seeded.client.get("/dashboard?range=7d").text

    assert _card(html, "runs") == ("3", "+200%")
    assert _card(html, "error_rate") == ("33.3%", "+33.3 pts")
    assert _card(html, "cost") == ("$3.00", "no data before")
    assert _card(html, "tokens") == ("2.2M", "no data before")
    assert _card(html, "active_agents") == ("2", "+100%")
    assert "data-empty" not in html


def test_the_dashboards_charts_carry_their_data_in_the_page(seeded: Hub) -> None:
    charts = _charts(seeded.client.get("/dashboard?range=24h").text)

    assert list(charts) == ["runs", "error_rate", "cost_by_model", "cost_by_agent"]
    runs = {line["name"]: sum(line["y"]) for line in charts["runs"]["lines"]}
    assert runs == {"runs": 3, "errors": 1}
    assert len(charts["runs"]["x"]) == 24  # hourly over a day
    assert _totals(charts["cost_by_model"]) == {"house-model": 3.0}
    assert _totals(charts["cost_by_agent"]) == {"triage": 2.0, "billing": 1.0}
    assert max(charts["error_rate"]["lines"][0]["y"]) == pytest.approx(1 / 3, abs=1e-5)


def test_a_range_the_dashboard_does_not_offer_shows_the_default(seeded: Hub) -> None:
    html = seeded.client.get("/dashboard?range=5y").text

    assert 'href="/dashboard?range=7d" aria-current="true"' in html


def test_an_empty_org_dashboard_says_so_with_zeros(
    hub: Hub, settings: Settings, people: People
) -> None:
    signed_in(hub.client, settings, people, Role.MEMBER)

    html = hub.client.get("/dashboard").text

    assert "data-empty" in html
    assert _card(html, "runs") == ("0", "no data before")
    assert _card(html, "p95_latency") == ("—", "no data before")
    assert all(
        not chart["lines"] or sum(chart["lines"][0]["y"]) == 0 for chart in _charts(html).values()
    )
    assert _saying_no_data(html) == {"cost_by_model", "cost_by_agent"}  # no line to draw


def test_a_chart_with_no_value_says_so_instead_of_an_empty_plot(
    hub: Hub, settings: Settings, people: People
) -> None:
    made = hub.client.post(
        "/api/v1/agents", json={"name": "idle"}, headers=people.add(Role.OWNER).headers
    )
    assert made.status_code == 201, made.text
    signed_in(hub.client, settings, people, Role.VIEWER)

    html = hub.client.get(f"/agents/{made.json()['id']}").text

    charts = _charts(html)
    assert charts["latency"]["empty"]  # no run: no percentile, only gaps
    assert not charts["error_rate"]["empty"]
    assert _saying_no_data(html) == {"latency"}
    assert 'data-chart-plot role="img" aria-labelledby="chart-latency-title" hidden' in html


def test_an_agents_page_charts_its_trends_as_the_analytics_api_gives_them(
    seeded: Hub, people: People
) -> None:
    path = _agent_path(seeded, "triage")
    since = NOW + dt.timedelta(hours=1) - dt.timedelta(days=14)  # the page's 14 days
    trends = seeded.client.get(
        f"/api/v1/analytics{path}/trends",
        params={"from": since.isoformat(), "granularity": "day"},
        headers=people.add(Role.VIEWER).headers,
    )
    assert trends.status_code == 200, trends.text
    points = trends.json()["trends"]["series"][0]["points"]

    html = seeded.client.get(path).text

    charts = _charts(html)
    assert list(charts) == ["latency", "error_rate", "cost"]
    latency, errors, cost = charts["latency"], charts["error_rate"], charts["cost"]
    assert [line["name"] for line in latency["lines"]] == ["p50", "p95", "p99"]
    for line in latency["lines"]:
        assert line["y"] == [point[f"{line['name']}_ms"] for point in points]
    assert errors["lines"][0]["y"] == [point["error_rate"] for point in points]
    assert cost["lines"][0]["y"] == [float(point["cost"]) for point in points]
    assert latency["x"] == errors["x"] == cost["x"]
    assert [dt.datetime.fromisoformat(x) for x in latency["x"]] == [
        dt.datetime.fromisoformat(point["start"]) for point in points
    ]
    assert latency["x"][-1].startswith(f"{NOW:%Y-%m-%d}")
    assert [y is not None for y in latency["lines"][0]["y"]].count(True) == 2  # days it ran
    assert errors["lines"][0]["y"][-1] == 0.5
    assert _totals(cost) == {"cost": 2.0}
    assert (latency["format"], errors["format"], cost["format"]) == ("ms", "percent", "usd")
    assert '<table class="table trends">' in html  # the same figures without JavaScript
    assert '<script type="module" src="/static/charts.js">' in html


def test_signing_in_leads_to_the_dashboard(hub: Hub, settings: Settings, people: People) -> None:
    signed_in(hub.client, settings, people, Role.VIEWER)

    home = hub.client.get("/?done=org_switched", follow_redirects=False)

    assert home.headers["location"] == "/dashboard?done=org_switched"
    assert "You switched org." in hub.client.get(home.headers["location"]).text


def test_a_role_that_may_not_read_analytics_starts_on_the_controls(
    hub: Hub, settings: Settings, people: People, monkeypatch: pytest.MonkeyPatch
) -> None:
    without = ROLE_PERMISSIONS[Role.VIEWER] - {Permission.ANALYTICS_READ}
    monkeypatch.setitem(ROLE_PERMISSIONS, Role.VIEWER, without)
    signed_in(hub.client, settings, people, Role.VIEWER)

    home = hub.client.get("/", follow_redirects=False)

    assert home.headers["location"] == "/controls"
    assert hub.client.get("/dashboard").status_code == 403


def test_the_costs_page_breaks_the_cost_down_by_the_chosen_dimension(seeded: Hub) -> None:
    html = seeded.client.get("/costs?group_by=agent&granularity=day&range=7d").text

    rows = _rows(html)
    assert rows["triage"][:2] == ["$2.00", "66.7%"]
    assert rows["billing"][:2] == ["$1.00", "33.3%"]
    chart = _charts(html)["costs"]
    assert len(chart["x"]) in (7, 8)  # the range's days (its partial ends count whole)
    assert _totals(chart) == {"triage": 2.0, "billing": 1.0}
    by_model = _rows(seeded.client.get("/costs?group_by=model&granularity=month").text)
    assert by_model["house-model"][:2] == ["$3.00", "100.0%"]


def test_the_costs_csv_export_streams_the_ranges_calls_under_the_session(seeded: Hub) -> None:
    html = seeded.client.get("/costs").text
    link = re.search(r'href="(/costs/export\.csv\?[^"]+)"', html)
    assert link

    answer = seeded.client.get(link[1].replace("&amp;", "&"))

    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/csv")
    assert "attachment" in answer.headers["content-disposition"]
    lines = list(csv.DictReader(io.StringIO(answer.text)))
    assert len(lines) == 2  # the two house-model calls of this hour's runs
    assert {line["model"] for line in lines} == {"house-model"}


def test_the_costs_csv_export_needs_a_session(hub: Hub) -> None:
    answer = hub.client.get("/costs/export.csv", follow_redirects=False)

    assert (answer.status_code, answer.headers["location"]) == (
        303,
        "/sign-in?next=/costs/export.csv",
    )


def test_the_report_sums_up_the_period(seeded: Hub) -> None:
    html = seeded.client.get(f"/reports?period=day&at={NOW:%Y-%m-%d}").text

    assert _figure(html, "runs") == "3"
    assert _figure(html, "success_rate") == "66.7%"
    assert _figure(html, "cost") == "$3.00"
    assert _figure(html, "kills") == "0"
    agents = re.search(r'data-ranked="r-agents-cost">(.*?)</table>', html, re.S)
    assert agents
    assert re.findall(r'<th scope="row">([^<]+)</th>', agents[1]) == ["triage", "billing"]
    assert "The org has no budget." in html


def test_a_report_of_an_unknown_period_says_why(seeded: Hub) -> None:
    answer = seeded.client.get("/reports?period=decade")

    assert answer.status_code == 400
    assert 'data-code="invalid_period"' in answer.text


def test_plotly_js_is_served_by_the_hub_from_the_plotly_package(hub: Hub) -> None:
    answer = hub.client.get("/vendor/plotly.min.js")

    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/javascript")
    assert "plotly.js v" in answer.text[:200]


def _card(html: str, key: str) -> tuple[str, str]:
    card = rf'data-kpi="{key}">.*?data-kpi-value>([^<]*)</p>'
    found = re.search(card + r'\s*<p class="kpi-change[^"]*"[^>]*>([^<]*)</p>', html, re.S)
    assert found, key
    return found[1], found[2]


def _charts(html: str) -> dict[str, dict[str, Any]]:
    return {key: json.loads(data) for key, data in CHART.findall(html)}


def _agent_path(hub: Hub, name: str) -> str:
    """The path of the agent page the agents list links ``name`` to."""
    found = re.search(rf'<a href="(/agents/[0-9a-f-]+)">{name}</a>', hub.client.get("/agents").text)
    assert found, name
    return found[1]


def _saying_no_data(html: str) -> set[str]:
    """The charts whose "no data" message shows (not ``hidden``)."""
    return {key for key, hidden in NO_DATA.findall(html) if not hidden}


def _totals(chart: dict[str, Any]) -> dict[str, float]:
    return {line["name"]: round(sum(line["y"]), 6) for line in chart["lines"]}


def _rows(html: str) -> dict[str, list[str]]:
    rows = re.findall(r'<tr data-cost-key="[^"]*"><th scope="row">([^<]*)</th>(.*?)</tr>', html)
    return {key: re.findall(r"<td[^>]*>([^<]*)</td>", cells) for key, cells in rows}


def _figure(html: str, key: str) -> str:
    found = re.search(rf'data-figure="{key}">([^<]*)<', html)
    assert found, key
    return found[1]
