"""The runs pages in a real browser (Chromium) against a hub process: a run ingested through the
API is found in the explorer by a word of its input, its waterfall opens, and a span expands
to its payload, with no script; the agent's page lists the run. Saves screenshots of the
explorer, the timeline and the agent's page."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path

from playwright.sync_api import Page, expect

from tests.e2e.hubs import SharedHub
from tests.server.ingest_events import INGEST, batch, run_event, span_event
from tests.server.test_run_explorer import denied
from tests.web.people import sign_up


def test_a_run_found_by_search_opens_its_timeline_and_a_span_shows_its_payload(
    page: Page, web_hub: SharedHub, screenshots: Path
) -> None:
    owner = sign_up(page, web_hub)
    word = f"parcel{uuid.uuid4().hex[:6]}"
    start = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(minutes=5)

    def at(ms: int) -> str:
        return (start + dt.timedelta(milliseconds=ms)).isoformat()

    run = run_event(
        name="track-parcel",
        agent="courier",
        environment="prod",
        tags=["support"],
        input={"question": f"where is {word}?"},
        started_at=at(0),
        ended_at=at(4000),
    )
    root = span_event(
        run, kind="agent", name="answer", llm=None, started_at=at(0), ended_at=at(3900)
    )
    plan = span_event(
        run,
        parent_id=root["id"],
        name="plan",
        started_at=at(100),
        ended_at=at(1600),
        attributes={"temperature": 0.1},
        input={"messages": [{"role": "user", "content": f"where is {word}?"}]},
        output={"content": "calling track"},
    )
    track = span_event(
        run,
        parent_id=plan["id"],
        kind="tool",
        name="track",
        llm=None,
        started_at=at(1700),
        ended_at=at(3500),
        input={"parcel": word},
        output={"status": "in transit", "depot": "Leeds"},
        events=[],
    )
    refund = span_event(
        run,
        parent_id=root["id"],
        kind="tool",
        name="refund",
        status="blocked",
        llm=None,
        started_at=at(3600),
        ended_at=at(3600),
        events=[denied("policy")],
    )
    noise = run_event(name="other-run", agent="courier", started_at=at(10), ended_at=at(20))
    answer = owner.api.post(INGEST, json=batch(run, root, plan, track, refund, noise))
    assert answer.status_code == 200, answer.text

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Runs").click()
    expect(page.get_by_role("heading", name="Runs")).to_be_visible()
    page.get_by_label("Search", exact=True).fill(word)
    page.get_by_role("button", name="Search").click()

    rows = page.locator("tr[data-run]")
    expect(rows).to_have_count(1)
    assert f"q={word}" in page.url  # the search is in the address: it can be shared
    page.screenshot(path=screenshots / "runs-explorer.png", full_page=True)
    rows.get_by_role("link", name="track-parcel").click()

    expect(page.get_by_role("heading", name="Timeline")).to_be_visible()
    spans = page.locator(".span-row")
    expect(spans).to_have_count(4)
    assert [spans.nth(i).get_attribute("data-depth") for i in range(4)] == ["0", "1", "2", "1"]
    refused = page.locator(f"[data-span='{refund['id']}']")
    expect(refused.get_by_text("blocked by policy")).to_be_visible()
    expect(refused.locator(".inline-decisions")).to_contain_text("policy-rule")
    tool = page.locator(f"[data-span='{track['id']}']")
    payload = tool.get_by_text('"depot": "Leeds"')
    expect(payload).to_be_hidden()
    tool.locator("summary").click()
    expect(payload).to_be_visible()
    page.screenshot(path=screenshots / "run-timeline.png", full_page=True)

    page.get_by_role("link", name="courier").first.click()
    expect(page.get_by_role("heading", name="courier")).to_be_visible()
    recent = page.get_by_role("region", name="Recent runs")
    expect(recent.get_by_role("link", name="track-parcel")).to_be_visible()
    expect(page.get_by_role("region", name="Controls")).to_contain_text("No control reaches")
    page.screenshot(path=screenshots / "agent-detail.png", full_page=True)
