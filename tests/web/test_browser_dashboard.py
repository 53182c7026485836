"""The dashboard, costs and report pages in Chromium, against a hub process: plotly.js draws the
charts under the CSP (a script error or a refused resource fails the test, see ``page``), hover,
legend and zoom work, a run sent to the ingest API shows up on the open dashboard, the costs CSV
downloads, and the report prints without the app's shell. Each saves a screenshot."""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import ConsoleMessage, Page, expect

from tests.e2e.hubs import SharedHub
from tests.server.ingest_events import INGEST, batch
from tests.server.test_analytics_api import a_run
from tests.web.people import Owner, sign_up

CHARTS = ("runs", "error_rate", "cost_by_model", "cost_by_agent")
PLOT = "[data-chart='{}'] [data-chart-plot]"
RUNS_PLOT = f'document.querySelector("{PLOT.format("runs")}")'


def test_the_dashboard_draws_its_charts_and_shows_a_new_run_live(
    page: Page, web_hub: SharedHub, screenshots: Path
) -> None:
    warnings = plotly_warnings(page)
    owner = sign_up(page, web_hub)
    send = sender(owner)
    expect(page.locator("body[data-live=listening]")).to_have_count(1)
    expect(page.locator("[data-empty]")).to_have_count(1)

    send(a_run("triage", tokens=1_000_000), a_run("billing", "error", tokens=500_000))

    expect(page.locator("[data-kpi=runs] [data-kpi-value]")).to_have_text("2", timeout=20_000)
    expect(page.locator("[data-kpi=cost] [data-kpi-value]")).to_have_text("$3.00", timeout=20_000)
    expect(page.locator("[data-kpi=error_rate] [data-kpi-value]")).to_have_text("50.0%")
    for chart in CHARTS:
        expect(page.locator(f"[data-chart={chart}] .main-svg").first).to_be_attached()
    assert trace_names(page, "cost_by_agent") == ["triage", "billing"]
    page.screenshot(path=screenshots / "dashboard.png", full_page=True)

    plot = page.locator(PLOT.format("runs"))
    plot.locator(".nsewdrag").hover()
    expect(plot.locator(".hoverlayer > *").first).to_be_attached()
    plot.locator(".legendtoggle").first.click()  # plotly waits out a double click first
    page.wait_for_function(f"() => {RUNS_PLOT}._fullData[0].visible === 'legendonly'")
    drag_across(page, plot)
    page.wait_for_function(f"() => {RUNS_PLOT}._fullLayout.xaxis.autorange === false")
    assert warnings == []


def test_the_costs_page_draws_its_breakdown_and_downloads_the_csv(
    page: Page, web_hub: SharedHub, screenshots: Path
) -> None:
    owner = sign_up(page, web_hub)
    sender(owner)(a_run("triage", tokens=1_000_000), a_run("billing", tokens=500_000))

    page.goto("/costs?group_by=model")
    expect(page.locator("[data-chart=costs] .main-svg").first).to_be_attached()
    expect(page.locator("[data-cost-key=house-model] td").first).to_have_text("$3.00")
    page.screenshot(path=screenshots / "costs.png", full_page=True)
    with page.expect_download() as download:
        page.get_by_role("link", name="Export CSV").click()

    lines = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
    assert download.value.suggested_filename == "costs.csv"
    assert [line["model"] for line in lines] == ["house-model", "house-model"]


def test_the_report_prints_without_the_apps_shell(
    page: Page, web_hub: SharedHub, screenshots: Path
) -> None:
    owner = sign_up(page, web_hub)
    sender(owner)(a_run("triage", tokens=1_000_000))

    page.goto("/reports?period=day")
    expect(page.locator("[data-figure=runs]")).to_have_text("1")
    page.screenshot(path=screenshots / "reports.png", full_page=True)
    page.emulate_media(media="print")

    expect(page.get_by_role("heading", name="Daily report")).to_be_visible()
    expect(page.get_by_role("navigation", name="Main")).to_be_hidden()
    expect(page.get_by_role("button", name="Show")).to_be_hidden()
    assert page.pdf()[:5] == b"%PDF-"


def sender(owner: Owner) -> Any:
    """Sends runs to the hub with a new ingest key of ``owner``'s org (where ``house-model``
    costs $1 per million input and $2 per million output tokens), and waits until the
    analytics count them."""
    price = {"model": "house-model", "input": "1", "output": "2"}
    assert owner.api.post("/api/v1/pricing/overrides", json=price).status_code == 201
    made = owner.api.post("/api/v1/api-keys", json={"name": "agents", "scopes": ["ingest"]})
    assert made.status_code == 201, made.text
    key = made.json()["key"]

    def send(*runs: list[dict[str, Any]]) -> None:
        before = _runs(owner)
        events = [event for run in runs for event in run]
        answer = httpx.post(
            str(owner.api.base_url).rstrip("/") + INGEST,
            json=batch(*events),
            headers={"Authorization": f"Bearer {key}"},
        )
        assert answer.status_code == 200, answer.text
        deadline = time.monotonic() + 20
        while _runs(owner) < before + len(runs):
            assert time.monotonic() < deadline, "the rollups never counted the runs"
            time.sleep(0.05)

    return send


def _runs(owner: Owner) -> int:
    answer = owner.api.get("/api/v1/analytics/summary")
    assert answer.status_code == 200, answer.text
    runs: int = answer.json()["current"]["runs"]
    return runs


def trace_names(page: Page, chart: str) -> list[str]:
    names: list[str] = page.evaluate(
        f"[...document.querySelector(`{PLOT.format(chart)}`).data].map((trace) => trace.name)"
    )
    return names


def drag_across(page: Page, plot: Any) -> None:
    """Drag over the middle of the plot area: a zoom on time."""
    plot.scroll_into_view_if_needed()  # the mouse moves within the viewport
    box = plot.locator(".nsewdrag").bounding_box()
    assert box
    middle = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * 0.3, middle)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.7, middle, steps=5)
    page.mouse.up()


def plotly_warnings(page: Page) -> list[str]:
    """plotly.js's console warnings (such as a style rule it could not add)."""
    found: list[str] = []

    def keep(message: ConsoleMessage) -> None:
        if message.type in ("warning", "error"):
            found.append(message.text)

    page.on("console", keep)
    return found
