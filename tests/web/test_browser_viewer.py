"""A viewer in the settings area, in Chromium against a hub process: the shell's "Settings"
leads them to the one settings page their role may read (the org's prices, ``pricing:read``),
which shows no control to change anything, and the server refuses the change when they post
it anyway."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Page, expect

from agentops_server.security.permissions import Role
from tests.e2e.hubs import SharedHub
from tests.web.people import Owner, csrf_token, sign_in_as


def test_a_viewer_reaches_the_settings_they_may_read_and_may_change_nothing_there(
    page: Page, web_hub: SharedHub, browser_owner: Owner, screenshots: Path
) -> None:
    price = {"model": "house-model", "input": "1", "output": "2"}
    assert browser_owner.api.post("/api/v1/pricing/overrides", json=price).status_code == 201
    sign_in_as(page, web_hub, browser_owner, Role.VIEWER)

    settings = page.get_by_role("navigation", name="Main").get_by_role("link", name="Settings")
    expect(settings).to_have_attribute("href", "/settings/pricing")
    settings.click()

    page.wait_for_url("**/settings/pricing")
    tabs = page.get_by_role("navigation", name="Settings").get_by_role("link")
    expect(tabs).to_have_text(["Pricing"])
    expect(page.locator("tr[data-price='house-model']")).to_be_visible()
    expect(page.locator("main form")).to_have_count(0)
    expect(page.locator("main input:not([type=hidden]), main button")).to_have_count(0)
    page.screenshot(path=screenshots / "settings-viewer.png", full_page=True)
    form = {"_csrf_token": csrf_token(page), "model": "viewer-model", "input": "9", "output": "9"}

    refused = page.request.post("/settings/pricing", form=form)

    assert refused.status == 403
    assert "permission_denied" in refused.text()
    prices = browser_owner.api.get("/api/v1/pricing/overrides").json()
    assert [item["model"] for item in prices["items"]] == ["house-model"]
    for path in ("/settings", "/settings/members", "/settings/api-keys"):
        answer = page.goto(path)
        assert answer is not None
        assert answer.status == 403, path
