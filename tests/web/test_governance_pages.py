"""The budgets, policies and approvals pages through the app: each form does what the API's
route does (the same services), and what the API serves afterwards shows it."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from litestar.testing import TestClient

from agentops_server import Settings, create_app
from agentops_server.security.permissions import Role
from agentops_server.services.identity.api_keys import IssuedKey
from tests.server.api import bearer
from tests.server.derived import Hub
from tests.server.ingest_events import batch
from tests.server.principals import People
from tests.server.test_approvals import ask_body
from tests.server.test_budgets import GPT_INPUT, RecordingRunner, calls, now_run
from tests.web.people import signed_in

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
    },
    {"name": "search runs", "given": {"kind": "tool", "name": "search"}, "expect": "allow"},
]


@pytest.fixture
def hub(settings: Settings) -> Iterator[Hub]:
    """The app with a derived-work runner the test can wait on, served over https (its
    cookies are ``Secure``)."""
    runner = RecordingRunner()
    app = create_app(settings, derived_work=runner)
    with TestClient(app, base_url="https://hub.example.com") as client:
        yield Hub(client, runner)


def budget_form(token: str, **fields: str) -> dict[str, str]:
    return {
        "_csrf_token": token,
        "name": "triage daily",
        "scope_kind": "agent",
        "scope_value": "triage",
        "limit_usd": "10",
        "period": "daily",
        "timezone": "UTC",
        "hard": "hard",
        "thresholds": "50, 80, 100",
        "on_unknown_cost": "deny",
    } | fields


def budgets_of(hub: Hub, headers: dict[str, str]) -> list[dict[str, Any]]:
    answer = hub.client.get("/api/v1/budgets", headers=headers)
    assert answer.status_code == 200, answer.text
    return [item["budget"] for item in answer.json()["items"]]


def progress(html: str, budget_id: str) -> tuple[Decimal, Decimal]:
    """(value, max) of the budget's spent bar."""
    found = re.search(rf'<progress id="spent-{budget_id}"[^>]*max="([^"]+)" value="([^"]+)"', html)
    assert found, html
    return Decimal(found[2]), Decimal(found[1])


# -- budgets -------------------------------------------------------------------------------------


def test_a_budget_created_on_the_page_is_the_apis_and_its_bar_shows_spend(
    hub: Hub, settings: Settings, people: People, org: IssuedKey
) -> None:
    owner = people.add(Role.OWNER)
    token = signed_in(hub.client, settings, people, Role.OWNER)

    made = hub.client.post(
        "/budgets",
        data=budget_form(token, auto_pause="yes", thresholds="50 80"),
        follow_redirects=False,
    )

    assert made.status_code == 303, made.text
    (budget,) = budgets_of(hub, owner.headers)
    assert (budget["name"], budget["scope"], budget["limit_usd"]) == (
        "triage daily",
        {"kind": "agent", "value": "triage"},
        "10",
    )
    assert (budget["hard"], budget["thresholds"], budget["auto_pause"]) == (True, [50, 80], True)
    assert budget["fail_mode"] == "closed"
    run = now_run()
    response = hub.client.post(
        "/api/v1/ingest/batch", json=batch(run, *calls(run, 1_000_000)), headers=bearer(org.key)
    )
    assert response.status_code == 200, response.text
    hub.settle()
    html = hub.client.get("/budgets").text
    assert progress(html, budget["id"]) == (1_000_000 * GPT_INPUT, Decimal(10))
    assert "hard" in html
    assert "fails closed" in html
    assert "auto-pause" in html


def test_editing_a_budget_changes_it_and_its_alerts_are_listed(
    hub: Hub, settings: Settings, people: People, org: IssuedKey
) -> None:
    owner = people.add(Role.OWNER)
    token = signed_in(hub.client, settings, people, Role.OWNER)
    hub.client.post("/budgets", data=budget_form(token, limit_usd="4"))
    (budget,) = budgets_of(hub, owner.headers)
    run = now_run()
    hub.client.post(
        "/api/v1/ingest/batch", json=batch(run, *calls(run, 1_000_000)), headers=bearer(org.key)
    )  # $2.50 of $4: past 50%
    hub.settle()

    changed = hub.client.post(
        f"/budgets/{budget['id']}",
        data=budget_form(
            token, name="triage soft", hard="soft", limit_usd="20", limit_tokens="5000000"
        ),
        follow_redirects=False,
    )

    assert changed.status_code == 303, changed.text
    (after,) = budgets_of(hub, owner.headers)
    assert (after["name"], after["hard"], after["limit_usd"], after["limit_tokens"]) == (
        "triage soft",
        False,
        "20",
        5_000_000,
    )
    assert after["fail_mode"] == "open"
    page = hub.client.get(f"/budgets/{budget['id']}").text
    assert "50% reached" in page
    assert "<option selected>agent</option>" in page  # the edit form starts from the budget
    assert '<option value="soft" selected>' in page
    assert 'id="tokens-' in page
    assert "soft" in page
    api = hub.client.get(f"/api/v1/budgets/{budget['id']}/alerts", headers=owner.headers).json()
    assert ("threshold", 50) in [(item["kind"], item["threshold"]) for item in api["items"]]


def test_a_refused_budget_shows_the_services_refusal_and_keeps_the_form(
    hub: Hub, settings: Settings, people: People
) -> None:
    token = signed_in(hub.client, settings, people, Role.OWNER)

    refused = hub.client.post("/budgets", data=budget_form(token, hard="soft", auto_pause="yes"))

    assert refused.status_code == 400
    assert 'data-code="invalid_budget"' in refused.text
    assert 'value="triage daily"' in refused.text


def test_deleting_a_budget_removes_it(hub: Hub, settings: Settings, people: People) -> None:
    owner = people.add(Role.OWNER)
    token = signed_in(hub.client, settings, people, Role.OWNER)
    hub.client.post("/budgets", data=budget_form(token))
    (budget,) = budgets_of(hub, owner.headers)

    deleted = hub.client.post(
        f"/budgets/{budget['id']}/delete", data={"_csrf_token": token}, follow_redirects=False
    )

    assert deleted.status_code == 303
    assert budgets_of(hub, owner.headers) == []


def test_a_viewer_sees_budgets_without_forms_and_is_refused_a_change(
    hub: Hub, settings: Settings, people: People
) -> None:
    token = signed_in(hub.client, settings, people, Role.OWNER)
    hub.client.post("/budgets", data=budget_form(token))
    viewer_token = signed_in(hub.client, settings, people, Role.VIEWER)

    shown = hub.client.get("/budgets").text
    refused = hub.client.post("/budgets", data=budget_form(viewer_token, name="mine"))

    assert "triage daily" in shown
    assert "Create budget" not in shown
    assert refused.status_code == 403
    assert 'data-code="permission_denied"' in refused.text


# -- policies ------------------------------------------------------------------------------------


def editor_form(
    token: str, document: Any = POLICY, tests: Any = TESTS, **fields: str
) -> dict[str, str]:
    return {
        "_csrf_token": token,
        "document": document if isinstance(document, str) else json.dumps(document),
        "tests": tests if isinstance(tests, str) else json.dumps(tests),
    } | fields


def effective(hub: Hub, headers: dict[str, str]) -> Any:
    answer = hub.client.get("/api/v1/policies/effective", headers=headers)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_validation_errors_are_shown_with_their_location(
    hub: Hub, settings: Settings, people: People
) -> None:
    token = signed_in(hub.client, settings, people, Role.OWNER)
    broken = {
        "rules": [
            POLICY["rules"][0],
            {"id": "bad", "match": {"kind": "tool"}, "outcome": "explode"},
        ]
    }

    invalid = hub.client.post("/policies/validate", data=editor_form(token, broken))
    not_json = hub.client.post("/policies/validate", data=editor_form(token, '{"rules": [\n  oops'))

    assert invalid.status_code == 400
    assert 'data-code="invalid_policy"' in invalid.text
    assert 'data-field="/rules/1/outcome"' in invalid.text
    assert "rule <code>bad</code>, #1" in invalid.text
    assert not_json.status_code == 400
    assert 'data-code="invalid_json"' in not_json.text
    assert "line 2, column 3 of the document" in not_json.text


def test_table_tests_run_on_validate_and_each_shows_pass_or_fail(
    hub: Hub, settings: Settings, people: People
) -> None:
    token = signed_in(hub.client, settings, people, Role.OWNER)
    wrong = [
        *TESTS,
        {"name": "deletes run", "given": {"kind": "tool", "name": "delete_x"}, "expect": "allow"},
    ]

    passing = hub.client.post("/policies/validate", data=editor_form(token))
    failing = hub.client.post("/policies/validate", data=editor_form(token, tests=wrong))
    saved = hub.client.post("/policies/versions", data=editor_form(token, tests=wrong))

    assert passing.status_code == 200, passing.text
    assert passing.text.count('data-passed="yes"') == 2
    assert "2 of 2 pass" in passing.text
    assert failing.status_code == 400
    assert 'data-code="policy_tests_failed"' in failing.text
    assert 'data-test="deletes run" data-passed="no"' in failing.text
    assert "2 of 3 pass" in failing.text
    assert saved.status_code == 400
    assert 'data-test="deletes run" data-passed="no"' in saved.text
    assert "data-version=" not in hub.client.get("/policies").text


def test_a_dry_run_shows_what_the_candidate_would_change_on_recent_calls(
    hub: Hub, settings: Settings, people: People, org: IssuedKey
) -> None:
    token = signed_in(hub.client, settings, people, Role.OWNER)
    run = now_run()
    span = calls(run, 10)[0] | {"kind": "tool", "name": "delete_user", "llm": None}
    sent = hub.client.post("/api/v1/ingest/batch", json=batch(run, span), headers=bearer(org.key))
    assert sent.status_code == 200, sent.text

    report = hub.client.post("/policies/dry-run", data=editor_form(token))

    assert report.status_code == 200, report.text
    denied = re.search(
        r'data-change="newly denied"><th scope="row">newly denied</th><td data-count>(\d+)',
        report.text,
    )
    assert denied
    assert denied[1] == "1"
    assert "tool delete_user" in report.text


def test_saving_activating_rolling_back_and_deactivating_change_what_the_api_serves(
    hub: Hub, settings: Settings, people: People
) -> None:
    owner = people.add(Role.OWNER)
    token = signed_in(hub.client, settings, people, Role.OWNER)
    first = hub.client.post(
        "/policies/versions", data=editor_form(token, activate="yes"), follow_redirects=False
    )
    second_policy = {
        **POLICY,
        "rules": [
            *POLICY["rules"],
            {"id": "no-gpt4", "match": {"kind": "llm", "model": "gpt-4"}, "outcome": "deny"},
        ],
    }
    second = hub.client.post(
        "/policies/versions",
        data=editor_form(token, second_policy, comment="no gpt-4"),
        follow_redirects=False,
    )
    assert (first.status_code, second.status_code) == (303, 303)
    assert [rule["id"] for rule in effective(hub, owner.headers)["policy"]["rules"]] == [
        "no-deletes"
    ]
    second_id = second.headers["location"].split("/")[-1].split("?")[0]
    first_id = first.headers["location"].split("/")[-1].split("?")[0]

    view = hub.client.get(f"/policies/versions/{second_id}").text
    activated = hub.client.post(
        f"/policies/versions/{second_id}/activate", data={"_csrf_token": token}
    )
    served = effective(hub, owner.headers)
    rolled = hub.client.post(
        f"/policies/versions/{first_id}/rollback",
        data={"_csrf_token": token, "comment": "too strict"},
    )
    after_rollback = effective(hub, owner.headers)
    listed = hub.client.get("/policies").text
    deactivated = hub.client.post("/policies/deactivate", data={"_csrf_token": token})

    assert "+ rule <code>no-gpt4</code>" in view
    assert activated.status_code == 200
    assert "Version 2" in activated.text
    assert [rule["id"] for rule in served["policy"]["rules"]] == ["no-deletes", "no-gpt4"]
    assert rolled.status_code == 200
    assert "Version 3" in rolled.text
    assert [rule["id"] for rule in after_rollback["policy"]["rules"]] == ["no-deletes"]
    assert after_rollback["version"] > served["version"]
    assert 'data-active-version="3"' in listed
    assert "(rollback to v1)" in listed
    assert deactivated.status_code == 200
    assert 'data-active-version=""' in deactivated.text
    assert effective(hub, owner.headers)["policy"] is None


def test_a_viewer_reads_policies_but_has_no_editor_and_is_refused_a_save(
    hub: Hub, settings: Settings, people: People
) -> None:
    token = signed_in(hub.client, settings, people, Role.OWNER)
    hub.client.post("/policies/versions", data=editor_form(token, activate="yes"))
    viewer_token = signed_in(hub.client, settings, people, Role.VIEWER)

    shown = hub.client.get("/policies").text
    refused = hub.client.post("/policies/versions", data=editor_form(viewer_token))

    assert 'data-active-version="1"' in shown
    assert "Editor" not in shown
    assert refused.status_code == 403
    assert 'data-code="permission_denied"' in refused.text


# -- approvals -----------------------------------------------------------------------------------


def test_bulk_decisions_decide_every_selected_request_with_one_reason(
    hub: Hub, settings: Settings, people: People, org: IssuedKey
) -> None:
    owner = people.add(Role.OWNER)
    asked = [
        hub.client.post(
            "/api/v1/approvals", json=ask_body(run_id=f"run-{n}"), headers=bearer(org.key)
        ).json()
        for n in range(3)
    ]
    token = signed_in(hub.client, settings, people, Role.OWNER)
    queue = hub.client.get("/approvals").text
    assert queue.count('form="bulk-decision"') == 3

    rejected = hub.client.post(
        "/approvals/decisions",
        data={
            "_csrf_token": token,
            "ids": [asked[0]["id"], asked[1]["id"]],
            "decision": "reject",
            "comment": "no mass mail",
        },
        follow_redirects=False,
    )
    without_reason = hub.client.post(
        "/approvals/decisions",
        data={"_csrf_token": token, "ids": [asked[2]["id"]], "decision": "reject"},
    )

    assert rejected.status_code == 303, rejected.text
    states = [
        hub.client.get(f"/api/v1/approvals/{item['id']}", headers=owner.headers).json()
        for item in asked
    ]
    assert [(item["state"], item["comment"]) for item in states] == [
        ("rejected", "no mass mail"),
        ("rejected", "no mass mail"),
        ("pending", None),
    ]
    assert without_reason.status_code == 400
    assert 'data-code="reason_required"' in without_reason.text


def test_the_history_lists_decisions_with_who_when_and_why_filtered_by_status(
    hub: Hub, settings: Settings, people: People, org: IssuedKey
) -> None:
    asked = [
        hub.client.post(
            "/api/v1/approvals", json=ask_body(run_id=f"run-{n}"), headers=bearer(org.key)
        ).json()
        for n in range(2)
    ]
    token = signed_in(hub.client, settings, people, Role.OWNER)
    hub.client.post(
        "/approvals/decisions",
        data={
            "_csrf_token": token,
            "ids": [asked[0]["id"]],
            "decision": "reject",
            "comment": "nope",
        },
    )
    hub.client.post(
        "/approvals/decisions",
        data={"_csrf_token": token, "ids": [asked[1]["id"]], "decision": "approve"},
    )

    everything = hub.client.get("/approvals/history").text
    rejected = hub.client.get("/approvals/history?state=rejected").text

    assert everything.count('data-state="') == 2
    assert 'data-state="rejected"' in rejected
    assert 'data-state="approved"' not in rejected
    assert "nope" in rejected
    assert "@" in rejected
