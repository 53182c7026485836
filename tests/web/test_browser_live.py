"""The emergency controls and the agents list, live, in Chromium against a hub process
(``live-region.js``): a control set elsewhere (through the API) shows on the open page without a
reload, an agent whose first run arrives joins the open list, and a part someone is writing in is
left alone until they are done."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import Page, expect

from tests.e2e.hubs import SharedHub
from tests.server.ingest_events import INGEST, batch, run_event
from tests.web.people import Owner, sign_up


def set_control(owner: Owner, scope: dict[str, Any], state: str, reason: str) -> None:
    """A control set through the API, as another operator (or the CLI) would."""
    body = {"scope": scope, "state": state, "reason": reason}
    response = owner.api.post("/api/v1/controls", json=body)
    assert response.status_code == 200, response.text


def test_the_emergency_controls_page_shows_controls_set_elsewhere_without_a_reload(
    page: Page, web_hub: SharedHub
) -> None:
    owner = sign_up(page, web_hub)
    page.goto("/controls")
    expect(page.locator("body[data-live=listening]")).to_have_count(1)
    expect(page.locator("[data-org-state]")).to_have_attribute("data-org-state", "active")
    page.evaluate("window.drawnOnce = true")  # gone if the page is loaded again

    set_control(owner, {"kind": "tag", "value": "billing"}, "paused", "refund loop")

    expect(page.locator("tr[data-scope='tag:billing'] .badge")).to_have_text("paused")
    expect(page.locator("tr[data-scope='tag:billing']")).to_contain_text("refund loop")

    set_control(owner, {"kind": "org"}, "killed", "breach")

    expect(page.locator("[data-org-state]")).to_have_attribute("data-org-state", "killed")
    expect(page.get_by_role("button", name="Resume the org")).to_be_visible()
    assert page.evaluate("window.drawnOnce") is True


def test_the_agents_list_shows_new_agents_and_their_state_live_but_not_under_a_selection(
    page: Page, web_hub: SharedHub
) -> None:
    owner = sign_up(page, web_hub)
    owner.add_agent("support-bot")
    page.goto("/agents")
    expect(page.locator("body[data-live=listening]")).to_have_count(1)
    expect(page.locator("tr[data-agent]")).to_have_count(1)

    answer = owner.api.post(INGEST, json=batch(run_event(agent="courier", name="courier")))
    assert answer.status_code == 200, answer.text

    expect(page.locator("tr[data-agent]")).to_have_count(2)
    expect(page.locator("h1 .count")).to_have_text("2")
    set_control(owner, {"kind": "agent", "value": "support-bot"}, "paused", "incident 7")
    expect(page.locator("tr[data-agent='support-bot'] .badge")).to_have_text("paused")

    page.get_by_label("Select courier").check()  # someone is choosing agents: keep the list
    set_control(owner, {"kind": "agent", "value": "courier"}, "killed", "incident 8")

    expect(page.locator("tbody[data-live-stale]")).to_have_count(1)
    expect(page.get_by_label("Select courier")).to_be_checked()
    expect(page.locator("tr[data-agent='courier'] .badge")).to_have_text("active")
