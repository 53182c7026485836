"""The budgets and policies pages in a real browser (Chromium) against a hub process: a
budget's bar moves live when spend is charged to it, and a policy is edited, validated with its
table tests, saved and activated from the editor; several approvals are rejected at once.
The budgets and editor tests save screenshots."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, expect

from tests.e2e.hubs import SharedHub
from tests.server.ingest_events import batch, run_event, span_event
from tests.web.people import Owner, sign_up
from tests.web.test_browser import UNLABELLED, ask_approval

POLICY = {
    "name": "guard",
    "rules": [
        {"id": "no-deletes", "match": {"kind": "tool", "name": "delete_*"}, "outcome": "deny"}
    ],
}
TESTS = [
    {
        "name": "deletes are refused",
        "given": {"kind": "tool", "name": "delete_user"},
        "expect": {"outcome": "deny", "rule": "no-deletes"},
    }
]


def charge(owner: Owner, input_tokens: int) -> None:
    """A run of ``triage`` with one gpt-4o call of ``input_tokens``, ingested as the SDK sends
    it (the hub prices it and charges the budgets it falls in)."""
    start = dt.datetime.now(dt.UTC)
    run = run_event(
        started_at=start.isoformat(), ended_at=(start + dt.timedelta(seconds=1)).isoformat()
    )
    span = span_event(
        run,
        started_at=start.isoformat(),
        ended_at=(start + dt.timedelta(milliseconds=10)).isoformat(),
        llm={"model": "gpt-4o", "provider": "openai", "input_tokens": input_tokens},
    )
    response = owner.api.post("/api/v1/ingest/batch", json=batch(run, span))
    assert response.status_code == 200, response.text


def test_a_budget_made_on_the_page_moves_its_bar_live_when_spend_is_charged(
    page: Page, web_hub: SharedHub, screenshots: Path
) -> None:
    owner = sign_up(page, web_hub)
    page.goto("/budgets")
    form = page.locator("form[data-budget-form]")
    form.get_by_label("Name", exact=True).fill("org monthly")
    form.get_by_label("Limit (USD)").fill("10")
    form.get_by_label("Alert thresholds (percent)").fill("20, 80")
    form.get_by_role("button", name="Create budget").click()
    expect(page.get_by_role("status")).to_contain_text("The budget is created")
    budget_id = page.locator("[data-budget]").first.get_attribute("data-budget")
    bar = page.locator(f"#spent-{budget_id}")
    expect(bar).to_have_attribute("value", "0")
    expect(page.locator("body[data-live=listening]")).to_have_count(1)

    charge(owner, 1_000_000)  # $2.50 of gpt-4o input

    expect(bar).to_have_attribute("value", "2.5")
    expect(page.get_by_text("Spent $2.50 of $10.00 (25%)")).to_be_visible()
    charge(owner, 1_000_000)
    expect(bar).to_have_attribute("value", "5")
    page.screenshot(path=screenshots / "budgets.png", full_page=True)

    page.get_by_role("link", name="org monthly").click()
    expect(page.locator("[data-alerts]")).to_contain_text("20% reached")
    page.screenshot(path=screenshots / "budget.png", full_page=True)


def test_a_policy_is_validated_with_its_tests_saved_and_activated_from_the_editor(
    page: Page, web_hub: SharedHub, screenshots: Path
) -> None:
    owner = sign_up(page, web_hub)
    page.goto("/policies")
    page.get_by_label("Policy set (JSON)").fill(json.dumps(POLICY, indent=2))
    page.get_by_label("Table tests (a JSON list)").fill(
        json.dumps([*TESTS, {**TESTS[0], "name": "deletes run", "expect": "allow"}], indent=2)
    )
    page.get_by_role("button", name="Validate and run tests").click()
    expect(page.locator("[data-test='deletes run']")).to_have_attribute("data-passed", "no")
    expect(page.get_by_role("heading", name="Table tests: 1 of 2 pass")).to_be_visible()

    page.get_by_label("Table tests (a JSON list)").fill(json.dumps(TESTS, indent=2))
    page.get_by_label("Comment").fill("no deletes")
    page.get_by_role("button", name="Save version").click()
    expect(page.get_by_role("heading", name="Version 1")).to_be_visible()
    assert effective(owner)["policy"] is None  # saved, not active yet

    page.get_by_role("button", name="Activate version 1").click()
    expect(page.get_by_role("status")).to_contain_text("The policy version is active")
    assert [rule["id"] for rule in effective(owner)["policy"]["rules"]] == ["no-deletes"]

    page.get_by_role("link", name="Edit as a new version").click()
    edited = {**POLICY, "rules": [*POLICY["rules"], gpt4_rule()]}
    page.get_by_label("Policy set (JSON)").fill(json.dumps(edited, indent=2))
    page.get_by_label("Activate on save").check()
    page.screenshot(path=screenshots / "policy-editor.png", full_page=True)
    page.get_by_role("button", name="Save version").click()

    expect(page.get_by_role("heading", name="Version 2 active")).to_be_visible()
    expect(page.locator("[data-diff]")).to_contain_text("+ rule no-gpt4")
    page.screenshot(path=screenshots / "policy-version.png", full_page=True)
    served = effective(owner)
    assert [rule["id"] for rule in served["policy"]["rules"]] == ["no-deletes", "no-gpt4"]


def gpt4_rule() -> dict[str, Any]:
    return {"id": "no-gpt4", "match": {"kind": "llm", "model": "gpt-4"}, "outcome": "deny"}


def effective(owner: Owner) -> Any:
    response = owner.api.get("/api/v1/policies/effective")
    assert response.status_code == 200, response.text
    return response.json()


def test_the_governance_pages_label_every_control(page: Page, web_hub: SharedHub) -> None:
    owner = sign_up(page, web_hub)
    owner.api.post(
        "/api/v1/budgets",
        json={"name": "b", "scope": {"kind": "org"}, "limit_usd": "5", "period": "daily"},
    )
    page.goto("/budgets")
    budget = page.locator("[data-budget]").first.get_attribute("data-budget")
    for path in ("/budgets", f"/budgets/{budget}", "/policies", "/approvals/history"):
        page.goto(path)
        assert page.evaluate(UNLABELLED) == [], path


def test_several_pending_requests_are_rejected_at_once_with_one_reason(
    page: Page, web_hub: SharedHub
) -> None:
    owner = sign_up(page, web_hub)
    asked = [ask_approval(owner, {"to": f"x{n}@rival.com"}, run_id=f"run-{n}") for n in range(3)]
    page.goto("/approvals")

    for item in asked[:2]:
        page.locator(f"[data-approval='{item['id']}'] input[data-bulk-select]").check()
    page.get_by_label("Reason (required to reject)").fill("no mass mail")
    page.get_by_role("button", name="Reject selected").click()

    expect(page.get_by_role("status")).to_contain_text("The decisions are recorded")
    expect(page.locator("[data-live-queue] [data-approval]")).to_have_count(1)
    states = [owner.api.get(f"/api/v1/approvals/{item['id']}").json() for item in asked]
    assert [(item["state"], item["comment"]) for item in states] == [
        ("rejected", "no mass mail"),
        ("rejected", "no mass mail"),
        ("pending", None),
    ]
    page.goto("/approvals/history?state=rejected")
    expect(page.locator("[data-history] [data-state=rejected]")).to_have_count(2)
