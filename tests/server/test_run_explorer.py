"""The run explorer: ``GET /api/v1/runs`` filters, full-text search, sorting with stable cursors,
and a run's spans a page at a time with decisions in line; on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import insert

from agentops_sdk.contract.decisions import DECISION_EVENT
from agentops_server.db.models import Span
from agentops_server.services.identity.api_keys import IssuedKey
from tests.server.api import Client, assert_problem
from tests.server.conftest import make_org
from tests.server.ingest_events import INGEST, T0, batch, run_event, span_event
from tests.server.principals import Person
from tests.server.reading import seeded
from tests.server.test_approvals import ask_body

RUNS = "/api/v1/runs"


def ingest(client: Client, auth: dict[str, str], *events: dict[str, Any]) -> None:
    response = client.post(INGEST, json=batch(*events), headers=auth)
    assert response.status_code == 200, response.text


def listed(client: Client, auth: dict[str, str], **params: Any) -> list[str]:
    response = client.get(RUNS, params=params, headers=auth)
    assert response.status_code == 200, response.text
    return sorted(run["name"] for run in response.json()["items"])


def pages(client: Client, auth: dict[str, str], path: str = RUNS, **params: Any) -> list[str]:
    """Every page's names, following the cursor."""
    names: list[str] = []
    cursor = None
    for _ in range(100):
        query = {**params, **({"cursor": cursor} if cursor else {})}
        body = client.get(path, params=query, headers=auth).json()
        names.extend(run["name"] for run in body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            return names
    raise AssertionError("pagination does not end")


def denied(stage: str) -> dict[str, Any]:
    """The decision event of a call ``stage`` refused."""
    attributes = {"outcome": "deny", "stage": stage, "rule": f"{stage}-rule", "reason": "no"}
    return {
        "name": DECISION_EVENT,
        "at": T0.isoformat(),
        "attributes": attributes | {"details": {}},
    }


def test_search_finds_runs_by_the_words_of_their_names_inputs_outputs_and_errors(
    client: Client, auth: dict[str, str]
) -> None:
    weather = run_event(name="weather", input={"city": "Reykjavik"}, output="sunny spells")
    failed = run_event(
        name="billing",
        status="error",
        error={"type": "CardDeclined", "message": "the issuer refused", "stack": ""},
    )
    quiet = run_event(name="quiet", input={"note": "nothing here"})
    tool = span_event(quiet, kind="tool", name="lookup_invoice", input={"invoice": "INV-4471"})
    ingest(client, auth, weather, failed, quiet, tool)

    assert listed(client, auth, q="reykjavik") == ["weather"]
    assert listed(client, auth, q="Sunny spells") == ["weather"]
    assert listed(client, auth, q="carddeclined") == ["billing"]
    assert listed(client, auth, q="issuer refused") == ["billing"]
    assert listed(client, auth, q="inv 4471") == ["quiet"]  # a span's input finds its run
    assert listed(client, auth, q="lookup") == ["quiet"]  # words split at underscores
    assert listed(client, auth, q="sunny refused") == []  # every word, in one document
    assert listed(client, auth, q='"OR" NEAR(') == []  # no query syntax: plain words
    assert listed(client, auth, q="reyk*") == ["weather"]  # a prefix: every word it begins
    assert listed(client, auth, q="Card* refus*") == ["billing"]
    assert listed(client, auth, q="invoi*") == ["quiet"]
    assert listed(client, auth, q="reyk") == []  # without the *, whole words only
    assert listed(client, auth, q="sun* refus*") == []  # every prefix, in one document
    assert_problem(client.get(RUNS, params={"q": "a*"}, headers=auth), 400, "validation_error")
    assert_problem(client.get(RUNS, params={"q": "  ?! "}, headers=auth), 400, "validation_error")


def test_search_follows_a_run_that_changed(client: Client, auth: dict[str, str]) -> None:
    run = run_event(name="draft", status="running", ended_at=None, output=None)
    ingest(client, auth, run)
    assert listed(client, auth, q="published") == []
    ingest(client, auth, run | {"status": "ok", "ended_at": T0.isoformat(), "output": "published"})
    assert listed(client, auth, q="published") == ["draft"]


def test_search_never_finds_another_orgs_runs(
    client: Client, auth: dict[str, str], migrated_url: str
) -> None:
    other = make_org(migrated_url, "globex")
    ingest(client, {"Authorization": f"Bearer {other.key}"}, run_event(input="secret plans"))
    assert listed(client, auth, q="secret plans") == []
    assert listed(client, {"Authorization": f"Bearer {other.key}"}, q="plans") == ["triage"]


def test_filters_on_what_the_runs_spans_did(client: Client, auth: dict[str, str]) -> None:
    policy = run_event(name="policy-refused")
    budget = run_event(name="budget-refused")
    claude = run_event(name="claude")
    crashed = run_event(name="crashed")
    blocked = {"status": "blocked", "kind": "tool", "llm": None}
    ingest(
        client,
        auth,
        policy,
        budget,
        claude,
        crashed,
        span_event(policy, name="delete_user", events=[denied("policy")], **blocked),
        span_event(budget, name="ask", events=[denied("budget")], **blocked),
        span_event(claude, llm={"model": "claude-3-5-sonnet", "provider": "anthropic"}),
        span_event(crashed, status="error", error={"type": "TimeoutError", "message": "slow"}),
    )

    assert listed(client, auth, blocked_by="policy") == ["policy-refused"]
    assert listed(client, auth, blocked_by="budget") == ["budget-refused"]
    assert listed(client, auth, blocked_by="controls") == []
    assert listed(client, auth, model="claude-3-5-sonnet") == ["claude"]
    assert listed(client, auth, model="gpt-4o") == ["crashed"]  # span_event's default model
    assert listed(client, auth, error_type="TimeoutError") == ["crashed"]
    assert_problem(
        client.get(RUNS, params={"blocked_by": "nobody"}, headers=auth), 400, "validation_error"
    )


def test_filters_on_the_runs_own_fields(
    client: Client, auth: dict[str, str], migrated_url: str, org: IssuedKey
) -> None:
    team = uuid.uuid4()
    with seeded(migrated_url, org.org_id) as rows:
        rows.agent("billing", first_seen_at=T0, last_seen_at=T0).team_id = team
        rows.run(name="cheap", tags=["nightly"], cost=Decimal("0.01"), duration_ms=500.0)
        rows.run(name="dear", tags=["nightly", "eu"], cost=Decimal("2.5"), duration_ms=9000.0)
        rows.run(name="billed", agent="billing", status="error", error={"type": "KeyError"})
        rows.run(name="staging", environment="staging", tags=["eu"])

    assert listed(client, auth, tag="nightly") == ["cheap", "dear"]
    assert listed(client, auth, tag=["nightly", "eu"]) == ["dear"]
    assert listed(client, auth, min_cost="0.5") == ["dear"]
    assert listed(client, auth, max_cost="0.5") == ["cheap"]
    assert listed(client, auth, min_duration_ms=1000, max_duration_ms=10000) == ["dear"]
    assert listed(client, auth, team=str(team)) == ["billed"]
    assert listed(client, auth, team=str(uuid.uuid4())) == []
    assert listed(client, auth, error_type="KeyError") == ["billed"]
    assert listed(client, auth, environment="staging", tag="eu") == ["staging"]
    assert listed(client, auth, status="error", agent="billing") == ["billed"]


@pytest.mark.parametrize(
    ("sort", "order", "expected"),
    [
        ("cost", "desc", ["c3", "c2", "c1", "none-b", "none-a"]),
        ("cost", "asc", ["none-a", "none-b", "c1", "c2", "c3"]),
        ("duration", "desc", ["c1", "c3", "c2", "none-b", "none-a"]),
        ("started_at", "asc", ["c1", "c2", "c3", "none-a", "none-b"]),
    ],
)
def test_runs_sort_by_cost_duration_or_time_and_page_without_repeats(
    client: Client,
    auth: dict[str, str],
    migrated_url: str,
    org: IssuedKey,
    sort: str,
    order: str,
    expected: list[str],
) -> None:
    minute = dt.timedelta(minutes=1)
    with seeded(migrated_url, org.org_id) as rows:
        rows.run(name="c1", cost=Decimal("0.1"), duration_ms=900.0, started_at=T0)
        rows.run(name="c2", cost=Decimal("0.2"), duration_ms=100.0, started_at=T0 + minute)
        rows.run(name="c3", cost=Decimal("0.3"), duration_ms=500.0, started_at=T0 + 2 * minute)
        for name in ("none-a", "none-b"):  # no cost, no end: below every other, by id
            rows.run(
                name=name,
                id=uuid.UUID(int=1 if name == "none-a" else 2),
                started_at=T0 + 3 * minute,
                ended_at=None,
            )

    assert pages(client, auth, sort=sort, order=order, limit=2) == expected


def test_a_cursor_of_another_sort_is_refused(
    client: Client, auth: dict[str, str], migrated_url: str, org: IssuedKey
) -> None:
    with seeded(migrated_url, org.org_id) as rows:
        for cost in ("1", "2", "3"):
            rows.run(cost=Decimal(cost))
    cursor = client.get(RUNS, params={"sort": "cost", "limit": 1}, headers=auth).json()
    response = client.get(RUNS, params={"cursor": cursor["next_cursor"]}, headers=auth)
    assert_problem(response, 400, "validation_error")


def test_a_run_of_many_spans_pages_them_with_decisions_and_approvals_in_line(
    client: Client, auth: dict[str, str], migrated_url: str, org: IssuedKey
) -> None:
    with seeded(migrated_url, org.org_id) as rows:
        run = rows.run(name="big")
        root = rows.span(run, "root", kind="agent")
        for index in range(1, 25):
            rows.span(run, f"call-{index:02}", parent=root, offset_ms=index)
        rows.span(
            run,
            "refused",
            parent=root,
            offset_ms=30,
            status="blocked",
            blocked_by="controls",
            events=[denied("controls")],
        )

    first = client.get(f"{RUNS}/{run.id}", params={"span_limit": 10}, headers=auth).json()
    assert [span["name"] for span in first["spans"]] == ["root"]
    assert len(first["spans"][0]["children"]) == 9
    names = ["root", *(child["name"] for child in first["spans"][0]["children"])]
    cursor = first["spans_next_cursor"]
    while cursor is not None:
        page = client.get(
            f"{RUNS}/{run.id}/spans", params={"limit": 10, "cursor": cursor}, headers=auth
        ).json()
        names.extend(span["name"] for span in page["items"])  # their parent is on page one
        assert all(span["parent_id"] == str(root.id) for span in page["items"])
        cursor = page["next_cursor"]
    assert names == ["root", *(f"call-{index:02}" for index in range(1, 25)), "refused"]
    last = client.get(
        f"{RUNS}/{run.id}/spans",
        params={"limit": 1, "cursor": _cursor_before_last(client, auth, run.id)},
        headers=auth,
    ).json()
    (refused,) = last["items"]
    assert refused["blocked_by"] == "controls"
    assert refused["decisions"] == [
        {
            "stage": "controls",
            "outcome": "deny",
            "rule": "controls-rule",
            "reason": "no",
            "details": {},
            "at": T0.isoformat(),
        }
    ]


def _cursor_before_last(client: Client, auth: dict[str, str], run_id: uuid.UUID) -> str:
    body = client.get(f"{RUNS}/{run_id}/spans", params={"limit": 25}, headers=auth).json()
    cursor = body["next_cursor"]
    assert isinstance(cursor, str)
    return cursor


def test_the_spans_of_an_unknown_or_another_orgs_run_are_not_found(
    client: Client, auth: dict[str, str], migrated_url: str
) -> None:
    other = make_org(migrated_url, "globex")
    with seeded(migrated_url, other.org_id) as rows:
        theirs = rows.run()
    for run_id in (theirs.id, uuid.uuid4(), "not-a-uuid"):
        response = client.get(f"{RUNS}/{run_id}/spans", headers=auth)
        assert_problem(response, 404, "run_not_found")


def test_a_span_shows_the_approval_it_asked_for_and_how_it_was_decided(
    client: Client, auth: dict[str, str], migrated_url: str, org: IssuedKey, owner: Person
) -> None:
    asked_for = {
        "name": DECISION_EVENT,
        "at": T0.isoformat(),
        "attributes": {"outcome": "require_approval", "stage": "approval", "details": {}},
    }
    with seeded(migrated_url, org.org_id) as rows:
        run = rows.run(name="mailer")
        span = rows.span(run, "send_email", events=[asked_for])
    body = ask_body(run_id=str(run.id), span_id=str(span.id))
    asked = client.post("/api/v1/approvals", json=body, headers=auth).json()
    decided = client.post(
        f"/api/v1/approvals/{asked['id']}/decision",
        json={"decision": "reject", "comment": "not to a rival"},
        headers=owner.headers,
    )
    assert decided.status_code == 200, decided.text

    (node,) = client.get(f"{RUNS}/{run.id}", headers=auth).json()["spans"]
    assert [decision["outcome"] for decision in node["decisions"]] == ["require_approval"]
    (approval,) = node["approvals"]
    assert approval["id"] == asked["id"]
    assert approval["state"] == "rejected"
    assert approval["comment"] == "not to a rival"
    assert approval["decided_by"] == "olga@acme.example"


def test_a_run_of_10000_spans_comes_a_thousand_spans_a_page(
    client: Client, auth: dict[str, str], migrated_url: str, org: IssuedKey
) -> None:
    with seeded(migrated_url, org.org_id) as rows:
        run = rows.run(name="huge")
        rows.session.execute(
            insert(Span),
            [
                {
                    "org_id": org.org_id,
                    "id": uuid.UUID(int=index + 1),
                    "run_id": run.id,
                    "kind": "tool",
                    "name": f"call-{index}",
                    "status": "ok",
                    "started_at": T0 + dt.timedelta(milliseconds=index),
                }
                for index in range(10_000)
            ],
        )

    detail = client.get(f"{RUNS}/{run.id}", headers=auth).json()
    assert len(detail["spans"]) == 1000
    seen = [span["name"] for span in detail["spans"]]
    cursor, pages = detail["spans_next_cursor"], 1
    while cursor is not None:
        page = client.get(f"{RUNS}/{run.id}/spans", params={"cursor": cursor}, headers=auth)
        assert page.status_code == 200, page.text
        seen.extend(span["name"] for span in page.json()["items"])
        cursor, pages = page.json()["next_cursor"], pages + 1
    assert pages == 10
    assert seen == [f"call-{index}" for index in range(10_000)]
