"""Retention: an org's raw runs, spans and search documents older than its ``retention_days``
go, in small batches, while ingest keeps running, and then those runs' rollup contributions;
newer ones, another org's, the rollups, the budget ledger and the org's prices stay. On SQLite
and PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import uuid
from decimal import Decimal

import httpx
from click.testing import CliRunner
from sqlalchemy import select

from agentops_server import Settings
from agentops_server.cli import main
from agentops_server.db.engine import create_async_db_engine
from agentops_server.db.models import BudgetLedgerEntry, ModelPriceRow, RollupContribution
from agentops_server.security.permissions import Role
from agentops_server.services.analytics.rollups import day_of, hour_of
from agentops_server.services.identity.api_keys import IssuedKey
from agentops_server.services.telemetry.retention import Purged, purge
from tests.server.api import Client, assert_problem, bearer
from tests.server.conftest import make_org
from tests.server.database import count, db_id, direct_session, execute
from tests.server.derived import hub_with
from tests.server.ingest_events import INGEST, batch, rows, run_event, span_event
from tests.server.principals import People, Person
from tests.server.servers import wait_until
from tests.server.test_analytics_rollups import recomputed, send, stored_rollups

NOW = dt.datetime.now(dt.UTC)


def aged(days: float, **fields: object) -> dict[str, object]:
    """A finished run that started ``days`` days ago."""
    start = NOW - dt.timedelta(days=days)
    return (
        run_event(
            started_at=start.isoformat(), ended_at=(start + dt.timedelta(seconds=1)).isoformat()
        )
        | fields
    )


def span_of(run: dict[str, object], **fields: object) -> dict[str, object]:
    return span_event(run, started_at=run["started_at"], ended_at=run["ended_at"], **fields)


def ingest(client: Client, key: str, *events: dict[str, object]) -> None:
    response = client.post(INGEST, json=batch(*events), headers=bearer(key))
    assert response.status_code == 200, response.text


def test_the_retention_job_deletes_what_is_older_than_each_orgs_retention_only(
    client: Client, org: IssuedKey, migrated_url: str
) -> None:
    other = make_org(migrated_url, "globex")
    old, recent = aged(40, name="old"), aged(2, name="recent")
    theirs = aged(40, name="theirs")
    ingest(client, org.key, old, recent, span_of(old), span_of(old), span_of(recent))
    ingest(client, other.key, theirs, span_of(theirs))
    execute(
        migrated_url,
        "UPDATE orgs SET retention_days = 90 WHERE id = :org",
        org=db_id(migrated_url, other.org_id),
    )
    with direct_session(migrated_url) as session:
        session.add(_ledger_entry(org.org_id, uuid.UUID(str(old["id"]))))
        session.add(_price(org.org_id))
        session.commit()

    result = CliRunner().invoke(main, ["jobs", "retention", "--database-url", migrated_url])

    assert result.exit_code == 0, result.output
    assert "acme: 1 runs, 2 spans, 3 search documents, " in result.output
    assert [run["name"] for run in rows(migrated_url, "runs", org.org_id)] == ["recent"]
    assert len(rows(migrated_url, "spans", org.org_id)) == 1
    assert [run["name"] for run in rows(migrated_url, "runs", other.org_id)] == ["theirs"]
    assert count(migrated_url, BudgetLedgerEntry) == 1
    assert count(migrated_url, ModelPriceRow) == 1
    searched = client.get("/api/v1/runs", params={"q": "because"}, headers=bearer(org.key))
    assert [run["name"] for run in searched.json()["items"]] == ["recent"]


def test_ingest_keeps_running_while_retention_deletes_in_small_batches(
    hub_url: str, org: IssuedKey, migrated_url: str
) -> None:
    old_runs = [aged(60, name=f"old-{index}") for index in range(40)]
    events = [event for run in old_runs for event in (run, *(span_of(run) for _ in range(10)))]
    with httpx.Client(base_url=hub_url, headers=bearer(org.key), timeout=30) as http:
        assert http.post(INGEST, json=batch(*events)).status_code == 200
        stored: list[str] = []
        failures: list[str] = []
        stop = threading.Event()

        def keep_ingesting() -> None:
            while not stop.is_set():
                run = aged(0, name=f"new-{len(stored)}")
                response = http.post(INGEST, json=batch(run, span_of(run)))
                if response.status_code == 200:
                    stored.append(str(run["id"]))
                else:
                    failures.append(response.text)

        writer = threading.Thread(target=keep_ingesting)
        writer.start()
        try:
            assert wait_until(lambda: len(stored) >= 2, 30), "ingest did not start"
            purged = asyncio.run(_purge(migrated_url, org.org_id, batch=25))
            seen_during = len(stored)
            assert wait_until(lambda: len(stored) >= seen_during + 2, 30), "ingest stalled"
        finally:
            stop.set()
            writer.join(30)

    assert failures == []
    assert (purged.runs, purged.spans, purged.documents) == (40, 400, 440)
    kept = {str(run["id"]) for run in rows(migrated_url, "runs", org.org_id)}
    assert kept == set(stored)


def test_retention_deletes_its_runs_rollup_contributions_and_the_rollups_keep_counting_them(
    settings: Settings, org: IssuedKey, migrated_url: str
) -> None:
    old, recent = aged(40, name="old"), aged(2, name="recent")
    old_start = dt.datetime.fromisoformat(str(old["started_at"]))
    with hub_with(settings) as hub:
        send(hub, org.key, old, span_of(old), span_of(old), recent, span_of(recent))
    rolled = stored_rollups(migrated_url, org.org_id)
    assert rolled == recomputed(migrated_url, org.org_id)
    assert contributions(migrated_url) == {str(old["id"]), str(recent["id"])}

    result = CliRunner().invoke(main, ["jobs", "retention", "--database-url", migrated_url])

    assert result.exit_code == 0, result.output
    # (On PostgreSQL the old day's span partition is dropped whole before the org's purge.)
    assert "3 search documents, 1 rollup contributions deleted" in result.output
    assert contributions(migrated_url) == {str(recent["id"])}
    # The rollups are aggregates and stay: the old run's hour and day still count it and its
    # spans, which the raw rows no longer hold.
    assert stored_rollups(migrated_url, org.org_id) == rolled
    for grain, start in (("hour", hour_of(old_start)), ("day", day_of(old_start))):
        assert rolled[(grain, "org", "", start)]["runs"] == 1
        assert rolled[(grain, "org", "", start)]["spans"] == 2
    assert rolled != recomputed(migrated_url, org.org_id)

    # A rebuild of the whole range rebuilds only the hour whose runs are kept.
    assert "1 hours rolled up" in rebuild(migrated_url, old_start, NOW + dt.timedelta(hours=1))
    assert stored_rollups(migrated_url, org.org_id) == rolled


def test_a_rebuild_leaves_an_hour_as_it_is_once_retention_deleted_one_of_its_runs(
    settings: Settings, org: IssuedKey, migrated_url: str
) -> None:
    first, second = aged(40, name="first"), aged(40, name="second")
    with hub_with(settings) as hub:
        send(hub, org.key, first, span_of(first), second, span_of(second))
    rolled = stored_rollups(migrated_url, org.org_id)
    # Retention stopped between the runs and their contributions, one contribution deleted.
    for table in ("spans", "run_search", "runs"):
        execute(
            migrated_url,
            f"DELETE FROM {table} WHERE org_id = :org",
            org=db_id(migrated_url, org.org_id),
        )
    execute(
        migrated_url,
        "DELETE FROM rollup_contributions WHERE run_id = :run",
        run=db_id(migrated_url, str(first["id"])),
    )

    output = rebuild(migrated_url, NOW - dt.timedelta(days=41), NOW)

    assert "0 hours rolled up" in output
    assert stored_rollups(migrated_url, org.org_id) == rolled
    assert {row["runs"] for key, row in rolled.items() if key[1] == "org"} == {2}


def test_owners_and_admins_set_the_retention_others_may_not(
    client: Client, owner: Person, admin: Person, people: People
) -> None:
    response = client.patch("/api/v1/org", json={"retention_days": 7}, headers=owner.headers)
    assert response.status_code == 200, response.text
    assert response.json()["retention_days"] == 7
    response = client.patch("/api/v1/org", json={"retention_days": 90}, headers=admin.headers)
    assert response.json()["retention_days"] == 90
    member = people.add(Role.MEMBER, email="mo@acme.example")
    response = client.patch("/api/v1/org", json={"retention_days": 1}, headers=member.headers)
    assert_problem(response, 403, "permission_denied")
    for days in (0, 100_000):
        response = client.patch("/api/v1/org", json={"retention_days": days}, headers=owner.headers)
        assert_problem(response, 400, "invalid_retention")
    assert client.get("/api/v1/org", headers=owner.headers).json()["retention_days"] == 90


def contributions(url: str) -> set[str]:
    """The ids of the runs that have a stored rollup contribution."""
    with direct_session(url) as session:
        return {str(run_id) for run_id in session.scalars(select(RollupContribution.run_id))}


def rebuild(url: str, start: dt.datetime, end: dt.datetime) -> str:
    """What ``agentops-hub analytics rebuild`` of acme's ``[start, end)`` prints."""
    result = CliRunner().invoke(
        main,
        [
            "analytics",
            "rebuild",
            "--database-url",
            url,
            "--org",
            "acme",
            "--from",
            start.strftime("%Y-%m-%dT%H:00:00"),
            "--to",
            end.strftime("%Y-%m-%dT%H:00:00"),
        ],
    )
    assert result.exit_code == 0, result.output
    return result.output


async def _purge(url: str, org_id: uuid.UUID, *, batch: int) -> Purged:
    engine = create_async_db_engine(url, tenant_isolation=True)
    try:
        return await purge(engine, org_id, days=30, batch=batch)
    finally:
        await engine.dispose()


def _ledger_entry(org_id: uuid.UUID, run_id: uuid.UUID) -> BudgetLedgerEntry:
    return BudgetLedgerEntry(
        org_id=org_id,
        id=uuid.uuid4(),
        budget_id=uuid.uuid4(),
        window_start=NOW - dt.timedelta(days=40),
        amount_usd=Decimal("0.5"),
        tokens=10,
        span_id=uuid.uuid4(),
        run_id=run_id,
        at=NOW - dt.timedelta(days=40),
    )


def _price(org_id: uuid.UUID) -> ModelPriceRow:
    return ModelPriceRow(
        org_id=org_id, model="house-model", input=Decimal("1"), output=Decimal("2")
    )
