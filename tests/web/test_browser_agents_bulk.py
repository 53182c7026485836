"""The agents page's bulk bar, live, in Chromium against a hub process (``live-region.js``): a
page drawn with no agent yet shows the bar once its first agent arrives through the org's
stream, without a reload, and the bar then works. A script error or a CSP refusal fails it
(``page``)."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.e2e.hubs import SharedHub
from tests.server.ingest_events import INGEST, batch, run_event
from tests.web.people import sign_up
from tests.web.test_browser import control_of


def test_the_bulk_bar_joins_an_agents_page_drawn_empty_when_the_first_agent_arrives(
    page: Page, web_hub: SharedHub
) -> None:
    owner = sign_up(page, web_hub)
    page.goto("/agents")
    expect(page.locator("body[data-live=listening]")).to_have_count(1)
    expect(page.locator("tr[data-agent]")).to_have_count(0)
    expect(page.locator(".bulk-bar")).to_have_count(0)
    page.evaluate("window.drawnOnce = true")  # gone if the page is loaded again

    answer = owner.api.post(INGEST, json=batch(run_event(agent="courier", name="courier")))
    assert answer.status_code == 200, answer.text

    expect(page.locator("tr[data-agent='courier']")).to_have_count(1)
    expect(page.locator(".bulk-bar")).to_be_visible()
    assert page.evaluate("window.drawnOnce") is True
    page.get_by_label("Select courier").check()
    page.get_by_label("Reason").fill("incident 9")
    page.get_by_role("button", name="Pause", exact=True).click()

    expect(page.get_by_role("status")).to_contain_text("controls are set")
    expect(page.locator("tr[data-agent='courier'] .badge")).to_have_text("paused")
    control = control_of(owner, "agent", "courier")
    assert control is not None
    assert (control["state"], control["reason"]) == ("paused", "incident 9")
