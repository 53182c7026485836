"""The hub schedules its own upkeep (docs/decisions/0037-scheduled-upkeep.md): the span
partitions at start and every few hours, every org's retention daily. In the hub process the
embedded runner keeps a timer per schedule between the app's start and shutdown; with the queue
on Redis, SAQ cron jobs in the workers hand each due time over once, however many workers run.
Schedules of every second (cron's sixth field) stand in for hours and days; the tests wait on
conditions with deadlines."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from agentops_server import Settings, create_app
from agentops_server.backends.derived_work import InProcessRunner, Schedule
from agentops_server.db.partitions import partition_name
from agentops_server.services.identity.api_keys import IssuedKey
from agentops_server.services.telemetry.partitions import AHEAD, PARTITIONS
from agentops_server.services.telemetry.retention import RETENTION_DUE
from tests.server import derived_tasks
from tests.server.api import Client
from tests.server.conftest import make_org
from tests.server.database import execute, scalar
from tests.server.ingest_events import rows
from tests.server.principals import SECRET_KEY
from tests.server.test_derived_work import wait_for
from tests.server.test_job_queue import worker_process
from tests.server.test_retention import aged, ingest, span_of

EVERY_SECOND = "* * * * * *"
NOT_DUE = "0 0 1 1 *"
"""Midnight on 1 January: not due while a test runs (only the run at start happens)."""
LAST_AHEAD = partition_name(dt.datetime.now(dt.UTC).date() + dt.timedelta(days=AHEAD))
"""The partition the upkeep makes ahead of time that a test drops first."""
SCHEDULE_TASKS = {f"agentops-schedule-{PARTITIONS}", f"agentops-schedule-{RETENTION_DUE}"}

postgresql_only = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
def queue_name() -> str:
    """A queue of this test's own on the shared Redis (its cron jobs are keyed in it)."""
    return f"test-{uuid.uuid4().hex}"


def upkeep_settings(database_url: str, **fields: Any) -> Settings:
    """A hub's settings: partitions at start only, retention every second (unless ``fields``
    say otherwise)."""
    return Settings(
        database_url=database_url,
        secret_key=SECRET_KEY,
        **{"upkeep_partitions": NOT_DUE, "upkeep_retention": EVERY_SECOND, **fields},
    )


def upkeep_environment(**variables: str) -> dict[str, str]:
    """A worker's environment for the same schedule as :func:`upkeep_settings`."""
    return {
        "AGENTOPS_UPKEEP": "true",
        "AGENTOPS_UPKEEP_PARTITIONS": NOT_DUE,
        "AGENTOPS_UPKEEP_RETENTION": EVERY_SECOND,
        **variables,
    }


def partition_exists(database_url: str, name: str) -> bool:
    return scalar(database_url, "SELECT to_regclass(:name)", name=name) is not None


def run_names(database_url: str, org: IssuedKey) -> list[str]:
    return sorted(run["name"] for run in rows(database_url, "runs", org.org_id))


def ingest_old_and_recent(client: Client, org: IssuedKey) -> None:
    """A run of 40 days ago (past the default 30 days' retention) and one of 2, with spans."""
    old, recent = aged(40, name="old"), aged(2, name="recent")
    ingest(client, org.key, old, span_of(old), recent, span_of(recent))


def schedule_timers() -> set[str]:
    """The names of the embedded runner's schedule timers still running on this loop."""
    return {
        task.get_name()
        for task in asyncio.all_tasks()
        if task.get_name().startswith("agentops-schedule-") and not task.done()
    }


def logged_upkeep(path: Path, notice: str) -> list[Mapping[str, Any]]:
    lines = [json.loads(line) for line in derived_tasks.lines(path)]
    return [line for line in lines if line["notice"] == notice]


async def until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    """Return once ``condition()`` holds, letting the loop run; fail at the deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "the condition never held"
        await asyncio.sleep(0.01)


async def test_the_embedded_runner_hands_a_schedule_over_at_start_and_at_each_due_time() -> None:
    runner = InProcessRunner()
    seen: list[str] = []

    async def tick(payload: Mapping[str, Any]) -> None:
        seen.append(payload["scheduled_at"])

    runner.register("test.tick", tick)
    runner.schedule(Schedule("test.tick", EVERY_SECOND, at_start=True))
    started = dt.datetime.now(dt.UTC)
    await runner.start()
    try:
        await until(lambda: len(seen) >= 3)
    finally:
        await runner.close()

    times = [dt.datetime.fromisoformat(at) for at in seen]
    assert times[0] - started < dt.timedelta(seconds=1)  # at start, not at the first second
    due = times[1:]
    assert all(time.microsecond == 0 for time in due)  # the schedule's whole seconds
    assert due == sorted(set(due))  # each due time once


@sqlite_only
async def test_the_embedded_runner_keeps_its_schedule_timers_only_while_the_app_runs(
    migrated_url: str,
) -> None:
    app = create_app(upkeep_settings(migrated_url))

    async with app.lifespan():
        running = schedule_timers()

    assert running == SCHEDULE_TASKS
    assert schedule_timers() == set()


@sqlite_only
async def test_with_upkeep_off_the_hub_schedules_nothing(migrated_url: str) -> None:
    app = create_app(upkeep_settings(migrated_url, upkeep=False))

    async with app.lifespan():
        assert schedule_timers() == set()


def test_a_schedule_that_is_not_cron_is_refused() -> None:
    with pytest.raises(ValueError, match="upkeep_retention must be a cron expression"):
        Settings(upkeep_retention="daily")
    assert Settings.from_env({"AGENTOPS_UPKEEP": "false"}).upkeep is False


def test_the_hub_prepares_partitions_at_start_and_applies_retention_on_its_schedule(
    migrated_url: str,
) -> None:
    org = make_org(migrated_url, "acme")
    postgresql = migrated_url.startswith("postgresql")
    if postgresql:
        execute(migrated_url, f"DROP TABLE {LAST_AHEAD}")

    with TestClient(create_app(upkeep_settings(migrated_url))) as client:
        if postgresql:
            wait_for(lambda: partition_exists(migrated_url, LAST_AHEAD), timeout=30)
        ingest_old_and_recent(client, org)
        wait_for(lambda: run_names(migrated_url, org) == ["recent"], timeout=30)

    assert len(rows(migrated_url, "spans", org.org_id)) == 1


@postgresql_only
def test_a_worker_prepares_partitions_at_start_and_applies_retention_on_its_schedule(
    client: Client, org: IssuedKey, migrated_url: str, queue_name: str, tmp_path: Path
) -> None:
    execute(migrated_url, f"DROP TABLE {LAST_AHEAD}")
    ingest_old_and_recent(client, org)  # the test's hub: in-process, upkeep off
    assert run_names(migrated_url, org) == ["old", "recent"]

    with worker_process(migrated_url, queue_name, tmp_path, environment=upkeep_environment()):
        wait_for(lambda: partition_exists(migrated_url, LAST_AHEAD), timeout=60)
        wait_for(lambda: run_names(migrated_url, org) == ["recent"], timeout=60)

    assert len(rows(migrated_url, "spans", org.org_id)) == 1


@postgresql_only
def test_two_workers_on_one_redis_hand_each_scheduled_time_over_once(
    migrated_url: str, queue_name: str, tmp_path: Path
) -> None:
    log = tmp_path / "upkeep.log"
    environment = upkeep_environment(**{derived_tasks.UPKEEP_LOG: str(log)})

    def both_workers_ran_upkeep() -> bool:
        runs = logged_upkeep(log, RETENTION_DUE)
        return len(runs) >= 4 and len({run["pid"] for run in runs}) == 2

    with (
        worker_process(migrated_url, queue_name, tmp_path, name="first", environment=environment),
        worker_process(migrated_url, queue_name, tmp_path, name="second", environment=environment),
    ):
        wait_for(both_workers_ran_upkeep, timeout=60)

    due = [run["scheduled_at"] for run in logged_upkeep(log, RETENTION_DUE)]
    assert len(due) == len(set(due)), due
    assert len(logged_upkeep(log, PARTITIONS)) == 2  # at start, once per worker
