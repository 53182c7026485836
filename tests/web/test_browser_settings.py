"""The settings pages in a real browser (Chromium) against a hub process: an API key made on
the page is shown once and works at the API; an invitation sent from the page is pending."""

from __future__ import annotations

from pathlib import Path

import httpx
from playwright.sync_api import Page, expect

from tests.e2e.hubs import SharedHub
from tests.web.people import sign_up


def test_an_api_key_made_in_the_browser_is_shown_once_and_works_at_the_api(
    page: Page, web_hub: SharedHub, screenshots: Path
) -> None:
    sign_up(page, web_hub)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Settings").click()
    page.get_by_role("navigation", name="Settings").get_by_role("link", name="API keys").click()

    page.get_by_label("Name").fill("production agents")
    page.get_by_role("button", name="Create key").click()

    secret = page.get_by_label("Secret", exact=True)
    expect(secret).to_be_visible()
    key = secret.input_value()
    answer = httpx.get(f"{web_hub.url}/api/v1/controls", headers={"Authorization": f"Bearer {key}"})
    assert answer.status_code == 200, answer.text
    row = page.locator('tr[data-api-key="production agents"]')
    expect(row).to_contain_text("ingest")
    page.screenshot(path=screenshots / "settings-api-keys.png", full_page=True)

    page.get_by_role("navigation", name="Settings").get_by_role("link", name="API keys").click()

    expect(page.locator('tr[data-api-key="production agents"]')).to_be_visible()
    expect(page.get_by_label("Secret", exact=True)).to_have_count(0)
    assert key not in page.content()


def test_an_invitation_sent_in_the_browser_is_pending_with_its_role(
    page: Page, web_hub: SharedHub
) -> None:
    owner = sign_up(page, web_hub)
    page.goto("/settings/members")

    page.get_by_label("Email", exact=True).fill("new.colleague@example.com")
    page.get_by_label("Role", exact=True).select_option("admin")
    page.get_by_role("button", name="Send invitation").click()

    expect(page.get_by_role("status")).to_contain_text("The invitation is sent by email")
    expect(page.locator('tr[data-invitation="new.colleague@example.com"]')).to_contain_text("admin")
    pending = owner.api.get("/api/v1/invitations").json()["items"]
    assert [(item["email"], item["role"]) for item in pending] == [
        ("new.colleague@example.com", "admin")
    ]
