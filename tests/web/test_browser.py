"""The pages in a real browser (Chromium) against a hub process: signing up into the app shell,
the emergency controls, bulk controls on the agents page, approvals, role checks, CSRF and the
security headers. Each test saves a screenshot of the page it ends on."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Page, expect

from agentops_sdk.contract.approvals import approval_key
from agentops_sdk.contract.arguments import canonical_arguments
from agentops_server.security.permissions import Role
from tests.e2e.hubs import SharedHub
from tests.server.principals import People
from tests.web.people import Owner, csrf_token, sign_in_as, sign_up


def control_of(owner: Owner, kind: str, value: str | None) -> dict[str, Any] | None:
    found = [
        control
        for control in owner.controls()
        if control["scope"]["kind"] == kind and control["scope"].get("value") == value
    ]
    return found[0] if found else None


def test_sign_up_opens_the_app_shell_with_its_navigation_and_theme_toggle(
    page: Page, web_hub: SharedHub, screenshots: Path
) -> None:
    owner = sign_up(page, web_hub)

    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
    page.goto("/controls")
    expect(page.get_by_role("heading", name="Emergency controls")).to_be_visible()
    navigation = page.get_by_role("navigation", name="Main")
    for label in ("Dashboard", "Emergency controls", "Agents", "Approvals", "Costs", "Reports"):
        expect(navigation.get_by_role("link", name=label)).to_be_visible()
    expect(page.get_by_text(f"{owner.email} · owner")).to_be_visible()
    session = next(c for c in page.context.cookies() if c["name"] == "agentops_session")
    assert session["httpOnly"]
    assert session["sameSite"] == "Lax"
    page.screenshot(path=screenshots / "controls-light.png", full_page=True)

    before = page.evaluate("document.documentElement.dataset.theme || ''")
    page.get_by_role("button", name="Switch between light and dark theme").click()
    after = page.evaluate("document.documentElement.dataset.theme")
    page.reload()
    assert after in {"light", "dark"}
    assert after != before
    assert page.evaluate("document.documentElement.dataset.theme") == after  # kept
    if after == "dark":
        page.screenshot(path=screenshots / "controls-dark.png", full_page=True)


def test_the_org_switcher_moves_a_member_of_two_orgs_to_the_other(
    page: Page, web_hub: SharedHub, browser_owner: Owner
) -> None:
    owner = sign_up(page, web_hub)
    People(web_hub.database_url, browser_owner.org_id).add(Role.ADMIN, email=owner.email)
    page.reload()

    page.get_by_label("Org", exact=True).select_option(label=browser_owner.org_name)

    expect(page.get_by_role("status")).to_contain_text("You switched org")
    expect(page.get_by_text(f"{owner.email} · admin")).to_be_visible()
    selected = page.get_by_label("Org", exact=True).locator("option:checked")
    expect(selected).to_have_text(browser_owner.org_name)


def test_signing_out_ends_the_session_and_the_pages_send_you_to_sign_in(
    page: Page, web_hub: SharedHub
) -> None:
    sign_up(page, web_hub)

    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/sign-in")
    page.goto("/agents")

    page.wait_for_url("**/sign-in?next=/agents")
    expect(page.get_by_role("heading", name="Sign in to AgentOps Hub")).to_be_visible()


def test_a_wrong_password_shows_the_sign_in_form_again_with_the_reason(
    page: Page, web_hub: SharedHub, screenshots: Path
) -> None:
    page.goto("/sign-in")
    page.get_by_label("Email").fill("nobody@example.com")
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()

    expect(page.get_by_role("alert")).to_contain_text("invalid_credentials")
    page.screenshot(path=screenshots / "sign-in.png")


def test_pausing_agents_from_the_agents_page_pauses_them_in_the_controls_api(
    page: Page, web_hub: SharedHub, screenshots: Path
) -> None:
    owner = sign_up(page, web_hub)
    owner.add_agent("support-bot", tags=["support"], environments=["prod"])
    owner.add_agent("billing-bot", tags=["billing"], environments=["prod", "staging"])
    owner.add_agent("research-bot", tags=["research"])

    page.goto("/agents")
    page.get_by_label("Select support-bot").check()
    page.get_by_label("Select billing-bot").check()
    page.get_by_label("Reason").fill("incident 42: refunds loop")
    page.get_by_role("button", name="Pause", exact=True).click()

    expect(page.get_by_role("status")).to_contain_text("controls are set")
    for name in ("support-bot", "billing-bot"):
        control = control_of(owner, "agent", name)
        assert control is not None
        assert (control["state"], control["reason"]) == ("paused", "incident 42: refunds loop")
        expect(page.locator(f"tr[data-agent='{name}'] .badge")).to_have_text("paused")
    assert control_of(owner, "agent", "research-bot") is None
    page.screenshot(path=screenshots / "agents.png", full_page=True)

    page.goto("/agents?status=paused")
    expect(page.locator("tr[data-agent]")).to_have_count(2)


def test_the_org_wide_kill_switch_stops_everything_and_resuming_clears_it(
    page: Page, web_hub: SharedHub, screenshots: Path
) -> None:
    owner = sign_up(page, web_hub)
    page.goto("/controls")

    page.get_by_label("Reason (kept in the audit log, shown to the agents)").fill("breach drill")
    page.get_by_label("I mean every agent of the org").check()
    page.get_by_role("button", name="Kill all agents").click()

    expect(page.locator("[data-org-state]")).to_have_attribute("data-org-state", "killed")
    control = control_of(owner, "org", None)
    assert control is not None
    assert (control["state"], control["reason"]) == ("killed", "breach drill")
    page.screenshot(path=screenshots / "controls-killed.png", full_page=True)

    page.locator("#org-resume-reason").fill("drill over")
    page.get_by_role("button", name="Resume the org").click()

    expect(page.locator("[data-org-state]")).to_have_attribute("data-org-state", "active")
    assert control_of(owner, "org", None) is None


def test_a_scoped_control_is_set_and_listed(page: Page, web_hub: SharedHub) -> None:
    owner = sign_up(page, web_hub)
    page.goto("/controls")

    page.get_by_label("Scope", exact=True).select_option("environment")
    page.locator("#scope-value").fill("staging")
    page.get_by_label("State").select_option("paused")
    page.locator("#scope-reason").fill("deploy freeze")
    page.get_by_role("button", name="Set control").click()

    expect(page.locator("tr[data-scope='environment:staging'] .badge")).to_have_text("paused")
    control = control_of(owner, "environment", "staging")
    assert control is not None
    assert control["state"] == "paused"


def test_a_viewer_sees_no_edit_controls_and_the_server_refuses_their_changes(
    page: Page, web_hub: SharedHub, browser_owner: Owner, screenshots: Path
) -> None:
    browser_owner.add_agent(f"bot-{uuid.uuid4().hex[:6]}")
    sign_in_as(page, web_hub, browser_owner, Role.VIEWER)
    page.goto("/controls")

    expect(page.get_by_role("heading", name="Emergency controls")).to_be_visible()
    expect(page.get_by_role("button", name="Kill all agents")).to_have_count(0)
    expect(page.get_by_role("button", name="Set control")).to_have_count(0)
    page.goto("/agents")
    expect(page.locator("tr[data-agent]")).to_have_count(1)
    expect(page.locator("input[name=agent]")).to_have_count(0)
    expect(page.get_by_role("button", name="Pause", exact=True)).to_have_count(0)
    page.screenshot(path=screenshots / "agents-viewer.png", full_page=True)

    refused = page.request.post(
        "/controls",
        form={
            "_csrf_token": csrf_token(page),
            "scope_kind": "org",
            "state": "killed",
            "reason": "a viewer tries",
            "confirm": "yes",
        },
    )

    assert refused.status == 403
    assert "permission_denied" in refused.text()
    assert control_of(browser_owner, "org", None) is None


def test_a_form_posted_without_its_csrf_token_is_refused(page: Page, web_hub: SharedHub) -> None:
    owner = sign_up(page, web_hub)
    form: dict[str, str | float | bool] = {
        "scope_kind": "tag",
        "scope_value": "x",
        "state": "paused",
        "reason": "forged",
    }

    without = page.request.post("/controls", form=form)
    forged = page.request.post("/controls", form={**form, "_csrf_token": "0" * 128})

    assert without.status == 403
    assert forged.status == 403
    assert "csrf_failed" in without.text()
    assert control_of(owner, "tag", "x") is None


def test_every_page_carries_the_security_headers(page: Page, web_hub: SharedHub) -> None:
    answers = [page.goto("/sign-in"), page.goto("/sign-up")]
    sign_up(page, web_hub)
    answers += [page.goto(path) for path in ("/controls", "/agents", "/approvals", "/dashboard")]

    for answer in answers:
        assert answer is not None
        headers = answer.headers
        policy = headers["content-security-policy"]
        assert "default-src 'self'" in policy
        assert "frame-ancestors 'none'" in policy
        assert "unsafe-inline" not in policy
        assert headers["referrer-policy"] == "no-referrer"
        assert headers["x-frame-options"] == "DENY"
        assert headers["cache-control"] == "no-store"
    assert page.locator("script:not([src]):not([type='application/json'])").count() == 0


def test_a_pending_approval_is_approved_with_edits_from_the_queue(
    page: Page, web_hub: SharedHub, screenshots: Path
) -> None:
    owner = sign_up(page, web_hub)
    asked = ask_approval(owner, {"to": "ceo@rival.com", "body": "hi"})
    rejected = ask_approval(owner, {"to": "all@example.com", "body": "spam"}, run_id="run-2")

    page.goto("/approvals")
    expect(page.locator("[data-approval]")).to_have_count(2)
    page.screenshot(path=screenshots / "approvals.png", full_page=True)
    card = page.locator(f"[data-approval='{asked['id']}']")
    card.get_by_label("Arguments (edit to approve with edits)").fill(
        '{"to": "ceo@example.com", "body": "hi"}'
    )
    card.get_by_role("button", name="Approve").click()
    expect(page.get_by_role("status")).to_contain_text("decision is recorded")
    other = page.locator(f"[data-approval='{rejected['id']}']")
    other.get_by_role("button", name="Reject").click()  # no reason: the browser asks for none,
    expect(page.get_by_role("alert")).to_contain_text("reason_required")  # the server does
    other = page.locator(f"[data-approval='{rejected['id']}']")
    other.get_by_label("Comment (required to reject: the agent is told)").fill("no mass mail")
    other.get_by_role("button", name="Reject").click()

    expect(page.locator("[data-approval]")).to_have_count(0)
    approved = owner.api.get(f"/api/v1/approvals/{asked['id']}").json()
    assert approved["state"] == "approved_with_edits"
    assert approved["edited_arguments"] == {"to": "ceo@example.com", "body": "hi"}
    refused = owner.api.get(f"/api/v1/approvals/{rejected['id']}").json()
    assert (refused["state"], refused["comment"]) == ("rejected", "no mass mail")


def ask_approval(owner: Owner, arguments: dict[str, Any], run_id: str = "run-1") -> Any:
    """A pending request, asked as the SDK asks (the owner may ask: they hold every right)."""
    frozen = canonical_arguments(arguments)
    assert frozen is not None
    body = {
        "key": approval_key(run_id, "send_email", frozen[1]),
        "agent": "mailer",
        "environment": "prod",
        "run_id": run_id,
        "span_id": f"span-{uuid.uuid4().hex[:8]}",
        "kind": "tool",
        "name": "send_email",
        "arguments": arguments,
        "arguments_sha256": frozen[1],
        "rule": "external-mail",
        "reason": "Mail outside the company needs a human.",
        "expires_in": 3600,
    }
    response: httpx.Response = owner.api.post("/api/v1/approvals", json=body)
    assert response.status_code == 201, response.text
    return response.json()


UNLABELLED = """() => [...document.querySelectorAll("input:not([type=hidden]), select, textarea")]
    .filter((field) => !field.labels.length && !field.getAttribute("aria-label"))
    .map((field) => field.name || field.id)"""


def test_every_form_control_is_labelled_and_the_keyboard_reaches_the_content_first(
    page: Page, web_hub: SharedHub
) -> None:
    owner = sign_up(page, web_hub)
    owner.add_agent("support-bot")
    ask_approval(owner, {"to": "ceo@rival.com"})
    pages = ["/controls", "/agents", "/approvals", "/sign-in", "/sign-up"]
    pages += ["/dashboard", "/costs", "/reports"]

    for path in pages:
        page.goto(path)
        assert page.evaluate(UNLABELLED) == [], path
    page.goto("/controls")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"


def test_the_approvals_queue_shows_new_requests_and_drops_decided_ones_live(
    page: Page, web_hub: SharedHub
) -> None:
    owner = sign_up(page, web_hub)
    page.goto("/approvals")
    expect(page.locator("body[data-live=listening]")).to_have_count(1)
    expect(page.locator("[data-approval]")).to_have_count(0)

    asked = ask_approval(owner, {"to": "ceo@rival.com"})

    expect(page.locator(f"[data-approval='{asked['id']}']")).to_have_count(1)
    expect(page.locator("[data-pending-count]")).to_have_text("1")
    decided = owner.api.post(
        f"/api/v1/approvals/{asked['id']}/decision", json={"decision": "reject", "comment": "no"}
    )
    assert decided.status_code == 200, decided.text
    expect(page.locator("[data-approval]")).to_have_count(0)
