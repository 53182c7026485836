"""Issue 14's journey, as one person lives it, in Chromium against one hub process: sign up,
make an API key on the settings page (its secret shown once), run the example agent
(``examples/quickstart.py``) against the hub with that key, see its run arrive on the open
dashboard and the open runs explorer without a reload, open its timeline, pause the agent on the
agents page and see the agent's next call refused (``AgentPaused``, in an agent process),
approve an agent's waiting call from the queue and see the call go on, make a budget and watch
its bar move with spend, see a viewer of the org offered no edit control and refused by the
server anyway, and see a form posted without its CSRF token refused. Screenshots of the pages
along the way go to the ``screenshots`` folder (``AGENTOPS_SCREENSHOTS``), named
``journey-*.png``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from agentops_server.security.permissions import Role
from tests.e2e.agents import ROOT, AgentProcess, agent_starter
from tests.e2e.hubs import SharedHub
from tests.web.people import Owner, csrf_token, sign_in_as, sign_up
from tests.web.test_browser_governance import charge

AGENT = "weather-assistant"
"""The example agent's name (``examples/quickstart.py``)."""
LIVE = 20_000
"""How long a run may take to show on an open page, in ms: the dashboard's figures come from
rollups worked out after the run is stored (a loaded test machine needs the margin)."""
EXTERNAL_MAIL: dict[str, Any] = {
    "id": "external-mail",
    "match": {"kind": "tool", "name": "send_email"},
    "when": {"argument": "to", "not_regex": r"@example\.com$"},
    "outcome": "require_approval",
    "message": "Mail outside the company needs a person's approval.",
}


@pytest.fixture
def agents(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """Starters of the agent processes the journey runs (``tests/e2e``), with their spools and
    the approvals agent's record of its tool's runs under ``tmp_path``."""
    markers = {"E2E_MARKERS": str(tmp_path / "sent.jsonl")}
    with (
        agent_starter("tests.e2e.agent_controls", tmp_path / "controls") as controls,
        agent_starter("tests.e2e.agent_approvals", tmp_path / "approvals", markers) as approvals,
    ):
        yield {"controls": controls, "approvals": approvals}


def test_the_journey_from_sign_up_to_a_refused_forgery(
    page: Page,
    browser: Browser,
    web_hub: SharedHub,
    screenshots: Path,
    agents: dict[str, Any],
    tmp_path: Path,
) -> None:
    owner = sign_up(page, web_hub)
    key = make_api_key(page)

    page.goto("/dashboard")
    expect(page.locator("body[data-live=listening]")).to_have_count(1)
    explorer = page.context.new_page()
    explorer.goto("/runs")
    expect(explorer.locator("tr[data-run]")).to_have_count(0)
    expect(explorer.locator("body[data-live=listening]")).to_have_count(1)

    printed = run_example(web_hub, key, tmp_path)

    assert "Paris: 18°C, light rain (64.4°F)" in printed
    expect(page.locator("[data-kpi=runs] [data-kpi-value]")).to_have_text("1", timeout=LIVE)
    page.screenshot(path=screenshots / "journey-dashboard.png", full_page=True)
    row = explorer.locator("tr[data-run]")
    expect(row).to_have_count(1, timeout=LIVE)
    expect(row).to_contain_text(AGENT)
    expect(row.locator(".badge")).to_have_text("ok", timeout=LIVE)
    explorer.screenshot(path=screenshots / "journey-runs.png", full_page=True)

    row.get_by_role("link", name=AGENT).first.click()
    expect(explorer.get_by_role("heading", name="Timeline")).to_be_visible()
    spans = explorer.locator(".span-row")
    expect(spans).to_have_count(6)  # the agent, plan, then weather and conversion for 2 cities
    expect(spans.filter(has_text="get_weather")).to_have_count(2)
    explorer.screenshot(path=screenshots / "journey-timeline.png", full_page=True)
    explorer.close()

    pause_from_the_agents_page(page, owner)
    screenshot_of_controls(page, screenshots)
    agent = agents["controls"](web_hub.url, key)
    assert agent.until("AgentPaused", within=10, agent=AGENT)["ran"] == 0

    approve_a_waiting_call(page, owner, lambda: agents["approvals"](web_hub.url, key), screenshots)
    watch_a_budget_move(page, owner, screenshots)
    see_a_viewer_refused(browser, web_hub, owner, screenshots)

    forged = page.request.post(
        "/agents/bulk", form={"agent": AGENT, "action": "resume", "reason": "forged"}
    )
    assert forged.status == 403
    assert "csrf_failed" in forged.text()
    assert agent_state(owner) == "paused"
    assert agent.until("AgentPaused", within=10, agent=AGENT)["ran"] == 0


def make_api_key(page: Page) -> str:
    """An ingest key that may also ask for approvals, made on the settings page; its secret,
    which the page shows once."""
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Settings").click()
    page.get_by_role("navigation", name="Settings").get_by_role("link", name="API keys").click()
    page.get_by_label("Name").fill("journey agents")
    page.get_by_label("approvals:write").check()
    page.get_by_role("button", name="Create key").click()
    secret = page.get_by_label("Secret", exact=True)
    expect(secret).to_be_visible()
    key = secret.input_value()
    page.get_by_role("navigation", name="Settings").get_by_role("link", name="API keys").click()
    expect(page.locator('tr[data-api-key="journey agents"]')).to_contain_text("approvals:write")
    assert key not in page.content()
    return key


def run_example(hub: SharedHub, key: str, tmp_path: Path) -> str:
    """``examples/quickstart.py`` run to its end against ``hub`` with ``key``; what it printed."""
    environment = {name: value for name, value in os.environ.items() if "AGENTOPS" not in name}
    environment |= {
        "AGENTOPS_HUB_URL": hub.url,
        "AGENTOPS_API_KEY": key,
        "AGENTOPS_SPOOL_DIR": str(tmp_path / "example-spool"),
    }
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quickstart.py")],
        check=False,
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "sent " in done.stdout, done.stdout
    return done.stdout


def pause_from_the_agents_page(page: Page, owner: Owner) -> None:
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Agents").click()
    page.get_by_label(f"Select {AGENT}").check()
    page.get_by_label("Reason").fill("journey: hold the forecasts")
    page.get_by_role("button", name="Pause", exact=True).click()
    expect(page.get_by_role("status")).to_contain_text("controls are set")
    expect(page.locator(f"tr[data-agent='{AGENT}'] .badge")).to_have_text("paused")
    assert agent_state(owner) == "paused"


def screenshot_of_controls(page: Page, screenshots: Path) -> None:
    page.goto("/controls")
    expect(page.locator(f"tr[data-scope='agent:{AGENT}'] .badge")).to_have_text("paused")
    page.screenshot(path=screenshots / "journey-controls.png", full_page=True)


def approve_a_waiting_call(
    page: Page, owner: Owner, start: Callable[[], AgentProcess], screenshots: Path
) -> None:
    """With a policy asking a person for mail outside the company, the agent's ``send_email``
    waits in the queue; approved on the page, the call runs and returns to the agent."""
    activated = owner.api.post(
        "/api/v1/policies/versions", json={"document": {"rules": [EXTERNAL_MAIL]}, "activate": True}
    )
    assert activated.status_code == 201, activated.text
    mailer = start()
    assert mailer.ready["policy"] == activated.json()["number"]
    page.goto("/approvals")
    expect(page.locator("body[data-live=listening]")).to_have_count(1)
    expect(page.locator("[data-approval]")).to_have_count(0)

    mailer.send(send={"to": "bob@other.org", "body": "the forecast"})

    card = page.locator("[data-live-queue] [data-approval]")
    expect(card).to_have_count(1)
    expect(card).to_contain_text("send_email")
    page.screenshot(path=screenshots / "journey-approvals.png", full_page=True)
    card.get_by_role("button", name="Approve").click()
    expect(page.get_by_role("status")).to_contain_text("decision is recorded")
    answer = mailer.answer(within=10)
    assert (answer["outcome"], answer["result"]) == ("ok", "sent to bob@other.org")


def watch_a_budget_move(page: Page, owner: Owner, screenshots: Path) -> None:
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Budgets").click()
    form = page.locator("form[data-budget-form]")
    form.get_by_label("Name", exact=True).fill("journey monthly")
    form.get_by_label("Limit (USD)").fill("10")
    form.get_by_role("button", name="Create budget").click()
    expect(page.get_by_role("status")).to_contain_text("The budget is created")
    budget_id = page.locator("[data-budget]").first.get_attribute("data-budget")
    bar = page.locator(f"#spent-{budget_id}")
    expect(bar).to_have_attribute("value", "0")
    expect(page.locator("body[data-live=listening]")).to_have_count(1)

    charge(owner, 1_000_000)  # $2.50 of gpt-4o input

    expect(bar).to_have_attribute("value", "2.5")
    page.screenshot(path=screenshots / "journey-budgets.png", full_page=True)


def see_a_viewer_refused(browser: Browser, hub: SharedHub, owner: Owner, screenshots: Path) -> None:
    """A viewer of the org sees the paused agent and no control to change it, and the server
    refuses them when they post the form anyway (with a valid CSRF token)."""
    context = browser.new_context(base_url=hub.url)
    try:
        viewer = context.new_page()
        sign_in_as(viewer, hub, owner, Role.VIEWER)
        viewer.goto("/agents")
        expect(viewer.locator(f"tr[data-agent='{AGENT}'] .badge")).to_have_text("paused")
        expect(viewer.locator("input[name=agent]")).to_have_count(0)
        expect(viewer.get_by_role("button", name="Resume")).to_have_count(0)
        viewer.goto("/controls")
        expect(viewer.get_by_role("button", name="Kill all agents")).to_have_count(0)
        expect(viewer.get_by_role("button", name="Clear")).to_have_count(0)
        viewer.goto("/budgets")
        expect(viewer.get_by_role("button", name="Create budget")).to_have_count(0)
        viewer.screenshot(path=screenshots / "journey-viewer-budgets.png", full_page=True)

        refused = viewer.request.post(
            "/agents/bulk",
            form={
                "_csrf_token": csrf_token(viewer),
                "agent": AGENT,
                "action": "resume",
                "reason": "a viewer tries",
            },
        )
        assert refused.status == 403
        assert "permission_denied" in refused.text()
    finally:
        context.close()
    assert agent_state(owner) == "paused"


def agent_state(owner: Owner) -> str | None:
    """The state of the control on the example agent, as ``GET /api/v1/controls`` reads it."""
    found = [
        control["state"]
        for control in owner.controls()
        if (control["scope"]["kind"], control["scope"].get("value")) == ("agent", AGENT)
    ]
    return found[0] if found else None
