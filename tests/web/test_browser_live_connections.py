"""One connection to the org's stream a page (``live.js``), in Chromium against a hub process:
the bell and a page's live parts share it, since a browser holds at most six HTTP/1.1
connections to a host and a stream a script would spend two a tab. A script error or a CSP
refusal fails it (``page``)."""

from __future__ import annotations

from playwright.sync_api import Page, Request, expect

from tests.e2e.hubs import SharedHub
from tests.web.people import sign_up


def test_the_bell_and_the_live_parts_share_one_stream_and_both_still_update(
    page: Page, web_hub: SharedHub
) -> None:
    owner = sign_up(page, web_hub)
    bell = page.locator("[data-bell]")
    # The dashboard's stream is open, so its request comes before those counted.
    expect(bell).to_have_attribute("data-live", "listening")
    streams: list[Request] = []
    page.on(
        "request",
        lambda request: streams.append(request) if request.url.endswith("/live") else None,
    )

    page.goto("/controls")
    expect(bell).to_have_attribute("data-live", "listening")
    expect(page.locator("body[data-live=listening]")).to_have_count(1)
    expect(page.locator("tr[data-scope='tag:billing']")).to_have_count(0)

    # A control notifies the org's owners (the bell) and changes the controls (the live part).
    body = {"scope": {"kind": "tag", "value": "billing"}, "state": "paused", "reason": "audit"}
    response = owner.api.post("/api/v1/controls", json=body)
    assert response.status_code == 200, response.text

    expect(bell.locator("[data-unread-count]")).to_have_text("1", timeout=15_000)
    expect(page.locator("tr[data-scope='tag:billing'] .badge")).to_have_text("paused")
    assert [request.url for request in streams] == [f"{web_hub.url}/live"]
