"""The runs pages through the app, signed in with the session cookie, on SQLite and PostgreSQL:
the explorer's filters, search and cursors, its CSV export, a run's waterfall with payloads and
refusals in line, an agent's page, and what each may read."""

from __future__ import annotations

import csv
import datetime as dt
import html
import io
import re
import uuid
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import TestClient

from agentops_sdk.contract.decisions import DECISION_EVENT
from agentops_server.auth.guards import permission_of
from agentops_server.security.permissions import Permission, Role
from agentops_server.services.identity.api_keys import IssuedKey
from agentops_server.settings import Settings
from tests.server.api import bearer
from tests.server.conftest import make_org
from tests.server.ingest_events import INGEST, T0, batch, run_event, span_event
from tests.server.principals import People
from tests.server.test_approvals import ask_body
from tests.server.test_run_explorer import denied
from tests.web.people import signed_in
from tests.web.test_page_routes import pages

Client = TestClient[Litestar]
RUN_ROW = re.compile(r'<tr data-run="([0-9a-f-]+)">\s*<td><a href="/runs/[^"]+">([^<]*)</a>')
NEXT = re.compile(r'<a href="([^"]+)" rel="next">')
PREVIOUS = re.compile(r'<a href="([^"]+)" rel="prev">')
MARKUP = "<script>alert(1)</script>"


def ingest(client: Client, key: IssuedKey, *events: dict[str, Any]) -> None:
    response = client.post(INGEST, json=batch(*events), headers=bearer(key.key))
    assert response.status_code == 200, response.text


def listed(client: Client, path: str) -> list[str]:
    """The names of the runs the explorer at ``path`` lists, in its order."""
    answer = client.get(path)
    assert answer.status_code == 200, answer.text
    return [html.unescape(name) for _, name in RUN_ROW.findall(answer.text)]


def link(pattern: re.Pattern[str], text: str) -> str | None:
    found = pattern.search(text)
    return html.unescape(found[1]) if found else None


@pytest.fixture
def owner_client(browser_client: Client, settings: Settings, people: People) -> Client:
    signed_in(browser_client, settings, people, Role.OWNER)
    return browser_client


@pytest.fixture
def explorer_runs(owner_client: Client, org: IssuedKey) -> dict[str, dict[str, Any]]:
    """Four runs of the org: a weather question, a declined card, a refused deletion, a slow
    nightly one."""
    weather = run_event(
        name="weather", agent="forecaster", environment="prod", input={"city": "Reykjavik"}
    )
    declined = run_event(
        name="billing",
        agent="biller",
        status="error",
        error={"type": "CardDeclined", "message": "the issuer refused", "stack": ""},
    )
    refused = run_event(name="cleanup", agent="janitor", tags=["ops"])
    slow = run_event(
        name="nightly",
        agent="forecaster",
        tags=["ops", "batch"],
        started_at=(T0 + dt.timedelta(hours=2)).isoformat(),
        ended_at=(T0 + dt.timedelta(hours=2, seconds=30)).isoformat(),
    )
    blocked = {"status": "blocked", "kind": "tool", "llm": None}
    ingest(
        owner_client,
        org,
        weather,
        declined,
        refused,
        slow,
        span_event(refused, name="delete_user", events=[denied("policy")], **blocked),
        span_event(slow, llm={"model": "claude-3-5-sonnet", "provider": "anthropic"}),
    )
    return {"weather": weather, "billing": declined, "cleanup": refused, "nightly": slow}


@pytest.mark.usefixtures("explorer_runs")
def test_each_filter_and_the_search_narrow_the_explorer(owner_client: Client) -> None:
    assert sorted(listed(owner_client, "/runs")) == ["billing", "cleanup", "nightly", "weather"]
    assert listed(owner_client, "/runs?q=reykjavik") == ["weather"]
    assert listed(owner_client, "/runs?q=issuer+refused") == ["billing"]
    assert listed(owner_client, "/runs?agent=forecaster") == ["nightly", "weather"]
    assert listed(owner_client, "/runs?status=error") == ["billing"]
    assert listed(owner_client, "/runs?environment=prod") == ["weather"]
    assert listed(owner_client, "/runs?tag=ops") == ["nightly", "cleanup"]
    assert listed(owner_client, "/runs?tag=ops,+batch") == ["nightly"]
    assert listed(owner_client, "/runs?model=claude-3-5-sonnet") == ["nightly"]
    assert listed(owner_client, "/runs?min_duration_ms=10000") == ["nightly"]
    assert sorted(listed(owner_client, "/runs?max_duration_ms=5000")) == [
        "billing",
        "cleanup",
        "weather",
    ]
    assert listed(owner_client, "/runs?error_type=CardDeclined") == ["billing"]
    assert listed(owner_client, "/runs?blocked_by=policy") == ["cleanup"]
    after = (T0 + dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")  # a datetime-local value
    assert listed(owner_client, f"/runs?started_after={after}") == ["nightly"]
    assert "nightly" not in listed(owner_client, f"/runs?started_before={after}")
    assert listed(owner_client, "/runs?min_cost=0.01") == []  # no run was priced


@pytest.mark.usefixtures("explorer_runs")
def test_the_form_as_a_browser_sends_it_blank_fields_and_all_is_a_shareable_search(
    owner_client: Client,
) -> None:
    form = "agent=&team=&status=&environment=&tag=&model=&min_cost=&max_cost="
    form += "&min_duration_ms=&max_duration_ms=&started_after=&started_before=&error_type="
    url = f"/runs?q=Reykjavik&{form}&blocked_by=&sort=duration&order=asc"

    page = owner_client.get(url).text

    assert listed(owner_client, url) == ["weather"]
    assert 'value="Reykjavik"' in page  # the form shows the search it ran
    assert '<option value="duration" selected>' in page


def test_a_refused_filter_shows_the_form_again_with_the_reason(owner_client: Client) -> None:
    for query, code in (
        ("status=exploded", "invalid_form"),
        ("min_cost=lots", "invalid_form"),
        ("q=%21%21%21", "validation_error"),  # a search of no word
        ("cursor=not-a-cursor", "validation_error"),
    ):
        answer = owner_client.get(f"/runs?{query}")

        assert answer.status_code == 400, query
        assert f'data-code="{code}"' in answer.text, query
        assert 'role="search"' in answer.text
    kept = owner_client.get("/runs?q=Reykjavik&status=exploded").text
    assert 'value="Reykjavik"' in kept  # the form keeps what was asked


def test_sorting_and_pages_follow_the_apis_cursors_forth_and_back(
    owner_client: Client, org: IssuedKey
) -> None:
    runs = [
        run_event(
            name=f"run-{index}",
            started_at=(T0 + dt.timedelta(minutes=index)).isoformat(),
            ended_at=(T0 + dt.timedelta(minutes=index, seconds=index + 1)).isoformat(),
        )
        for index in range(5)
    ]
    ingest(owner_client, org, *runs)

    seen: list[list[str]] = []
    path: str | None = "/runs?limit=2&sort=duration&order=desc"
    while path is not None:
        seen.append(listed(owner_client, path))
        last_page, path = path, link(NEXT, owner_client.get(path).text)
    back = link(PREVIOUS, owner_client.get(last_page).text)

    assert seen == [["run-4", "run-3"], ["run-2", "run-1"], ["run-0"]]
    assert back is not None
    assert listed(owner_client, back) == ["run-2", "run-1"]
    first = link(PREVIOUS, owner_client.get(back).text)
    assert first is not None
    assert listed(owner_client, first) == ["run-4", "run-3"]
    assert link(PREVIOUS, owner_client.get(first).text) is None


@pytest.mark.usefixtures("explorer_runs")
def test_the_export_link_streams_the_filtered_runs_as_csv(owner_client: Client) -> None:
    page = owner_client.get("/runs?agent=forecaster&sort=cost").text
    export = link(re.compile(r'<a href="([^"]+)" download>Export CSV</a>'), page)
    assert export is not None
    assert export.startswith("/runs/export.csv?")

    answer = owner_client.get(export)

    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/csv")
    assert "attachment" in answer.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    assert [row["name"] for row in rows] == ["nightly", "weather"]  # newest first
    assert {row["agent"] for row in rows} == {"forecaster"}
    searched = owner_client.get("/runs/export.csv?q=reykjavik&status=")
    assert [row["name"] for row in csv.DictReader(io.StringIO(searched.text))] == ["weather"]


def nested_run(client: Client, key: IssuedKey) -> dict[str, Any]:
    """A run: an agent span, under it an LLM call, under that a refused tool call, and a
    sibling tool call that asked for approval."""
    run = run_event(name="support", agent="helper", input={"ticket": MARKUP})
    root = span_event(
        run, kind="agent", name="handle", llm=None, started_at=T0.isoformat(), events=[]
    )
    call = span_event(
        run,
        parent_id=root["id"],
        name="plan",
        attributes={"temperature": 0.2, "max_tokens": 256},
        input={"messages": [{"role": "user", "content": "refund order 77"}]},
        output={"content": "calling refund_order"},
    )
    refused = span_event(
        run,
        parent_id=call["id"],
        kind="tool",
        name="refund_order",
        status="blocked",
        llm=None,
        input={"order": 77, "amount": 5000},
        events=[denied("policy")],
        started_at=(T0 + dt.timedelta(milliseconds=300)).isoformat(),
    )
    failed = span_event(
        run,
        parent_id=root["id"],
        kind="tool",
        name="lookup",
        status="error",
        llm=None,
        error={"type": "TimeoutError", "message": "the CRM was slow", "stack": ""},
        events=[],
        started_at=(T0 + dt.timedelta(milliseconds=1500)).isoformat(),
        ended_at=(T0 + dt.timedelta(milliseconds=1900)).isoformat(),
    )
    ingest(client, key, run, root, call, refused, failed)
    return {"run": run, "root": root, "call": call, "refused": refused, "failed": failed}


def span_row(page: str, span: dict[str, Any]) -> str:
    """The waterfall row of ``span`` on a run's page."""
    start = page.index(f'data-span="{span["id"]}"')
    end = page.find('<div class="span-row"', start)
    return page[start : end if end != -1 else len(page)]


def test_a_runs_page_draws_its_nested_spans_with_payloads_and_refusals_in_line(
    owner_client: Client, org: IssuedKey
) -> None:
    made = nested_run(owner_client, org)

    answer = owner_client.get(f"/runs/{made['run']['id']}")

    assert answer.status_code == 200
    page = answer.text
    depths = re.findall(r'data-span="([^"]+)" data-depth="(\d+)"', page)
    by_id = {made[name]["id"]: name for name in ("root", "call", "refused", "failed")}
    assert [(by_id[span], int(depth)) for span, depth in depths] == [
        ("root", 0),
        ("call", 1),
        ("refused", 2),
        ("failed", 1),
    ]
    call = span_row(page, made["call"])
    assert "<details>" in call
    assert "&#34;temperature&#34;: 0.2" in call  # model parameters, pretty-printed
    assert "refund order 77" in call
    assert "gpt-4o" in call
    assert "12 in" in call
    assert "30 out" in call
    refused = span_row(page, made["refused"])
    assert 'data-blocked-by="policy"' in refused
    assert re.search(r'class="decision decision-deny" data-stage="policy">.*policy-rule', refused)
    assert "&#34;amount&#34;: 5000" in refused
    failed = span_row(page, made["failed"])
    assert "TimeoutError" in failed
    assert "the CRM was slow" in failed
    assert 'x="75.0" y="1" width="20.0"' in failed  # 1.5 s to 1.9 s of a 2 s run
    assert MARKUP not in page
    assert html.escape(MARKUP, quote=False) in page.replace("&#34;", '"')


def test_an_approval_a_span_asked_for_is_shown_in_line_with_its_decision(
    owner_client: Client, org: IssuedKey, people: People
) -> None:
    asked_for = {
        "name": DECISION_EVENT,
        "at": T0.isoformat(),
        "attributes": {"outcome": "require_approval", "stage": "approval", "rule": "mail"},
    }
    run = run_event(name="mailer", agent="mailer")
    mail = span_event(run, kind="tool", name="send_email", llm=None, events=[asked_for])
    ingest(owner_client, org, run, mail)
    body = ask_body(run_id=run["id"], span_id=mail["id"])
    asked = owner_client.post("/api/v1/approvals", json=body, headers=bearer(org.key))
    assert asked.status_code == 201, asked.text
    reviewer = people.add(Role.ADMIN)
    decided = owner_client.post(
        f"/api/v1/approvals/{asked.json()['id']}/decision",
        json={"decision": "reject", "comment": "not to a rival"},
        headers=reviewer.headers,
    )
    assert decided.status_code == 200, decided.text

    row = span_row(owner_client.get(f"/runs/{run['id']}").text, mail)

    assert 'data-stage="approval"><strong>approval</strong>: require_approval' in row
    assert 'data-approval="rejected"' in row
    assert "not to a rival" in row
    assert reviewer.email in row


def test_a_run_of_many_spans_shows_them_a_page_at_a_time(
    owner_client: Client, org: IssuedKey
) -> None:
    made = nested_run(owner_client, org)
    path = f"/runs/{made['run']['id']}?span_limit=2"

    first = owner_client.get(path).text
    more = link(NEXT, first)
    assert more is not None
    later = owner_client.get(more).text

    def shown(page: str) -> list[str]:
        return re.findall(r'data-span="([^"]+)"', page)

    assert shown(first) == [made["root"]["id"], made["call"]["id"]]
    assert shown(later) == [made["refused"]["id"], made["failed"]["id"]]
    assert f"<code>{made['call']['id']}</code> (on another page)" in later
    assert link(NEXT, later) is None


def test_an_agents_page_shows_its_runs_controls_budgets_and_rules(
    owner_client: Client, org: IssuedKey
) -> None:
    api = bearer(org.key)
    made = owner_client.post(
        "/api/v1/agents", json={"name": "helper", "tags": ["support"]}, headers=api
    )
    assert made.status_code == 201, made.text
    agent_id = made.json()["id"]
    run = nested_run(owner_client, org)["run"]
    ingest(owner_client, org, run_event(name="someone else's", agent="other"))
    for body in (
        {"scope": {"kind": "tag", "value": "support"}, "state": "paused", "reason": "audit"},
        {"scope": {"kind": "agent", "value": "other"}, "state": "killed", "reason": "not it"},
    ):
        answer = owner_client.post("/api/v1/controls", json=body, headers=api)
        assert answer.status_code == 200, answer.text
    for name, scope in (("support", {"kind": "tag", "value": "support"}), ("org", {"kind": "org"})):
        body = {"name": name, "scope": scope, "limit_usd": "10", "period": "daily"}
        answer = owner_client.post("/api/v1/budgets", json=body, headers=api)
        assert answer.status_code == 201, answer.text
    rules = [
        {"id": "helpers-no-refunds", "scope": {"agent": ["help*"]}, "outcome": "deny"},
        {"id": "others-only", "scope": {"agent": ["other"]}, "outcome": "deny"},
    ]
    version = owner_client.post(
        "/api/v1/policies/versions", json={"document": {"rules": rules}}, headers=api
    )
    assert version.status_code == 201, version.text
    activated = owner_client.post(
        f"/api/v1/policies/versions/{version.json()['id']}/activate", headers=api
    )
    assert activated.status_code == 200, activated.text

    agents = owner_client.get("/agents").text
    page = owner_client.get(f"/agents/{agent_id}").text

    assert f'<a href="/agents/{agent_id}">helper</a>' in agents
    assert f'<a href="/runs/{run["id"]}">support</a>' in page
    assert "someone else" not in page
    assert 'class="badge badge-paused">paused</span> by the tag control' in page
    assert "audit" in page
    assert "not it" not in page
    assert 'data-budget="support"' in page
    assert 'data-budget="org"' in page
    assert 'data-rule="helpers-no-refunds"' in page
    assert 'data-rule="others-only"' not in page
    assert "Latency, errors and cost, by day" in page


def test_every_runs_page_is_guarded_by_the_permission_of_its_api(app: Litestar) -> None:
    guarded = {
        path: permission_of(handler)
        for method, path, handler in pages(app)
        if path.startswith("/runs") or path == "/agents/{agent_id}"
    }

    assert guarded == {
        "/runs": Permission.RUNS_READ,
        "/runs/export.csv": Permission.RUNS_READ,
        "/runs/{run_id}": Permission.RUNS_READ,
        "/agents/{agent_id}": Permission.AGENTS_READ,
    }


def test_a_viewer_reads_the_runs_and_a_stranger_is_sent_to_sign_in(
    browser_client: Client, settings: Settings, people: People, org: IssuedKey
) -> None:
    made = nested_run(browser_client, org)
    path = f"/runs/{made['run']['id']}"

    stranger = browser_client.get(path, follow_redirects=False)
    export = browser_client.get("/runs/export.csv", follow_redirects=False)
    signed_in(browser_client, settings, people, Role.VIEWER)

    assert (stranger.status_code, stranger.headers["location"]) == (303, f"/sign-in?next={path}")
    assert export.status_code == 303
    assert browser_client.get(path).status_code == 200
    assert listed(browser_client, "/runs") == ["support"]
    assert '<a href="/runs"' in browser_client.get("/agents").text  # in the navigation


def test_another_orgs_runs_and_agents_are_not_found_nor_listed(
    owner_client: Client, migrated_url: str
) -> None:
    other = make_org(migrated_url, "rival")
    secret = nested_run(owner_client, other)["run"]
    made = owner_client.post("/api/v1/agents", json={"name": "spy"}, headers=bearer(other.key))
    assert made.status_code == 201, made.text

    run_page = owner_client.get(f"/runs/{secret['id']}")
    agent_page = owner_client.get(f"/agents/{made.json()['id']}")
    not_an_id = owner_client.get("/agents/not-an-id")

    assert (run_page.status_code, agent_page.status_code, not_an_id.status_code) == (404,) * 3
    assert 'data-code="run_not_found"' in run_page.text
    assert 'data-code="agent_not_found"' in agent_page.text
    assert listed(owner_client, "/runs") == []
    assert owner_client.get("/runs/export.csv").text.count("\n") == 1  # the header alone
    assert str(uuid.UUID(secret["id"])) not in owner_client.get("/runs?q=refund").text
