"""The policy editor in YAML, in a real browser (Chromium) against a hub process: a set written
in YAML is validated, saved, activated and listed, and the hub enforces what it says."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import Page, expect

from tests.e2e.hubs import SharedHub
from tests.web.people import Owner, sign_up

POLICY = """\
name: guard
rules:
  - id: no-deletes
    match: {kind: tool, name: "delete_*"}
    outcome: deny
    message: Deleting is not allowed for agents.
"""
TESTS = """\
- name: deletes are refused
  given: {kind: tool, name: delete_user}
  expect: {outcome: deny, rule: no-deletes}
"""


def test_a_policy_written_in_yaml_is_saved_activated_and_listed(
    page: Page, web_hub: SharedHub
) -> None:
    owner = sign_up(page, web_hub)
    page.goto("/policies")
    page.get_by_label("Written in").select_option("yaml")
    expect(page.locator("label[for=policy-document]")).to_have_text("Policy set (YAML)")
    page.get_by_label("Policy set (YAML)").fill(POLICY.replace("outcome: deny", "outcome: nope"))
    page.get_by_label("Table tests (a YAML list)").fill(TESTS)
    page.get_by_role("button", name="Validate and run tests").click()
    expect(page.locator("[data-errors] [data-field='/rules/0/outcome']")).to_contain_text(
        "at line 5, column 14"
    )

    page.get_by_label("Policy set (YAML)").fill(POLICY)
    page.get_by_label("Comment").fill("written in YAML")
    page.get_by_role("button", name="Save version").click()
    expect(page.get_by_role("heading", name="Version 1")).to_be_visible()
    expect(page.locator("[data-document]")).to_contain_text("- id: no-deletes")
    assert effective(owner)["policy"] is None  # saved, not active yet

    page.get_by_role("button", name="Activate version 1").click()
    expect(page.get_by_role("status")).to_contain_text("The policy version is active")
    expect(page.locator("[data-shown]")).to_contain_text("Shown as YAML")
    page.get_by_role("link", name="← Policies").click()

    row = page.locator("[data-versions] tr[data-version='1']")
    expect(row).to_contain_text("written in YAML")
    expect(row.locator(".badge-active")).to_have_text("active")
    expect(page.locator("[data-active-version]")).to_have_attribute("data-active-version", "1")
    served = effective(owner)["policy"]
    assert [rule["id"] for rule in served["rules"]] == ["no-deletes"]
    assert served["rules"][0]["message"] == "Deleting is not allowed for agents."


def effective(owner: Owner) -> Any:
    response = owner.api.get("/api/v1/policies/effective")
    assert response.status_code == 200, response.text
    return response.json()
