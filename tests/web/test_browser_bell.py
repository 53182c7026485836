"""The notifications bell's dropdown in Chromium against a hub process (``bell.js``): the bell
opens, from the keyboard, a panel of the latest notifications with the unread count; marking one
read, then all, from the panel keeps you on your page and updates the count; Escape closes it
and gives the focus back to the bell. A script error or a CSP refusal fails it (``page``)."""

from __future__ import annotations

import re
from pathlib import Path

from playwright.sync_api import Page, expect

from tests.e2e.hubs import SharedHub
from tests.web.people import Owner, sign_up


def pause_tag(owner: Owner, tag: str) -> None:
    """A control through the API: it notifies the org's owners."""
    body = {"scope": {"kind": "tag", "value": tag}, "state": "paused", "reason": "audit"}
    response = owner.api.post("/api/v1/controls", json=body)
    assert response.status_code == 200, response.text


def test_the_bell_opens_the_latest_notifications_and_reads_them_in_place(
    page: Page, web_hub: SharedHub, screenshots: Path
) -> None:
    owner = sign_up(page, web_hub)
    bell = page.locator("[data-bell]")
    panel = page.locator("[data-bell-panel]")
    expect(bell).to_have_attribute("data-live", "listening")
    pause_tag(owner, "billing")
    pause_tag(owner, "support")
    expect(bell.locator("[data-unread-count]")).to_have_text("2", timeout=15_000)
    expect(panel).to_be_hidden()

    bell.focus()
    page.keyboard.press("Enter")

    expect(panel).to_be_visible()
    expect(bell).to_have_attribute("aria-expanded", "true")
    items = panel.locator("[data-notification]")
    expect(items).to_have_count(2)
    expect(panel.locator("[data-bell-unread-total]")).to_have_text("2 unread")
    expect(panel.locator("[data-notification][data-unread]")).to_have_count(2)
    page.screenshot(path=screenshots / "notifications-dropdown.png")
    items.first.get_by_role("button", name=re.compile(r"^Mark .* read$")).click()

    expect(bell.locator("[data-unread-count]")).to_have_text("1")
    expect(panel.locator("[data-bell-unread-total]")).to_have_text("1 unread")
    expect(panel.locator("[data-notification][data-unread]")).to_have_count(1)
    assert page.url.endswith("/dashboard")
    page.keyboard.press("Escape")
    expect(panel).to_be_hidden()
    expect(bell).to_be_focused()
    expect(bell).to_have_attribute("aria-expanded", "false")

    page.keyboard.press(" ")
    expect(panel).to_be_visible()
    panel.get_by_role("button", name="Mark all read").click()

    expect(bell.locator("[data-unread-count]")).to_be_hidden()
    expect(panel.locator("[data-notification][data-unread]")).to_have_count(0)
    expect(panel.locator("[data-notification]")).to_have_count(2)
    page.get_by_role("heading", name="Dashboard").click()
    expect(panel).to_be_hidden()
    unread = owner.api.get("/api/v1/notifications", params={"unread": "true"}).json()
    assert unread["items"] == []
