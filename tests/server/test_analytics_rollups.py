"""Rollups: after any ingests, in any order, duplicated or not, rolled up in one go or commit by
commit (incrementally, run by run), the hourly and daily rollups are what the raw runs and spans
add up to (a recomputation here, span by span), on both databases.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from agentops_server import Settings
from agentops_server.cli import main
from agentops_server.db.engine import create_async_db_engine, open_session
from agentops_server.db.models import Agent, RollupRow, Run, Span
from agentops_server.db.tenancy import tenant
from agentops_server.services.analytics import histogram
from agentops_server.services.analytics.rollups import day_of, hour_of, incremental, roll_up_runs
from tests.server.api import bearer
from tests.server.conftest import make_org
from tests.server.database import db_id, direct_session, execute
from tests.server.derived import Hub, hub_with
from tests.server.ingest_events import INGEST, batch, run_event, span_event, started
from tests.server.principals import Person

BASE = dt.datetime(2026, 11, 2, 22, 0, tzinfo=dt.UTC)
"""Two hours before midnight: runs fall in two days and several hours."""

Row = tuple[str, str, str, dt.datetime]
"""(grain, dimension, key, bucket start)."""


@pytest.fixture
def hub(settings: Settings) -> Iterator[Hub]:
    with hub_with(settings) as running:
        yield running


@st.composite
def runs_with_spans(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Events of a few runs (some never finished) and their spans, in the order sent."""
    events: list[dict[str, Any]] = []
    for _ in range(draw(st.integers(1, 4))):
        start = BASE + dt.timedelta(
            minutes=draw(st.integers(0, 179)), seconds=draw(st.integers(0, 59))
        )
        run = run_event(
            agent=draw(st.sampled_from(["triage", "billing"])),
            environment=draw(st.sampled_from(["prod", "dev"])),
            status=draw(st.sampled_from(["ok", "error", "blocked"])),
            started_at=start.isoformat(),
            ended_at=(start + dt.timedelta(milliseconds=draw(st.integers(0, 90_000)))).isoformat(),
        )
        finished = draw(st.booleans())
        events.append(started(run))
        if finished:
            events.append(run)
        if draw(st.booleans()):  # restarted in another hour: a final state with a later end
            moved = start + dt.timedelta(hours=draw(st.integers(1, 3)))
            lasted = dt.timedelta(seconds=draw(st.integers(0, 60)))
            events.append(
                run
                | {
                    "started_at": moved.isoformat(),
                    "ended_at": (moved + lasted).isoformat(),
                    "status": draw(st.sampled_from(["ok", "error"])),
                }
            )
        for _ in range(draw(st.integers(0, 4))):
            kind = draw(st.sampled_from(["llm", "tool", "step"]))
            fields: dict[str, Any] = {
                "kind": kind,
                "status": draw(st.sampled_from(["ok", "error", "blocked"])),
            }
            if kind == "llm":
                fields["llm"] = {
                    "model": draw(st.sampled_from(["gpt-4o", "gpt-4o-mini", "house-model"])),
                    "provider": "openai",
                    "input_tokens": draw(st.integers(0, 5000)),
                    "output_tokens": draw(st.integers(0, 500)),
                }
            else:
                fields["llm"] = None
            events.append(span_event(run, **fields))
    return events


@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    events=runs_with_spans(),
    seed=st.integers(0, 2**32 - 1),
    batches=st.integers(1, 4),
    settle_each=st.booleans(),
)
def test_rollups_equal_a_recomputation_from_raw_spans_whatever_the_order_and_duplicates(
    hub: Hub,
    migrated_url: str,
    events: list[dict[str, Any]],
    seed: int,
    batches: int,
    settle_each: bool,
) -> None:
    key = make_org(migrated_url, f"rollups-{uuid.uuid4().hex[:8]}")
    shuffler = random.Random(seed)
    sent = [*events, *shuffler.sample(events, k=len(events) // 2)]  # duplicates
    shuffler.shuffle(sent)  # out of order: spans before their runs, ends before starts
    for part in range(batches):
        chunk = sent[part::batches]
        if chunk:
            response = hub.client.post(INGEST, json=batch(*chunk), headers=bearer(key.key))
            assert response.status_code == 200, response.text
        if settle_each:  # each batch rolled up before the next: changes applied incrementally
            hub.settle()
    hub.settle()
    rolled = stored_rollups(migrated_url, key.org_id)
    assert sum(row["runs"] for key, row in rolled.items() if key[:2] == ("day", "org")) == len(
        {event["id"] for event in events if event["type"] == "run"}
    )
    assert rolled == recomputed(migrated_url, key.org_id)


def test_a_span_arriving_after_its_run_was_rolled_up_is_counted_in_the_runs_hour(
    hub: Hub, migrated_url: str, org: Any
) -> None:
    run = run_event(started_at=BASE.isoformat())
    send(hub, org.key, run)
    send(hub, org.key, span_event(run, kind="tool", llm=None))
    rolled = stored_rollups(migrated_url, org.org_id)
    assert rolled[("hour", "org", "", BASE)]["tool_calls"] == 1
    assert rolled == recomputed(migrated_url, org.org_id)


def test_the_same_batch_sent_twice_changes_no_rollup(hub: Hub, migrated_url: str, org: Any) -> None:
    run = run_event(started_at=BASE.isoformat())
    payload = batch(run, span_event(run))
    for _ in range(2):
        response = hub.client.post(INGEST, json=payload, headers=bearer(org.key))
        assert response.status_code == 200, response.text
        hub.settle()
        rolled = stored_rollups(migrated_url, org.org_id)
        assert rolled[("day", "agent", "triage", day_of(BASE))]["runs"] == 1


def test_a_rollup_of_runs_whose_contribution_did_not_change_writes_no_rollup_row(
    hub: Hub, migrated_url: str, org: Any
) -> None:
    run = run_event(started_at=BASE.isoformat())
    send(hub, org.key, run, span_event(run))
    execute(  # changed behind the rollups' back: only a write would put it right
        migrated_url,
        "UPDATE analytics_rollups SET runs = 99 WHERE org_id = :org",
        org=db_id(migrated_url, org.org_id),
    )

    hours = roll_up(migrated_url, org.org_id, [uuid.UUID(run["id"])])

    assert hours == set()
    assert {row["runs"] for row in stored_rollups(migrated_url, org.org_id).values()} == {99}


def test_a_run_restarted_in_another_hour_leaves_its_old_hour_and_day(
    hub: Hub, migrated_url: str, org: Any
) -> None:
    run = run_event(
        started_at=BASE.isoformat(), ended_at=(BASE + dt.timedelta(seconds=1)).isoformat()
    )
    send(hub, org.key, run, span_event(run, kind="tool", llm=None))
    later = BASE + dt.timedelta(hours=2)  # the next day
    send(
        hub,
        org.key,
        run
        | {
            "started_at": later.isoformat(),
            "ended_at": (later + dt.timedelta(seconds=3)).isoformat(),
        },
    )

    rolled = stored_rollups(migrated_url, org.org_id)
    assert ("hour", "org", "", BASE) not in rolled
    assert ("day", "org", "", day_of(BASE)) not in rolled
    assert rolled[("hour", "org", "", later)]["tool_calls"] == 1
    assert rolled == recomputed(migrated_url, org.org_id)


def test_an_hour_rolled_up_before_contributions_existed_is_rebuilt_from_raw_rows_when_next_rolled(
    hub: Hub, migrated_url: str, org: Any
) -> None:
    first = run_event(started_at=BASE.isoformat())
    second = run_event(started_at=(BASE + dt.timedelta(minutes=10)).isoformat())
    send(hub, org.key, first, second)
    # What migration 0013 leaves of an hour: its rows, no contributions, not incremental.
    execute(migrated_url, "DELETE FROM rollup_contributions")
    execute(migrated_url, "UPDATE analytics_buckets SET incremental = false")

    send(hub, org.key, span_event(first, kind="tool", llm=None))

    rolled = stored_rollups(migrated_url, org.org_id)
    assert rolled[("hour", "org", "", BASE)]["runs"] == 2
    assert rolled[("day", "org", "", day_of(BASE))]["tool_calls"] == 1
    assert rolled == recomputed(migrated_url, org.org_id)


def test_the_cli_rebuilds_the_rollups_of_a_range(hub: Hub, migrated_url: str, org: Any) -> None:
    early, late = (
        run_event(started_at=BASE.isoformat()),
        run_event(agent="billing", started_at=(BASE + dt.timedelta(hours=3)).isoformat()),
    )
    send(hub, org.key, early, span_event(early), late)
    expected = stored_rollups(migrated_url, org.org_id)
    execute(migrated_url, "DELETE FROM analytics_rollups")

    result = CliRunner().invoke(
        main,
        [
            "analytics",
            "rebuild",
            "--database-url",
            migrated_url,
            "--org",
            "acme",
            "--from",
            f"{BASE.date()}",
            "--to",
            f"{BASE.date() + dt.timedelta(days=2)}",
        ],
    )

    assert result.exit_code == 0, result.output
    assert "2 hours rolled up" in result.output
    assert (
        stored_rollups(migrated_url, org.org_id) == expected == recomputed(migrated_url, org.org_id)
    )


def test_an_agent_that_changes_team_counts_under_its_new_one_for_every_run(
    hub: Hub, migrated_url: str, org: Any, owner: Person, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(incremental, "_PAGE", 1)  # its runs are read a page at a time
    first = run_event(started_at=BASE.isoformat())
    second = run_event(started_at=(BASE + dt.timedelta(hours=3)).isoformat())  # the next day
    send(hub, org.key, first, span_event(first), second)
    made = hub.client.post("/api/v1/teams", json={"name": "support"}, headers=owner.headers)
    assert made.status_code == 201, made.text
    team = made.json()["id"]
    [agent] = hub.client.get("/api/v1/agents", headers=owner.headers).json()["items"]

    moved = hub.client.patch(
        f"/api/v1/agents/{agent['id']}", json={"team_id": team}, headers=owner.headers
    )
    assert moved.status_code == 200, moved.text
    hub.settle()

    rolled = stored_rollups(migrated_url, org.org_id)
    assert {key for (_, dimension, key, _) in rolled if dimension == "team"} == {team}
    assert rolled == recomputed(migrated_url, org.org_id)

    deleted = hub.client.delete(f"/api/v1/teams/{team}", headers=owner.headers)  # left with none
    assert deleted.status_code == 204, deleted.text
    hub.settle()

    rolled = stored_rollups(migrated_url, org.org_id)
    assert {key for (_, dimension, key, _) in rolled if dimension == "team"} == {""}
    assert rolled == recomputed(migrated_url, org.org_id)


def send(hub: Hub, key: str, *events: dict[str, Any]) -> None:
    response = hub.client.post(INGEST, json=batch(*events), headers=bearer(key))
    assert response.status_code == 200, response.text
    hub.settle()


def roll_up(url: str, org_id: uuid.UUID, run_ids: list[uuid.UUID]) -> set[dt.datetime]:
    """Roll up ``run_ids`` as the rollup task does, outside any hub; the hours changed."""

    async def rolled() -> set[dt.datetime]:
        engine = create_async_db_engine(url, tenant_isolation=True)
        try:
            with tenant(org_id=org_id):
                async with open_session(engine) as session:
                    return await roll_up_runs(session, org_id, run_ids)
        finally:
            await engine.dispose()

    return asyncio.run(rolled())


# -- the two sides ----------------------------------------------------------------------------


def stored_rollups(url: str, org_id: uuid.UUID) -> dict[Row, dict[str, Any]]:
    """The org's rollup rows as stored."""
    with direct_session(url) as session:
        found = session.scalars(select(RollupRow).where(RollupRow.org_id == org_id)).all()
        return {
            (row.grain, row.dimension, row.key, _utc(row.bucket_start)): _figures(
                {column: getattr(row, column) for column in _COLUMNS}
            )
            for row in found
        }


def recomputed(url: str, org_id: uuid.UUID) -> dict[Row, dict[str, Any]]:
    """What the org's raw runs and spans add up to, span by span."""
    with direct_session(url) as session:
        runs = session.scalars(select(Run).where(Run.org_id == org_id)).all()
        spans = session.scalars(select(Span).where(Span.org_id == org_id)).all()
        teams = {
            agent.name: agent.team_id
            for agent in session.scalars(select(Agent).where(Agent.org_id == org_id))
        }
    of_run: dict[uuid.UUID, list[Span]] = {}
    for span in spans:
        of_run.setdefault(span.run_id, []).append(span)
    totals: dict[Row, dict[str, Any]] = {}
    for run in runs:
        started_at = _utc(run.started_at)
        team = teams.get(run.agent)
        keys = [
            ("org", ""),
            ("agent", run.agent),
            ("team", "" if team is None else str(team)),
            ("environment", run.environment),
        ]
        calls = [span for span in of_run.get(run.id, []) if _is_call(span)]
        models = {span.model or "" for span in calls}
        for grain, bucket in (("hour", hour_of(started_at)), ("day", day_of(started_at))):
            for dimension, key in keys:
                _count(totals, (grain, dimension, key, bucket), run, of_run.get(run.id, []))
            for model in models:
                chosen = [span for span in calls if (span.model or "") == model]
                _count(totals, (grain, "model", model, bucket), run, chosen)
    return {row: _figures(values) for row, values in totals.items()}


_COLUMNS = (
    "runs",
    "succeeded",
    "failures",
    "blocked_calls",
    "spans",
    "llm_calls",
    "tool_calls",
    "unpriced_calls",
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "latency_ms_sum",
    "cost",
    "latency",
    "last_run_at",
)
_TOKENS = (
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
)


def _count(totals: dict[Row, dict[str, Any]], row: Row, run: Run, spans: list[Span]) -> None:
    into = totals.setdefault(
        row, dict.fromkeys(_COLUMNS, 0) | {"cost": Decimal(0), "latency": {}, "last_run_at": None}
    )
    into["runs"] += 1
    into["succeeded"] += run.status == "ok"
    into["failures"] += run.status == "error"
    started_at = _utc(run.started_at)
    if run.ended_at is not None and run.status != "running":
        milliseconds = max((_utc(run.ended_at) - started_at).total_seconds() * 1000, 0.0)
        into["latency"] = histogram.add(into["latency"], [milliseconds])
        into["latency_ms_sum"] += round(milliseconds)
    into["last_run_at"] = max(into["last_run_at"] or started_at, started_at)
    for span in spans:
        into["spans"] += 1
        into["llm_calls"] += _is_call(span)
        into["tool_calls"] += span.kind == "tool"
        into["blocked_calls"] += span.status == "blocked"
        into["unpriced_calls"] += _is_call(span) and span.cost is None
        for name in _TOKENS:
            into[name] += getattr(span, name) or 0
        into["cost"] += Decimal(span.cost or 0)


def _figures(values: dict[str, Any]) -> dict[str, Any]:
    """Values as compared: costs to 8 places (SQLite keeps them as floating point), times UTC,
    histograms without empty buckets."""
    figures = dict(values)
    figures["cost"] = Decimal(figures["cost"] or 0).quantize(Decimal("1e-8"))
    figures["last_run_at"] = _utc(figures["last_run_at"]) if figures["last_run_at"] else None
    figures["latency"] = {key: int(n) for key, n in figures["latency"].items() if int(n)}
    return figures


def _is_call(span: Span) -> bool:
    return (
        span.kind == "llm"
        or span.model is not None
        or span.input_tokens is not None
        or span.output_tokens is not None
    )


def _utc(moment: dt.datetime) -> dt.datetime:
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


def test_with_rollups_off_ingest_stores_the_runs_and_makes_no_rollup(
    settings: Settings, migrated_url: str
) -> None:
    org = make_org(migrated_url, "no-rollups")
    with hub_with(settings, rollups=False) as off:
        run = run_event()
        send(off, org.key, run, span_event(run))
        off.settle()
        listed = off.client.get("/api/v1/runs", headers=bearer(org.key))
    assert [found["id"] for found in listed.json()["items"]] == [run["id"]]
    assert stored_rollups(migrated_url, org.org_id) == {}
