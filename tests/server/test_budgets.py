"""``/api/v1/budgets``: budgets created, changed and deleted with audit and role checks; the set
the SDKs read (ETag, 304); the ledger fed from ingested, hub-priced spans (idempotent); state in
calendar windows of a time zone; leases granted atomically (never past the limit, under many
concurrent asks), idempotent, reported, released and expiring; alerts once per threshold per
window (in-app, mail through a local SMTP server, signed webhooks); auto-pause and auto-resume.
On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import datetime as dt
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
from litestar.testing import TestClient
from sqlalchemy import select

from agentops_sdk.contract.budgets import (
    LEASES_ATTRIBUTE,
    BudgetSet,
    BudgetState,
    Lease,
    window_of,
)
from agentops_sdk.contract.controls import ControlSet
from agentops_server import Settings, create_app
from agentops_server.backends.derived_work import InProcessRunner, Notice
from agentops_server.db.engine import create_async_db_engine, open_session
from agentops_server.db.models import Base, BudgetAlert, BudgetLedgerEntry, BudgetRow
from agentops_server.db.tenancy import tenant
from agentops_server.security.permissions import Role
from agentops_server.services.budgets.alerts import BUDGET_RESUME
from agentops_server.services.budgets.state import budget_state
from agentops_server.services.identity.api_keys import IssuedKey
from tests.server import database
from tests.server.api import assert_problem, audit_entries, bearer
from tests.server.derived import Hub
from tests.server.ingest_events import batch, run_event, span_event
from tests.server.mail import Inbox, Received, serving_smtp
from tests.server.principals import People, limited_key
from tests.server.servers import serving
from tests.server.streams import last_of, listening
from tests.server.test_notifications import notifications
from tests.server.test_webhooks import verified

GPT_INPUT = Decimal("2.5") / 1_000_000
"""gpt-4o's catalog price of one input token, in USD."""


class RecordingRunner(InProcessRunner):
    """The in-process runner, keeping every notice dispatched (a delayed one included)."""

    def __init__(self) -> None:
        super().__init__(backoff=0.01)
        self.dispatched: list[Notice] = []

    async def dispatch(self, notice: Notice) -> None:
        self.dispatched.append(notice)
        await super().dispatch(notice)


class MovableClock:
    """The hub's clock in a test: it reads ``at`` until the test moves it."""

    def __init__(self, at: dt.datetime) -> None:
        self.at = at

    def __call__(self) -> dt.datetime:
        return self.at


ZONE_MIDNIGHT = dt.datetime(2026, 11, 3, 5, 0, tzinfo=dt.UTC)
"""Midnight in New York (EST, UTC-5: daylight saving ended on the 1st)."""


@pytest.fixture
def hub(settings: Settings) -> Iterator[Hub]:
    runner = RecordingRunner()
    with TestClient(create_app(settings, derived_work=runner)) as client:
        yield Hub(client, runner)


@pytest.fixture
def clock() -> MovableClock:
    """The clock of ``timed_hub``: half an hour before midnight in New York."""
    return MovableClock(ZONE_MIDNIGHT - dt.timedelta(minutes=30))


@pytest.fixture
def timed_hub(settings: Settings, clock: MovableClock) -> Iterator[Hub]:
    """A hub whose budgets read the time from ``clock``."""
    runner = RecordingRunner()
    with TestClient(create_app(settings, derived_work=runner, clock=clock)) as client:
        yield Hub(client, runner)


def budget_body(**fields: Any) -> dict[str, Any]:
    return {
        "name": "triage daily",
        "scope": {"kind": "agent", "value": "triage"},
        "limit_usd": "10",
        "period": "daily",
    } | fields


def create(hub: Hub, headers: dict[str, str], **fields: Any) -> dict[str, Any]:
    response = hub.client.post("/api/v1/budgets", json=budget_body(**fields), headers=headers)
    assert response.status_code == 201, response.text
    made: dict[str, Any] = response.json()
    return made


def state(hub: Hub, headers: dict[str, str], budget_id: str) -> BudgetState:
    response = hub.client.get(f"/api/v1/budgets/{budget_id}/state", headers=headers)
    assert response.status_code == 200, response.text
    return BudgetState.model_validate_json(response.content)


def ask(hub: Hub, key: IssuedKey, budget_id: str, amount: str, **fields: Any) -> httpx.Response:
    body = {"request_id": str(uuid.uuid4()), "holder": "pid-1", "amount_usd": amount} | fields
    response: httpx.Response = hub.client.post(
        f"/api/v1/budgets/{budget_id}/leases", json=body, headers=bearer(key.key)
    )
    return response


def report(hub: Hub, key: IssuedKey, lease_id: str, **body: Any) -> Lease:
    response = hub.client.post(
        f"/api/v1/budgets/leases/{lease_id}/report", json=body, headers=bearer(key.key)
    )
    assert response.status_code == 200, response.text
    return Lease.model_validate_json(response.content)


def calls(run: dict[str, Any], *input_tokens: int, at: dt.datetime | None = None) -> list[Any]:
    """LLM spans of ``run`` on gpt-4o with these input tokens (and no output), at ``at``."""
    start = at or dt.datetime.now(dt.UTC)
    return [
        span_event(
            run,
            started_at=start.isoformat(),
            ended_at=(start + dt.timedelta(milliseconds=10)).isoformat(),
            llm={"model": "gpt-4o", "provider": "openai", "input_tokens": tokens},
        )
        for tokens in input_tokens
    ]


def now_run(**fields: Any) -> dict[str, Any]:
    start = dt.datetime.now(dt.UTC)
    return (
        run_event(
            started_at=start.isoformat(), ended_at=(start + dt.timedelta(seconds=1)).isoformat()
        )
        | fields
    )


def send(hub: Hub, key: IssuedKey, *events: dict[str, Any]) -> None:
    response = hub.client.post("/api/v1/ingest/batch", json=batch(*events), headers=bearer(key.key))
    assert response.status_code == 200, response.text
    hub.settle()


def stored(url: str, model: type[Base]) -> list[dict[str, Any]]:
    """Every row of ``model``'s table, read straight from the database."""
    return [dict(row._mapping) for row in database.rows(url, select(model.__table__))]


def wait_until(condition: Any, what: str, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := condition():
            return found
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


# -- definitions -----------------------------------------------------------------------------------


def test_budgets_are_created_read_changed_deleted_each_change_audited_and_versioned(
    hub: Hub, people: People
) -> None:
    owner = people.add(Role.OWNER)
    made = create(hub, owner.headers, notify=[owner.email])
    budget_id = made["budget"]["id"]
    raised = hub.client.patch(
        f"/api/v1/budgets/{budget_id}", json={"limit_usd": "25"}, headers=owner.headers
    )
    listed = hub.client.get("/api/v1/budgets", headers=owner.headers).json()["items"]
    one = hub.client.get(f"/api/v1/budgets/{budget_id}", headers=owner.headers).json()
    deleted = hub.client.delete(f"/api/v1/budgets/{budget_id}", headers=owner.headers)
    gone = hub.client.get(f"/api/v1/budgets/{budget_id}", headers=owner.headers)
    entries = audit_entries(hub.client, owner.headers, action="budget.")

    assert made["budget"]["version"] == 1
    assert made["notify"] == [owner.email]
    assert made["budget"]["fail_mode"] == "closed"
    assert made["budget"]["thresholds"] == [50, 80, 100]
    assert raised.status_code == 200, raised.text
    assert raised.json()["budget"]["version"] == 2
    assert Decimal(one["budget"]["limit_usd"]) == 25
    assert [item["budget"]["id"] for item in listed] == [budget_id]
    assert deleted.status_code == 204
    assert_problem(gone, 404, "budget_not_found")
    by_action = {entry["action"]: entry for entry in entries}
    assert set(by_action) == {"budget.created", "budget.changed", "budget.deleted"}
    changed = by_action["budget.changed"]
    assert (changed["before"]["limit_usd"], changed["after"]["limit_usd"]) == (
        "10.0000000000",
        "25.0000000000",
    )


def test_budget_changes_notify_in_app_as_created_raised_lowered(hub: Hub, people: People) -> None:
    owner = people.add(Role.OWNER)
    made = create(hub, owner.headers)
    for limit in ("20", "5"):
        response = hub.client.patch(
            f"/api/v1/budgets/{made['budget']['id']}",
            json={"limit_usd": limit},
            headers=owner.headers,
        )
        assert response.status_code == 200, response.text
    hub.settle()

    titles = sorted(item["title"] for item in notifications(hub.client, owner))
    assert titles == [
        "Budget triage daily created",
        "Budget triage daily lowered",
        "Budget triage daily raised",
    ]


def test_the_effective_set_is_served_with_its_etag_and_304_and_grows_with_each_change(
    hub: Hub, people: People, org: IssuedKey, migrated_url: str
) -> None:
    owner = people.add(Role.OWNER)
    ingest = bearer(limited_key(migrated_url, org.org_id, scopes=["ingest"]).key)
    empty = hub.client.get("/api/v1/budgets/effective", headers=ingest)
    made = create(hub, owner.headers)
    served = hub.client.get("/api/v1/budgets/effective", headers=ingest)
    same = hub.client.get(
        "/api/v1/budgets/effective", headers=ingest | {"If-None-Match": served.headers["etag"]}
    )

    first = BudgetSet.model_validate_json(empty.content)
    current = BudgetSet.model_validate_json(served.content)
    assert first.version == 0
    assert first.budgets == ()
    assert current.version == 1
    assert served.headers["etag"] == current.etag
    [budget] = current.budgets
    assert str(budget.id) == made["budget"]["id"]
    assert budget.scope.kind == "agent"
    assert budget.limit_usd == 10
    assert same.status_code == 304


def test_the_effective_set_carries_the_orgs_own_prices_and_grows_with_each_price_change(
    hub: Hub, people: People, org: IssuedKey, migrated_url: str
) -> None:
    owner = people.add(Role.OWNER)
    ingest = bearer(limited_key(migrated_url, org.org_id, scopes=["ingest"]).key)
    before = hub.client.get("/api/v1/budgets/effective", headers=ingest)
    price = {
        "model": "gpt-4o-mini",
        "provider": "openai",
        "input": "1.5",
        "output": "6",
        "tiers": [{"above_input_tokens": 100_000, "input": "3", "output": "12"}],
    }
    made = hub.client.post("/api/v1/pricing/overrides", json=price, headers=owner.headers)
    assert made.status_code == 201, made.text
    stale = hub.client.get(
        "/api/v1/budgets/effective", headers=ingest | {"If-None-Match": before.headers["etag"]}
    )
    after = BudgetSet.model_validate_json(stale.content)
    removed = hub.client.delete(
        f"/api/v1/pricing/overrides/{made.json()['id']}", headers=owner.headers
    )
    assert removed.status_code in (200, 204), removed.text
    gone = BudgetSet.model_validate_json(
        hub.client.get("/api/v1/budgets/effective", headers=ingest).content
    )

    assert stale.status_code == 200, "a price change is a new version of the set"
    [own] = after.prices
    assert (own.model, own.provider, own.input, own.output) == (
        "gpt-4o-mini",
        "openai",
        Decimal("1.5"),
        Decimal(6),
    )
    assert [(t.above_input_tokens, t.input, t.output) for t in own.tiers] == [
        (100_000, Decimal(3), Decimal(12))
    ]
    assert own.price().rates_for(200_000).input == Decimal(3)
    assert gone.prices == ()
    assert gone.version == after.version + 1


def test_who_may_change_budgets(
    hub: Hub, people: People, org: IssuedKey, migrated_url: str
) -> None:
    lead = people.add(Role.TEAM_LEAD)
    people.team("support", lead)
    viewer = people.add(Role.VIEWER)
    ingest = bearer(limited_key(migrated_url, org.org_id, scopes=["ingest"]).key)
    team_budget = budget_body(scope={"kind": "team", "value": "support"})

    by_lead = hub.client.post("/api/v1/budgets", json=team_budget, headers=lead.headers)
    org_wide = hub.client.post(
        "/api/v1/budgets", json=budget_body(name="all", scope={"kind": "org"}), headers=lead.headers
    )
    by_viewer = hub.client.post("/api/v1/budgets", json=budget_body(), headers=viewer.headers)
    by_key = hub.client.post("/api/v1/budgets", json=budget_body(), headers=ingest)
    read = hub.client.get("/api/v1/budgets", headers=viewer.headers)

    assert by_lead.status_code == 201, by_lead.text
    assert_problem(org_wide, 403, "not_your_team")
    assert by_viewer.status_code == 403
    assert by_key.status_code == 403
    assert read.status_code == 200
    assert len(read.json()["items"]) == 1


@pytest.mark.parametrize(
    "fields",
    [
        {"scope": {"kind": "run", "value": str(uuid.uuid4())}},
        {"timezone": "Mars/Olympus"},
        {"hard": False, "auto_pause": True},
        {"auto_resume": True},
        {"on_unknown_cost": "ceiling"},
        {"limit_usd": "-1"},
        {"notify": ["stranger@elsewhere.example"]},
    ],
)
def test_an_impossible_budget_is_refused(hub: Hub, people: People, fields: dict[str, Any]) -> None:
    owner = people.add(Role.OWNER)
    response = hub.client.post("/api/v1/budgets", json=budget_body(**fields), headers=owner.headers)
    problem = response.json()
    assert response.status_code == 400, response.text
    assert problem["code"] in {"invalid_budget", "invalid_scope"}


# -- the ledger and state --------------------------------------------------------------------------


def test_ingested_llm_spans_are_charged_once_to_each_budget_their_run_falls_in(
    hub: Hub, people: People, org: IssuedKey, migrated_url: str
) -> None:
    owner = people.add(Role.OWNER)
    agent = create(hub, owner.headers)["budget"]["id"]
    tag = create(hub, owner.headers, name="nightly", scope={"kind": "tag", "value": "nightly"})
    prod = create(hub, owner.headers, name="prod", scope={"kind": "environment", "value": "prod"})
    run = now_run()
    other = now_run(agent="billing", tags=[])
    spans = calls(run, 400_000, 200_000)
    send(hub, org, run, *spans, *calls(other, 1_000_000))
    send(hub, org, run, *spans)  # the SDK retried the whole batch

    expected = 600_000 * GPT_INPUT
    assert state(hub, owner.headers, agent).spent_usd == expected
    assert state(hub, owner.headers, tag["budget"]["id"]).spent_usd == expected
    assert state(hub, owner.headers, prod["budget"]["id"]).spent_usd == 0
    assert len(stored(migrated_url, BudgetLedgerEntry)) == 4  # 2 spans x (agent, tag)


def test_a_span_that_arrives_before_its_run_is_charged_when_the_run_arrives(
    hub: Hub, people: People, org: IssuedKey
) -> None:
    owner = people.add(Role.OWNER)
    budget_id = create(hub, owner.headers)["budget"]["id"]
    run = now_run()
    send(hub, org, *calls(run, 400_000))
    before = state(hub, owner.headers, budget_id).spent_usd
    send(hub, org, run)

    assert before == 0
    assert state(hub, owner.headers, budget_id).spent_usd == Decimal(1)


def test_state_reports_spent_reserved_remaining_projection_and_leases(
    hub: Hub, people: People, org: IssuedKey
) -> None:
    owner = people.add(Role.OWNER)
    budget_id = create(hub, owner.headers)["budget"]["id"]
    run = now_run()
    send(hub, org, run, *calls(run, 800_000))  # $2
    lease = Lease.model_validate_json(ask(hub, org, budget_id, "3").content)

    found = state(hub, owner.headers, budget_id)
    window = window_of("daily", "UTC", dt.datetime.now(dt.UTC))
    assert window is not None
    assert (found.window_start, found.window_end) == window
    assert (found.spent_usd, found.reserved_usd, found.remaining_usd) == tuple(
        map(Decimal, (2, 3, 5))
    )
    assert found.percent == 20.0
    assert found.outstanding_leases == 1
    assert found.projected_usd is not None
    assert found.projected_usd >= 2
    assert lease.granted_usd == 3


def test_a_window_resets_as_the_clock_crosses_midnight_in_the_budgets_time_zone(
    timed_hub: Hub, clock: MovableClock, people: People, org: IssuedKey, migrated_url: str
) -> None:
    hub = timed_hub
    owner = people.add(Role.OWNER)
    budget_id = create(hub, owner.headers, timezone="America/New_York", limit_usd="2")["budget"][
        "id"
    ]
    before, after = clock.at, ZONE_MIDNIGHT + dt.timedelta(minutes=30)
    run = run_event(started_at=before.isoformat(), ended_at=after.isoformat())
    send(hub, org, run, *calls(run, 400_000, at=before))  # $1: 50%
    late = state(hub, owner.headers, budget_id)
    late_lease = Lease.model_validate_json(ask(hub, org, budget_id, "5").content)

    clock.at = after
    early = state(hub, owner.headers, budget_id)
    outstanding = hub.client.get(f"/api/v1/budgets/{budget_id}/leases", headers=owner.headers)
    early_lease = Lease.model_validate_json(ask(hub, org, budget_id, "5").content)
    send(hub, org, run, *calls(run, 400_000, at=after))  # $1: 50% of the new window
    alerts = stored(migrated_url, BudgetAlert)

    assert late.window_end == early.window_start == ZONE_MIDNIGHT
    assert (late.spent_usd, late.remaining_usd) == (Decimal(1), Decimal(1))
    assert late_lease.granted_usd == 1, "what was left of the old window"
    assert late_lease.expires_at <= ZONE_MIDNIGHT, "a lease ends with its window"
    assert (early.spent_usd, early.reserved_usd, early.remaining_usd) == (
        Decimal(0),
        Decimal(0),
        Decimal(2),
    )
    assert outstanding.json() == []
    assert early_lease.granted_usd == 2
    assert sorted((a["window_start"].replace(tzinfo=dt.UTC), a["threshold"]) for a in alerts) == [
        (late.window_start, 50),
        (ZONE_MIDNIGHT, 50),
    ], "each threshold once per window"


def test_windows_reset_at_local_midnight_in_the_budgets_time_zone(
    hub: Hub, people: People, org: IssuedKey, migrated_url: str
) -> None:
    owner = people.add(Role.OWNER)
    budget_id = create(hub, owner.headers, timezone="America/New_York")["budget"]["id"]
    zone_midnight = ZONE_MIDNIGHT
    before, after = (
        zone_midnight - dt.timedelta(minutes=30),
        zone_midnight + dt.timedelta(minutes=30),
    )
    run = run_event(started_at=before.isoformat(), ended_at=after.isoformat())
    send(hub, org, run, *calls(run, 400_000, at=before), *calls(run, 800_000, at=after))

    late, early = (
        asyncio.run(state_at(migrated_url, org, budget_id, at))
        for at in (before + dt.timedelta(minutes=10), after + dt.timedelta(minutes=10))
    )
    assert late.window_end == early.window_start == zone_midnight
    assert (late.spent_usd, early.spent_usd) == (Decimal(1), Decimal(2))


async def state_at(url: str, org: IssuedKey, budget_id: str, at: dt.datetime) -> BudgetState:
    engine = create_async_db_engine(url, tenant_isolation=True)
    try:
        with tenant(org_id=org.org_id):
            async with open_session(engine) as session:
                row = await session.get(BudgetRow, (org.org_id, uuid.UUID(budget_id)))
                assert row is not None
                return await budget_state(session, row, at)
    finally:
        await engine.dispose()


# -- leases ----------------------------------------------------------------------------------------


def test_leases_grant_what_is_left_then_refuse_and_a_repeated_ask_answers_the_same_lease(
    hub: Hub, people: People, org: IssuedKey
) -> None:
    owner = people.add(Role.OWNER)
    budget_id = create(hub, owner.headers)["budget"]["id"]
    request_id = str(uuid.uuid4())
    first = ask(hub, org, budget_id, "6", request_id=request_id)
    again = ask(hub, org, budget_id, "6", request_id=request_id)
    second = ask(hub, org, budget_id, "6")
    none_left = ask(hub, org, budget_id, "1")
    elsewhere = create(hub, owner.headers, name="other")["budget"]["id"]
    reused = ask(hub, org, elsewhere, "1", request_id=request_id)

    assert (first.status_code, again.status_code, second.status_code) == (201, 200, 201)
    assert again.json() == first.json()
    assert Decimal(second.json()["granted_usd"]) == 4
    problem = assert_problem(none_left, 409, "budget_exhausted")
    assert problem["remaining_usd"] == "0"
    assert_problem(reused, 409, "lease_request_reused")


def test_a_report_keeps_the_largest_spend_and_a_release_returns_the_rest(
    hub: Hub, people: People, org: IssuedKey, migrated_url: str
) -> None:
    owner = people.add(Role.OWNER)
    budget_id = create(hub, owner.headers)["budget"]["id"]
    lease = Lease.model_validate_json(ask(hub, org, budget_id, "10").content)
    report(hub, org, str(lease.id), spent_usd="1.5")
    late_retry = report(hub, org, str(lease.id), spent_usd="1")
    released = report(hub, org, str(lease.id), spent_usd="2", release=True)
    after_release = state(hub, owner.headers, budget_id)
    run = now_run()
    charged = calls(run, 800_000)  # the $2 the holder spent, arriving
    charged[0]["attributes"] = {LEASES_ATTRIBUTE: [str(lease.id)]}
    send(hub, org, run, *charged)
    settled = state(hub, owner.headers, budget_id)
    renewed = hub.client.post(
        f"/api/v1/budgets/leases/{lease.id}/report",
        json={"spent_usd": "2", "renew_ttl": 60},
        headers=bearer(org.key),
    )

    assert late_retry.spent_usd == Decimal("1.5")
    assert released.state == "released"
    assert (after_release.spent_usd, after_release.reserved_usd) == (Decimal(0), Decimal(2))
    assert (settled.spent_usd, settled.reserved_usd) == (Decimal(2), Decimal(0))
    assert settled.outstanding_leases == 0
    assert_problem(renewed, 409, "lease_ended")
    [entry] = stored(migrated_url, BudgetLedgerEntry)
    assert str(entry["lease_id"]) == str(lease.id)


def test_a_lease_not_renewed_expires_and_its_reservation_returns(
    hub: Hub, people: People, org: IssuedKey
) -> None:
    owner = people.add(Role.OWNER)
    budget_id = create(hub, owner.headers)["budget"]["id"]
    lease = Lease.model_validate_json(ask(hub, org, budget_id, "10", ttl=3).content)
    held = state(hub, owner.headers, budget_id)
    refused = ask(hub, org, budget_id, "1")

    returned = wait_until(
        lambda: (found := state(hub, owner.headers, budget_id)).reserved_usd == 0 and found,
        "the expired lease's reservation to return",
        timeout=20.0,
    )
    outstanding = hub.client.get(f"/api/v1/budgets/{budget_id}/leases", headers=owner.headers)
    after = ask(hub, org, budget_id, "10")

    assert lease.granted_usd == 10
    assert held.reserved_usd == 10
    assert_problem(refused, 409, "budget_exhausted")
    assert returned.remaining_usd == 10
    assert outstanding.json() == []
    assert after.status_code == 201
    assert Decimal(after.json()["granted_usd"]) == 10


def test_more_on_a_lease_grows_it_only_as_far_as_the_budget_has_room(
    hub: Hub, people: People, org: IssuedKey
) -> None:
    owner = people.add(Role.OWNER)
    budget_id = create(hub, owner.headers)["budget"]["id"]
    lease = Lease.model_validate_json(ask(hub, org, budget_id, "4").content)
    ask(hub, org, budget_id, "4")
    grown = report(hub, org, str(lease.id), spent_usd="0", more_usd="5")
    outstanding = hub.client.get(f"/api/v1/budgets/{budget_id}/leases", headers=owner.headers)

    assert grown.granted_usd == 6
    assert [Decimal(item["granted_usd"]) for item in outstanding.json()] == [6, 4]


def test_a_soft_budget_grants_past_its_limit_and_alerts(
    hub: Hub, people: People, org: IssuedKey
) -> None:
    owner = people.add(Role.OWNER)
    budget_id = create(hub, owner.headers, hard=False)["budget"]["id"]
    granted = ask(hub, org, budget_id, "15")
    hub.settle()

    assert Decimal(granted.json()["granted_usd"]) == 15
    assert state(hub, owner.headers, budget_id).remaining_usd == -5
    titles = [item["title"] for item in notifications(hub.client, owner)]
    assert "Budget triage daily passed its soft limit" in titles


def test_concurrent_asks_worth_three_times_the_budget_never_grant_past_it(
    settings: Settings, people: People, org: IssuedKey
) -> None:
    owner = people.add(Role.OWNER)
    amounts = [Decimal(("0.3", "0.7", "1.1")[index % 3]) for index in range(45)]  # $31.5 of $10
    apps = [create_app(dataclasses.replace(settings, db_pool_size=8)) for _hub in range(2)]
    with (
        serving(apps[0]) as first_url,
        serving(apps[1]) as second_url,  # a second hub process on the same database
        httpx.Client(base_url=first_url, timeout=60) as first,
        httpx.Client(base_url=second_url, timeout=60) as second,
    ):
        made = first.post("/api/v1/budgets", json=budget_body(), headers=owner.headers)
        assert made.status_code == 201, made.text
        budget_id = made.json()["budget"]["id"]

        def one(index: int) -> Decimal:
            body = {
                "request_id": str(uuid.uuid4()),
                "holder": f"h{index}",
                "amount_usd": str(amounts[index]),
            }
            http = (first, second)[index % 2]
            response = http.post(
                f"/api/v1/budgets/{budget_id}/leases", json=body, headers=bearer(org.key)
            )
            if response.status_code == 409:
                assert response.json()["code"] == "budget_exhausted"
                return Decimal(0)
            assert response.status_code == 201, response.text
            granted = Decimal(response.json()["granted_usd"])
            assert 0 < granted <= amounts[index]
            return granted

        with concurrent.futures.ThreadPoolExecutor(max_workers=12) as pool:
            granted = list(pool.map(one, range(len(amounts))))
        final = BudgetState.model_validate_json(
            second.get(f"/api/v1/budgets/{budget_id}/state", headers=owner.headers).content
        )

    assert sum(amounts) > 3 * 10
    assert sum(granted) == 10  # every ask took what was left until nothing was: never more
    assert final.reserved_usd == 10
    assert final.remaining_usd == 0


# -- alerts and auto-pause -------------------------------------------------------------------------


def test_each_threshold_alerts_once_per_window_in_app_by_mail_and_signed_webhook(
    settings: Settings, people: People, org: IssuedKey
) -> None:
    # 01:00 UTC: the projected-overrun alert waits a tenth of the day (02:24), so only the
    # thresholds are due, whenever the test runs.
    at = dt.datetime(2026, 11, 3, 1, 0, tzinfo=dt.UTC)
    from tests.server.webhook_receiver import receiving

    owner = people.add(Role.OWNER, email="olga@acme.example")
    watcher = people.add(Role.MEMBER, email="wanda@acme.example")
    inbox = Inbox()
    runner = RecordingRunner()
    with (
        serving_smtp(inbox) as port,
        receiving([200]) as receiver,
    ):
        changed = dataclasses.replace(
            settings, mail_url=f"smtp://127.0.0.1:{port}", webhooks_allow_private=True
        )
        with TestClient(create_app(changed, derived_work=runner, clock=MovableClock(at))) as client:
            hub = Hub(client, runner)
            hook = client.post(
                "/api/v1/webhooks",
                json={"url": receiver.url, "events": ["budget.alert"]},
                headers=owner.headers,
            )
            assert hook.status_code == 201, hook.text
            create(hub, owner.headers, limit_usd="2", notify=[watcher.email])
            run = run_event(started_at=at.isoformat(), ended_at=at.isoformat())
            first = calls(run, 480_000, at=at)  # $1.20: 60%
            send(hub, org, run, *first)
            send(hub, org, run, *first)  # again: nothing new
            send(hub, org, run, *calls(run, 200_000, at=at))  # $1.70: 85%
            told = notifications(client, watcher)
            alerts = stored(changed.database_url, BudgetAlert)
        delivered = receiver.wait_for(2)

    assert sorted((a["kind"], a["threshold"]) for a in alerts) == [
        ("threshold", 50),
        ("threshold", 80),
    ]
    assert sorted(item["title"] for item in told) == [
        "Budget triage daily reached 50% of its limit",
        "Budget triage daily reached 80% of its limit",
    ]
    mailed: list[Received] = []
    while not inbox.received.empty() or len(mailed) < 4:
        mailed.append(inbox.next_message())
    assert sorted(m.rcpt_tos[0] for m in mailed) == sorted([owner.email, watcher.email] * 2)
    payloads = [verified(hook.json()["secret"], request) for request in delivered]
    assert sorted(p["data"]["threshold"] for p in payloads) == [50, 80]
    assert {p["type"] for p in payloads} == {"budget.alert"}


def test_a_hard_budget_at_its_limit_pauses_its_agents_and_resumes_them_next_window(
    hub: Hub, people: People, org: IssuedKey
) -> None:
    owner = people.add(Role.OWNER)
    budget_id = create(hub, owner.headers, limit_usd="1", auto_pause=True, auto_resume=True)[
        "budget"
    ]["id"]
    run = now_run()
    send(hub, org, run, *calls(run, 400_000))  # $1: 100%
    send(hub, org, run, *calls(run, 40_000))  # past it: paused once only
    served = ControlSet.model_validate_json(
        hub.client.get("/api/v1/controls", headers=bearer(org.key)).content
    )
    assert isinstance(hub.runner, RecordingRunner)
    [resume] = [n for n in hub.runner.dispatched if n.task_name == BUDGET_RESUME]
    entries = audit_entries(hub.client, owner.headers, action="control.set")

    [control] = served.controls
    assert (control.scope.kind, control.scope.value, control.state) == ("agent", "triage", "paused")
    assert control.actor == "system"
    assert [entry["actor_type"] for entry in entries] == ["system"]
    window = state(hub, owner.headers, budget_id)
    assert resume.not_before == window.window_end

    hub.enqueue(BUDGET_RESUME, resume.payload)  # the window ended: the notice is due
    hub.settle()
    after = ControlSet.model_validate_json(
        hub.client.get("/api/v1/controls", headers=bearer(org.key)).content
    )
    assert after.controls == ()


def test_a_budget_change_is_pushed_on_the_orgs_stream(
    settings: Settings, people: People, org: IssuedKey
) -> None:
    owner = people.add(Role.OWNER)
    app = create_app(dataclasses.replace(settings, stream_max_age=600.0))
    with serving(app) as url, listening(url, org.key) as stream:
        before = stream.wait_for(last_of("budgets"), "the budgets snapshot")
        made = httpx.post(f"{url}/api/v1/budgets", json=budget_body(), headers=owner.headers)
        assert made.status_code == 201, made.text
        pushed = stream.wait_for(
            lambda events: next(
                (e for e in events if e.event == "budgets" and e.id != before.id), None
            ),
            "the budgets event after the change",
        )

    assert BudgetSet.model_validate_json(before.data).budgets == ()
    [budget] = BudgetSet.model_validate_json(pushed.data).budgets
    assert str(budget.id) == made.json()["budget"]["id"]


def test_charged_spend_passes_the_budgets_figures_on_the_orgs_stream(
    settings: Settings, people: People, org: IssuedKey
) -> None:
    owner = people.add(Role.OWNER)
    app = create_app(dataclasses.replace(settings, stream_max_age=600.0))
    with serving(app) as url, listening(url, org.key) as stream:
        stream.wait_for(last_of("budgets"), "the budgets snapshot")
        made = httpx.post(f"{url}/api/v1/budgets", json=budget_body(), headers=owner.headers)
        assert made.status_code == 201, made.text
        run = now_run()
        sent = httpx.post(
            f"{url}/api/v1/ingest/batch",
            json=batch(run, *calls(run, 400_000)),
            headers=bearer(org.key),
        )
        assert sent.status_code == 200, sent.text
        charged = stream.wait_for(last_of("budget_charged"), "the budget_charged event")

    figures = BudgetState.model_validate_json(charged.data)
    assert str(figures.budget_id) == made.json()["budget"]["id"]
    assert figures.spent_usd == 400_000 * GPT_INPUT


def test_a_reset_writes_the_windows_spend_off_with_an_entry_audited_and_notified(
    hub: Hub, people: People, org: IssuedKey, migrated_url: str
) -> None:
    owner = people.add(Role.OWNER)
    budget_id = create(hub, owner.headers)["budget"]["id"]
    run = now_run()
    send(hub, org, run, *calls(run, 800_000))  # $2
    reset = hub.client.post(
        f"/api/v1/budgets/{budget_id}/reset", json={"reason": "refund"}, headers=owner.headers
    )
    send(hub, org, run, *calls(run, 400_000))  # $1 after it
    hub.settle()
    [entry] = audit_entries(hub.client, owner.headers, action="budget.reset")

    assert reset.status_code == 200, reset.text
    assert Decimal(reset.json()["spent_usd"]) == 0
    assert state(hub, owner.headers, budget_id).spent_usd == 1
    assert sorted(
        Decimal(row["amount_usd"]) for row in stored(migrated_url, BudgetLedgerEntry)
    ) == [
        -2,
        1,
        2,
    ]
    assert (entry["before"]["spent_usd"], entry["after"]["reason"]) == ("2", "refund")
    titles = [item["title"] for item in notifications(hub.client, owner)]
    assert "Budget triage daily reset" in titles


def test_a_budget_limiting_tokens_grants_tokens_up_to_its_limit_too(
    hub: Hub, people: People, org: IssuedKey
) -> None:
    owner = people.add(Role.OWNER)
    budget_id = create(hub, owner.headers, limit_tokens=1_000)["budget"]["id"]
    first = Lease.model_validate_json(ask(hub, org, budget_id, "1", tokens=600).content)
    untouched = Lease.model_validate_json(ask(hub, org, budget_id, "1").content)
    second = Lease.model_validate_json(ask(hub, org, budget_id, "1", tokens=600).content)
    none_left = ask(hub, org, budget_id, "1", tokens=1)

    assert (first.granted_tokens, second.granted_tokens, untouched.granted_tokens) == (
        600,
        400,
        None,
    )
    assert_problem(none_left, 409, "budget_exhausted")


def test_more_tokens_on_a_lease_grow_its_tokens_only_as_far_as_the_budget_has_room(
    hub: Hub, people: People, org: IssuedKey
) -> None:
    owner = people.add(Role.OWNER)
    budget_id = create(hub, owner.headers, limit_tokens=1_000)["budget"]["id"]
    first = Lease.model_validate_json(ask(hub, org, budget_id, "1", tokens=300).content)
    Lease.model_validate_json(ask(hub, org, budget_id, "1", tokens=500).content)
    grown = report(hub, org, str(first.id), spent_usd="0", spent_tokens=100, more_tokens=150)
    capped = report(hub, org, str(first.id), spent_usd="0", more_tokens=1_000)
    none_left = report(hub, org, str(first.id), spent_usd="0", more_tokens=1)

    assert grown.granted_tokens == 450
    assert capped.granted_tokens == 500, "the other lease's 500 tokens are not given twice"
    assert none_left.granted_tokens == 500
    assert none_left.granted_usd == first.granted_usd, "no USD was asked for"
