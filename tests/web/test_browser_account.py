"""The notifications bell in a real browser (Chromium) against a hub process: its unread count
rises live when a notification is made (a control set through the API), and reading them on
the notifications page clears it."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Page, expect

from tests.e2e.hubs import SharedHub
from tests.web.people import sign_up


def test_the_bell_counts_a_new_notification_live_and_reading_clears_it(
    page: Page, web_hub: SharedHub, screenshots: Path
) -> None:
    owner = sign_up(page, web_hub)
    bell = page.locator("[data-bell]")
    expect(bell).to_have_attribute("data-live", "listening")
    expect(bell.locator("[data-unread-count]")).to_be_hidden()

    paused = owner.api.post(
        "/api/v1/controls",
        json={"scope": {"kind": "tag", "value": "billing"}, "state": "paused", "reason": "audit"},
    )
    assert paused.status_code in (200, 201), paused.text

    expect(bell.locator("[data-unread-count]")).to_have_text("1", timeout=15_000)
    expect(bell).to_have_attribute("aria-label", "Notifications: 1 unread")

    bell.click()  # opens the dropdown (tests/web/test_browser_bell.py), which links the page
    page.get_by_role("link", name="All notifications").click()
    page.wait_for_url("**/notifications")
    expect(page.locator("[data-notification][data-unread]")).to_have_count(1)
    page.screenshot(path=screenshots / "notifications.png", full_page=True)
    page.get_by_role("button", name="Mark all read").click()

    expect(page.get_by_role("status")).to_contain_text("Marked read")
    expect(page.locator("[data-bell] [data-unread-count]")).to_be_hidden()
    expect(page.locator("[data-notification][data-unread]")).to_have_count(0)
