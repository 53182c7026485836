"""The analytics APIs and the period report: what they answer from rollups, how they refuse a
bad query, and the agent stats cache that the next ingest makes stale."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from litestar.stores.memory import MemoryStore

from agentops_server import Settings
from agentops_server.backends.stats_cache import StatsCache, create_stats_cache
from agentops_server.services.analytics.trends import AgentStats
from agentops_server.services.identity.api_keys import IssuedKey
from tests.server.api import assert_problem, bearer
from tests.server.database import db_id, execute
from tests.server.derived import Hub, hub_with
from tests.server.ingest_events import INGEST, batch, run_event, span_event
from tests.server.principals import Person

NOW = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
"""The start of this hour: the tests' runs start in it (or in one before it)."""
REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
def hub(settings: Settings) -> Iterator[Hub]:
    with hub_with(settings) as running:
        yield running


@pytest.fixture
def priced(hub: Hub, owner: Person) -> Hub:
    """The hub, where ``house-model`` costs $1 per million input and $2 per million output
    tokens."""
    body = {"model": "house-model", "input": "1", "output": "2"}
    response = hub.client.post("/api/v1/pricing/overrides", json=body, headers=owner.headers)
    assert response.status_code == 201, response.text
    return hub


def a_run(
    agent: str, status: str = "ok", *, at: dt.datetime = NOW, seconds: float = 2, tokens: int = 0
) -> list[dict[str, Any]]:
    """A finished run of ``agent`` and, with ``tokens``, one house-model call of that many input
    tokens (and half as many output tokens)."""
    run = run_event(
        agent=agent,
        status=status,
        started_at=at.isoformat(),
        ended_at=(at + dt.timedelta(seconds=seconds)).isoformat(),
    )
    if not tokens:
        return [run]
    usage = {"model": "house-model", "input_tokens": tokens, "output_tokens": tokens // 2}
    return [run, span_event(run, llm=usage, started_at=at.isoformat())]


def send(hub: Hub, key: IssuedKey, *runs: list[dict[str, Any]]) -> None:
    events = [event for run in runs for event in run]
    response = hub.client.post(INGEST, json=batch(*events), headers=bearer(key.key))
    assert response.status_code == 200, response.text
    hub.settle()


def get(hub: Hub, person: Person, path: str, **params: Any) -> dict[str, Any]:
    response = hub.client.get(path, params=params, headers=person.headers)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def test_the_summary_gives_the_ranges_kpis_and_their_change_from_the_range_before(
    priced: Hub, org: IssuedKey, owner: Person
) -> None:
    send(
        priced,
        org,
        a_run("triage", tokens=1_000_000, seconds=1),
        a_run("triage", "error", seconds=3),
        a_run("billing", tokens=500_000, seconds=10),
        a_run("triage", at=NOW - dt.timedelta(days=8)),
    )

    summary = get(priced, owner, "/api/v1/analytics/summary")

    current = summary["current"]
    assert (current["runs"], current["failures"], current["error_rate"]) == (3, 1, 0.333333)
    assert Decimal(current["cost"]) == Decimal("3")  # $1 + $1 for triage, $0.5 + $0.5 billing
    assert current["tokens"]["input"] == 1_500_000
    assert current["tokens"]["total"] == 2_250_000
    assert current["llm_calls"] == 2
    assert summary["active_agents"] == 2
    assert 1800 < current["latency"]["p50_ms"] < 3300  # the middle run: 3 s, within 9%
    assert 9000 < current["latency"]["p95_ms"] < 11000
    assert summary["previous"]["runs"] == 1
    assert summary["change"]["runs"] == 2.0
    assert summary["change"]["error_rate_points"] == 0.333333


def test_a_timeseries_has_every_bucket_of_the_range_for_each_key(
    hub: Hub, org: IssuedKey, owner: Person
) -> None:
    yesterday = NOW - dt.timedelta(days=1)
    send(
        hub,
        org,
        a_run("triage"),
        a_run("triage", "error", at=yesterday),
        a_run("billing", at=yesterday),
    )
    since = (NOW - dt.timedelta(days=2)).isoformat()

    daily = get(
        hub,
        owner,
        "/api/v1/analytics/timeseries",
        dimension="agent",
        granularity="day",
        **{"from": since},
    )
    hourly = get(hub, owner, "/api/v1/analytics/timeseries", granularity="hour", **{"from": since})

    assert [series["key"] for series in daily["series"]] == ["triage", "billing"]
    triage = daily["series"][0]["points"]
    assert len(triage) == 3  # the days of from, yesterday and today
    assert [point["runs"] for point in triage] == [0, 1, 1]
    assert [point["errors"] for point in triage] == [0, 1, 0]
    assert triage[1]["error_rate"] == 1.0
    points = hourly["series"][0]["points"]
    assert len(points) == 49  # 48 hours before this one, and this one
    assert sum(point["runs"] for point in points) == 3


def test_costs_break_down_by_model_and_agent_per_day_and_month(
    priced: Hub, org: IssuedKey, owner: Person
) -> None:
    send(priced, org, a_run("triage", tokens=2_000_000), a_run("billing", tokens=1_000_000))

    by_agent = get(priced, owner, "/api/v1/analytics/costs")
    by_model = get(priced, owner, "/api/v1/analytics/costs", group_by="model", granularity="month")

    assert [(g["key"], Decimal(g["cost"])) for g in by_agent["groups"]] == [
        ("triage", Decimal(4)),
        ("billing", Decimal(2)),
    ]
    assert by_agent["groups"][0]["share"] == pytest.approx(2 / 3, abs=1e-6)
    assert len(by_agent["points"]) in {30, 31}  # the 30 days to now, partial ends whole
    assert Decimal(by_agent["points"][-1]["cost"]) == Decimal(6)
    assert [g["key"] for g in by_model["groups"]] == ["house-model"]
    assert Decimal(by_model["cost"]) == Decimal(6)
    assert Decimal(by_model["points"][-1]["cost"]) == Decimal(6)


def test_an_agents_trends_and_stats_now_are_cached_until_its_orgs_next_ingest(
    hub: Hub, org: IssuedKey, owner: Person, migrated_url: str
) -> None:
    send(hub, org, a_run("triage", "error"))
    agents = get(hub, owner, "/api/v1/agents")["items"]
    agent_id = next(agent["id"] for agent in agents if agent["name"] == "triage")
    path = f"/api/v1/analytics/agents/{agent_id}/trends"

    first = get(hub, owner, path)
    execute(  # the rollups change behind the cache's back: it answers what it kept
        migrated_url,
        "UPDATE analytics_rollups SET runs = 99 WHERE org_id = :org",
        org=db_id(migrated_url, org.org_id),
    )
    cached = get(hub, owner, path)
    execute(  # put back: rollups change by differences, which the next ingest adds
        migrated_url,
        "UPDATE analytics_rollups SET runs = 1 WHERE org_id = :org",
        org=db_id(migrated_url, org.org_id),
    )
    send(hub, org, a_run("triage"))
    fresh = get(hub, owner, path)

    assert first["current"]["runs_today"] == 1
    assert first["current"]["error_rate_today"] == 1.0
    assert first["current"]["last_run_at"].startswith(NOW.strftime("%Y-%m-%dT%H"))
    assert first["trends"]["series"][0]["key"] == "triage"
    assert cached["current"] == first["current"]
    assert fresh["current"]["runs_today"] == 2
    assert fresh["current"]["error_rate_today"] == 0.5


def test_the_weeks_report_has_top_agents_budgets_and_incidents(
    priced: Hub, org: IssuedKey, owner: Person
) -> None:
    blocked = a_run("triage")
    blocked.append(span_event(blocked[0], kind="tool", status="blocked", llm=None))
    send(priced, org, a_run("triage", tokens=1_000_000), a_run("billing"), blocked)
    for state in ("paused", "killed"):
        body = {"scope": {"kind": "agent", "value": "triage"}, "state": state, "reason": "spend"}
        response = priced.client.post("/api/v1/controls", json=body, headers=owner.headers)
        assert response.status_code == 200, response.text
    budget = {
        "name": "triage daily",
        "scope": {"kind": "agent", "value": "triage"},
        "limit_usd": "10",
        "period": "daily",
    }
    response = priced.client.post("/api/v1/budgets", json=budget, headers=owner.headers)
    assert response.status_code == 201, response.text

    report = get(priced, owner, "/api/v1/reports/summary", period="week")

    assert report["totals"]["runs"] == 3
    assert report["success_rate"] == 1.0
    assert [agent["key"] for agent in report["top_agents_by_runs"]] == ["triage", "billing"]
    assert report["top_agents_by_cost"][0]["key"] == "triage"
    assert report["top_models_by_cost"][0]["key"] == "house-model"
    assert [budget["name"] for budget in report["budgets"]] == ["triage daily"]
    assert report["incidents"] == {
        "kills": 1,
        "pauses": 1,
        "blocked_calls": 1,
        "approvals_denied": 0,
    }
    assert dt.datetime.fromisoformat(report["start"]).weekday() == 0


@pytest.mark.parametrize(
    ("path", "params", "code"),
    [
        ("/api/v1/analytics/timeseries", {"granularity": "fortnight"}, "invalid_granularity"),
        ("/api/v1/analytics/timeseries", {"dimension": "planet"}, "invalid_dimension"),
        ("/api/v1/analytics/costs", {"group_by": "org"}, "invalid_dimension"),
        ("/api/v1/analytics/costs", {"granularity": "hour"}, "invalid_granularity"),
        (
            "/api/v1/analytics/summary",
            {"from": "2026-11-02T00:00:00Z", "to": "2026-11-01T00:00:00Z"},
            "invalid_range",
        ),
        (
            "/api/v1/analytics/timeseries",
            {"granularity": "hour", "from": "2026-01-01T00:00:00Z", "to": "2026-03-01T00:00:00Z"},
            "range_too_long",
        ),
        ("/api/v1/analytics/summary", {"from": "yesterday"}, "invalid_timestamp"),
        ("/api/v1/reports/summary", {"period": "decade"}, "invalid_period"),
        (f"/api/v1/analytics/agents/{uuid.UUID(int=7)}/trends", {}, "agent_not_found"),
        ("/api/v1/analytics/agents/not-an-id/trends", {}, "agent_not_found"),
    ],
)
def test_a_bad_query_is_refused_with_its_code(
    hub: Hub, owner: Person, path: str, params: dict[str, str], code: str
) -> None:
    response = hub.client.get(path, params=params, headers=owner.headers)
    assert_problem(response, 404 if code == "agent_not_found" else 400, code)


def test_every_refusal_code_is_declared_in_the_openapi_schema(hub: Hub) -> None:
    schema = hub.client.get("/schema/openapi.json").text
    for code in (
        "invalid_granularity",
        "invalid_dimension",
        "invalid_range",
        "range_too_long",
        "invalid_period",
        "agent_not_found",
    ):
        assert f"`{code}`" in schema, code


@pytest.mark.parametrize("redis_url", [None, REDIS_URL], ids=["in-process", "redis"])
def test_the_stats_cache_keys_answers_by_org_and_forgets_an_org_at_once(
    settings: Settings, redis_url: str | None
) -> None:
    async def scenario() -> None:
        cache = create_stats_cache(dataclasses.replace(settings, redis_url=redis_url))
        acme, globex = uuid.uuid4(), uuid.uuid4()
        computed: list[str] = []

        def stats(runs: int) -> Any:
            async def compute() -> AgentStats:
                computed.append(f"{runs}")
                return AgentStats(
                    agent="triage",
                    last_run_at=None,
                    runs_today=runs,
                    failures_today=0,
                    error_rate_today=0.0,
                    spend_today=Decimal("0.5"),
                )

            return compute

        try:
            first = await cache.get_or_compute(acme, "agent:triage", AgentStats, stats(1))
            again = await cache.get_or_compute(acme, "agent:triage", AgentStats, stats(2))
            other = await cache.get_or_compute(globex, "agent:triage", AgentStats, stats(3))
            await cache.forget(acme)
            after = await cache.get_or_compute(acme, "agent:triage", AgentStats, stats(4))
            kept = await cache.get_or_compute(globex, "agent:triage", AgentStats, stats(5))
        finally:
            await cache.close()
        assert [first.runs_today, again.runs_today, other.runs_today] == [1, 1, 3]
        assert [after.runs_today, kept.runs_today] == [4, 3]
        assert computed == ["1", "3", "4"]
        assert first.spend_today == Decimal("0.5")

    asyncio.run(scenario())


def test_an_unreachable_cache_store_computes_every_answer() -> None:
    class Unreachable(MemoryStore):
        async def get(self, key: str, renew_for: Any = None) -> bytes | None:
            raise ConnectionError("down")

    async def scenario() -> list[int]:
        cache = StatsCache(Unreachable())
        answers = []
        for runs in (1, 2):

            async def compute(runs: int = runs) -> AgentStats:
                return AgentStats(
                    agent="a",
                    last_run_at=None,
                    runs_today=runs,
                    failures_today=0,
                    error_rate_today=0.0,
                    spend_today=Decimal(0),
                )

            answers.append(
                (await cache.get_or_compute(uuid.uuid4(), "q", AgentStats, compute)).runs_today
            )
        return answers

    assert asyncio.run(scenario()) == [1, 2]


@pytest.mark.parametrize(
    ("path", "params"),
    [
        (
            "/api/v1/analytics/summary",
            {"from": "0001-01-01T00:00:00Z", "to": "0001-01-02T00:00:00Z"},
        ),
        (
            "/api/v1/analytics/summary",
            {"from": "9999-12-30T00:00:00Z", "to": "9999-12-31T23:30:00Z"},
        ),
        ("/api/v1/reports/summary", {"period": "month", "at": "9999-12-31T00:00:00Z"}),
        ("/api/v1/reports/summary", {"period": "week", "at": "9999-12-31T00:00:00Z"}),
    ],
)
def test_a_range_at_the_calendars_ends_is_refused_not_a_server_error(
    hub: Hub, owner: Person, path: str, params: dict[str, str]
) -> None:
    assert_problem(hub.client.get(path, params=params, headers=owner.headers), 400, "invalid_range")


def test_a_monthly_series_ending_in_the_calendars_last_month_stops_there(
    hub: Hub, owner: Person
) -> None:
    params = {"from": "9999-10-01T00:00:00Z", "to": "9999-12-30T00:00:00Z", "granularity": "month"}
    answer = get(hub, owner, "/api/v1/analytics/timeseries", **params)
    assert [point["start"][:7] for point in answer["series"][0]["points"]] == [
        "9999-10",
        "9999-11",
        "9999-12",
    ]
