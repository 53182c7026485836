"""Spans partitioned by day on PostgreSQL (migration 0012, docs/decisions/0036-span-partitions.md):
the migration keeps every span, a re-sent span is still stored once, rows the default partition
caught are split into their day, and retention drops the days no org keeps (rollups and the
ledger stay, a shorter-retention org's rows in kept days go in batches) while ingest keeps going.
Where the behaviour is not PostgreSQL's own, SQLite is checked to give the same rows."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import time
import uuid
from typing import Any

import httpx
import pytest
from alembic import command
from click.testing import CliRunner

from agentops_server.backends.derived_work import InProcessRunner
from agentops_server.cli import main
from agentops_server.db.engine import create_async_db_engine
from agentops_server.db.migrate import alembic_config, upgrade
from agentops_server.db.models import BudgetLedgerEntry
from agentops_server.db.partitions import partition_name
from agentops_server.services.identity.api_keys import IssuedKey
from agentops_server.services.telemetry.partitions import (
    AHEAD,
    PARTITIONS,
    drop_expired,
    prepare,
)
from agentops_server.services.telemetry.partitions import register as register_partitions
from agentops_server.services.telemetry.retention import purge
from tests.server.api import Client, bearer
from tests.server.conftest import make_org, postgresql_schema
from tests.server.database import count, db_id, direct_session, execute, rows, scalar
from tests.server.ingest_events import INGEST, batch, run_event, span_event, started
from tests.server.servers import wait_until
from tests.server.test_retention import _ledger_entry

postgresql_only = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
TODAY = dt.datetime.now(dt.UTC).date()


def day_run(days_ago: int, **fields: Any) -> dict[str, Any]:
    """A finished run that started at noon UTC ``days_ago`` days ago (negative: ahead)."""
    start = dt.datetime.combine(TODAY - dt.timedelta(days=days_ago), dt.time(12), dt.UTC)
    end = start + dt.timedelta(seconds=1)
    return run_event(started_at=start.isoformat(), ended_at=end.isoformat()) | fields


def span_of(run: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return span_event(run, started_at=run["started_at"], ended_at=run["ended_at"], **fields)


def ingest(client: Client, key: str, *events: dict[str, Any]) -> dict[str, Any]:
    response = client.post(INGEST, json=batch(*events), headers=bearer(key))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def where_spans_are(url: str) -> dict[str, str]:
    """Each span's name and the partition that holds it."""
    found = rows(url, "SELECT name, tableoid::regclass::text FROM spans")
    return {str(name): str(partition) for name, partition in found}


def span_names(url: str, org_id: uuid.UUID) -> set[str]:
    found = rows(url, "SELECT name FROM spans WHERE org_id = :org", org=db_id(url, org_id))
    return {name for (name,) in found}


def test_the_migration_moves_every_span_into_the_partition_of_its_day() -> None:
    with postgresql_schema() as url:
        upgrade(url, "0011")
        org = make_org(url, "acme")
        days = {"ancient": 400, "recent": 3, "today": 0, "ahead": -2}
        for name, days_ago in days.items():
            _insert_span(url, org.org_id, name, day_run(days_ago)["started_at"])
        before = rows(url, "SELECT org_id, id, started_at, name, status FROM spans ORDER BY id")

        upgrade(url)

        after = rows(url, "SELECT org_id, id, started_at, name, status FROM spans ORDER BY id")
        assert after == before
        assert where_spans_are(url) == {
            name: partition_name(TODAY - dt.timedelta(days=days_ago))
            for name, days_ago in days.items()
        }
        assert scalar(url, "SELECT count(*) FROM spans_default") == 0
        key = rows(
            url,
            "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
            "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = 'spans'::regclass AND i.indisprimary",
        )
        assert {name for (name,) in key} == {"org_id", "id", "started_at"}
        indexes = {
            name
            for (name,) in rows(url, "SELECT indexname FROM pg_indexes WHERE tablename = 'spans'")
        }
        assert indexes == {
            "pk_spans",
            "ix_spans_org_id_run_id_started_at",
            "ix_spans_org_id_started_at",
            "ix_spans_org_id_model_run_id",
            "ix_spans_org_id_blocked_by_run_id",
        }
        secured = rows(
            url,
            "SELECT relrowsecurity, relforcerowsecurity FROM pg_class "
            "WHERE oid = 'spans'::regclass",
        )
        assert secured == [(True, True)]

        command.downgrade(alembic_config(url), "0011")  # and back: one plain table, every span
        assert (
            rows(url, "SELECT org_id, id, started_at, name, status FROM spans ORDER BY id")
            == before
        )
        assert scalar(url, "SELECT relkind FROM pg_class WHERE oid = 'spans'::regclass") == "r"


def test_a_resent_span_is_stored_once(client: Client, org: IssuedKey, migrated_url: str) -> None:
    run = day_run(0)
    span = span_of(run, name="resent")
    opened = span | {"status": "running", "ended_at": None, "output": None}
    first = ingest(client, org.key, started(run), opened)
    final = ingest(client, org.key, run, span)
    again = ingest(client, org.key, run, span, span)

    assert (first["accepted"], final["accepted"], again["accepted"]) == (2, 2, 0)
    assert again["duplicates"] == 3
    stored = rows(migrated_url, "SELECT name, status FROM spans")
    assert [tuple(row) for row in stored] == [("resent", "ok")]
    if migrated_url.startswith("postgresql"):
        assert where_spans_are(migrated_url) == {"resent": partition_name(TODAY)}


@postgresql_only
def test_rows_the_default_partition_caught_are_split_out_into_their_day(
    client: Client, org: IssuedKey, migrated_url: str
) -> None:
    future, past = day_run(-(AHEAD + 20)), day_run(20)
    future_span = span_of(future, name="future")
    ingest(client, org.key, future, future_span, past, span_of(past, name="past"))
    assert set(where_spans_are(migrated_url).values()) == {"spans_default"}

    result = CliRunner().invoke(main, ["jobs", "partitions", "--database-url", migrated_url])

    assert result.exit_code == 0, result.output
    assert "2 split out of the default" in result.output
    assert where_spans_are(migrated_url) == {
        "future": partition_name(TODAY + dt.timedelta(days=AHEAD + 20)),
        "past": partition_name(TODAY - dt.timedelta(days=20)),
    }
    assert scalar(migrated_url, "SELECT count(*) FROM spans_default") == 0
    detail = client.get(f"/api/v1/runs/{future['id']}/spans", headers=bearer(org.key))
    assert [span["name"] for span in detail.json()["items"]] == ["future"]
    again = ingest(client, org.key, future_span)
    assert again["duplicates"] == 1  # the split row still dedupes in its new partition
    ahead = [partition_name(TODAY + dt.timedelta(days=offset)) for offset in range(AHEAD + 1)]
    made = {
        name
        for (name,) in rows(
            migrated_url, "SELECT relname FROM pg_class WHERE relname LIKE 'spans_p%'"
        )
    }
    assert set(ahead) <= made


def test_retention_drops_the_days_no_org_keeps_and_deletes_the_rest_in_batches(
    client: Client, org: IssuedKey, migrated_url: str
) -> None:
    brief = make_org(migrated_url, "globex")
    execute(
        migrated_url,
        "UPDATE orgs SET retention_days = 10 WHERE id = :org",
        org=db_id(migrated_url, brief.org_id),
    )
    for key in (org, brief):
        for days_ago, name in ((45, "old"), (20, "middle"), (1, "new")):
            run = day_run(days_ago, name=name)
            ingest(client, key.key, run, span_of(run, name=name))
    with direct_session(migrated_url) as session:
        session.add(_ledger_entry(org.org_id, uuid.uuid4()))
        session.commit()
    assert wait_until(lambda: _rolled_up(migrated_url) == (6, 6), 20), "never rolled up"
    rollups = rows(migrated_url, "SELECT * FROM analytics_rollups ORDER BY 1, 2, 3, 4")
    postgresql = migrated_url.startswith("postgresql")

    result = CliRunner().invoke(main, ["jobs", "retention", "--database-url", migrated_url])

    assert result.exit_code == 0, result.output
    assert span_names(migrated_url, org.org_id) == {"middle", "new"}
    assert span_names(migrated_url, brief.org_id) == {"new"}
    assert {
        row[0]
        for row in rows(
            migrated_url,
            "SELECT name FROM runs WHERE org_id = :org",
            org=db_id(migrated_url, brief.org_id),
        )
    } == {"new"}
    assert rows(migrated_url, "SELECT * FROM analytics_rollups ORDER BY 1, 2, 3, 4") == rollups
    assert count(migrated_url, BudgetLedgerEntry) == 1
    if postgresql:
        assert "1 dropped" in result.output  # the day 45 days ago, whole
        assert "acme: 1 runs, 0 spans" in result.output  # its old span went with the day
        assert "globex: 2 runs, 1 spans" in result.output  # its middle span: a kept day
        tables = {
            name
            for (name,) in rows(
                migrated_url, "SELECT relname FROM pg_class WHERE relname LIKE 'spans_p%'"
            )
        }
        assert partition_name(TODAY - dt.timedelta(days=45)) not in tables
        assert partition_name(TODAY - dt.timedelta(days=20)) in tables


@postgresql_only
def test_ingest_keeps_going_while_retention_drops_partitions_and_deletes_rows(
    hub_url: str, org: IssuedKey, migrated_url: str
) -> None:
    old_runs = [day_run(60, name=f"old-{index}") for index in range(20)]
    events = [event for run in old_runs for event in (run, *(span_of(run) for _ in range(10)))]
    asyncio.run(_upkeep(migrated_url))
    with httpx.Client(base_url=hub_url, headers=bearer(org.key), timeout=30) as http:
        assert http.post(INGEST, json=batch(*events)).status_code == 200
        asyncio.run(_upkeep(migrated_url))  # the old day in a partition of its own
        stored: list[str] = []
        slowest: list[float] = [0.0]
        failures: list[str] = []
        stop = threading.Event()

        def keep_ingesting() -> None:
            while not stop.is_set():
                run = day_run(0, name=f"new-{len(stored)}")
                began = time.monotonic()
                response = http.post(INGEST, json=batch(run, span_of(run)))
                slowest[0] = max(slowest[0], time.monotonic() - began)
                if response.status_code == 200:
                    stored.append(str(run["id"]))
                else:
                    failures.append(response.text)

        writer = threading.Thread(target=keep_ingesting)
        writer.start()
        try:
            assert wait_until(lambda: len(stored) >= 2, 30), "ingest did not start"
            dropped, purged = asyncio.run(_retention(migrated_url, org.org_id))
            seen_during = len(stored)
            assert wait_until(lambda: len(stored) >= seen_during + 2, 30), "ingest stalled"
        finally:
            stop.set()
            writer.join(30)

    assert failures == []
    assert slowest[0] < 5.0
    assert dropped == (partition_name(TODAY - dt.timedelta(days=60)),)
    assert (purged.runs, purged.spans) == (20, 0)  # the spans went with their day
    kept = {str(run_id) for (run_id,) in rows(migrated_url, "SELECT id FROM runs")}
    assert kept == set(stored)


def test_the_partitions_task_of_derived_work_splits_and_prepares() -> None:
    with postgresql_schema() as url:
        upgrade(url)
        org = make_org(url, "acme")
        _insert_span(url, org.org_id, "far", day_run(-100)["started_at"])

        asyncio.run(_run_partitions_task(url))

        assert where_spans_are(url) == {"far": partition_name(TODAY + dt.timedelta(days=100))}


async def _run_partitions_task(url: str) -> None:
    runner = InProcessRunner()
    register_partitions(runner, url)
    await runner.start()
    try:
        await runner.enqueue(PARTITIONS, {})
    finally:
        await runner.close()  # finishes what is queued
    assert list(runner.failures) == []


def _insert_span(url: str, org_id: uuid.UUID, name: str, started_at: str) -> None:
    execute(
        url,
        "INSERT INTO spans (org_id, id, run_id, kind, name, status, started_at, tags, "
        "attributes, events) VALUES (:org, :id, :run, 'tool', :name, 'ok', :at, '[]', '{}', '[]')",
        org=org_id,
        id=uuid.uuid4(),
        run=uuid.uuid4(),
        name=name,
        at=started_at,
    )


def _rolled_up(url: str) -> tuple[int, int]:
    """The fewest runs and spans any one dimension's daily rollups count."""
    found = rows(
        url,
        "SELECT sum(runs), sum(spans) FROM analytics_rollups WHERE grain = 'day' "
        "GROUP BY dimension",
    )
    return (min(r for r, _ in found), min(s for _, s in found)) if found else (0, 0)


async def _upkeep(url: str) -> None:
    engine = create_async_db_engine(url)
    try:
        await prepare(engine)
    finally:
        await engine.dispose()


async def _retention(url: str, org_id: uuid.UUID) -> tuple[tuple[str, ...], Any]:
    owner = create_async_db_engine(url)
    app = create_async_db_engine(url, tenant_isolation=True)
    try:
        dropped = (await drop_expired(owner)).dropped
        return dropped, await purge(app, org_id, days=30, batch=25)
    finally:
        await owner.dispose()
        await app.dispose()
