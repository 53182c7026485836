"""Derived work on Redis: SAQ jobs run by real ``agentops-hub worker`` processes, retried with
backoff, dead letters listed and retried from the CLI, and an outbox written with each change so
that a queue that was down when ingest committed loses nothing. Every test has its own queue
name on the real Redis."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from litestar.testing import TestClient
from sqlalchemy.exc import ProgrammingError
from sqlalchemy.ext.asyncio import AsyncSession

from agentops_server import Settings, create_app
from agentops_server.backends import (
    InProcessRunner,
    Outbox,
    SaqQueue,
    create_derived_work,
)
from agentops_server.backends.derived_work import Notice
from agentops_server.cli import main
from agentops_server.db.engine import create_async_db_engine
from agentops_server.db.migrate import upgrade
from agentops_server.db.models import PendingWork
from agentops_server.services.identity.api_keys import IssuedKey
from agentops_server.services.tasks import TaskContext
from tests.server import derived_tasks
from tests.server.api import bearer
from tests.server.conftest import make_org, postgresql_schema
from tests.server.database import count
from tests.server.ingest_events import INGEST, batch, run_event, span_event
from tests.server.principals import SECRET_KEY
from tests.server.test_derived_work import wait_for
from tests.server.test_tenancy import as_tenant

REDIS_URL = "redis://127.0.0.1:6379/0"
ROOT = Path(__file__).parents[2]


@pytest.fixture
def queue_name() -> str:
    """A queue of this test's own on the shared Redis."""
    return f"test-{uuid.uuid4().hex}"


@pytest.fixture
def dead_redis_url() -> str:
    """A Redis URL where nothing listens: a port just freed."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"


def make_queue(redis_url: str, database_url: str, name: str, *, attempts: int = 3) -> SaqQueue:
    """The hub's side of the queue, with the test tasks registered."""
    queue = SaqQueue(redis_url, Outbox(database_url), name=name, attempts=attempts, backoff=0.05)
    derived_tasks.register(queue, TaskContext.__new__(TaskContext))  # the tasks use no context
    return queue


def enqueue(
    database_url: str, name: str, notice: str, *payloads: dict[str, Any], attempts: int = 3
) -> None:
    """Enqueue one notice per payload from a hub's side of the queue, as the hub does."""

    async def hand_over() -> None:
        queue = make_queue(REDIS_URL, database_url, name, attempts=attempts)
        try:
            for payload in payloads:
                await queue.enqueue(notice, payload)
        finally:
            await queue.close()

    asyncio.run(hand_over())


@contextmanager
def worker_process(
    database_url: str,
    queue_name: str,
    tmp_path: Path,
    *,
    grace: float = 60,
    name: str = "worker",
    environment: Mapping[str, str] | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """A real ``agentops-hub worker`` with the test tasks; stopped with SIGTERM, which it must
    obey cleanly (exit status 0) within the deadline. Its sweep hands over work older than
    ``grace`` seconds (by default none a test made: a job may then run once only). It schedules
    no upkeep unless ``environment`` says so (AGENTOPS_UPKEEP...); it logs to ``name``.log."""
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        derived_tasks.DERIVED_LOG: str(tmp_path / "derived.log"),
        "AGENTOPS_LOG_FORMAT": "console",
        "AGENTOPS_UPKEEP": "false",
        **(environment or {}),
    }
    command = [
        sys.executable,
        "-m",
        "agentops_server",
        "worker",
        "--database-url",
        database_url,
        "--redis-url",
        REDIS_URL,
        "--queue",
        queue_name,
        "--sweep-interval",
        "0.2",
        "--grace",
        str(grace),
        "--shutdown-grace",
        "1",
        "--tasks",
        "tests.server.derived_tasks:register",
    ]
    log_path = tmp_path / f"{name}.log"
    log = open(log_path, "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            status = process.wait(timeout=20)
        finally:
            process.kill()
            log.close()
        assert status == 0, log_path.read_text()


def cli(*args: str) -> str:
    """Run ``agentops-hub ARGS`` (the real command, in this process); its output."""
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def dead_letters(database_url: str) -> list[dict[str, Any]]:
    """``agentops-hub jobs failed --json``, parsed."""
    output = cli("jobs", "failed", "--json", "--database-url", database_url)
    return [json.loads(line) for line in output.splitlines()]


def until(condition: Callable[[], bool], log: Path | None = None) -> None:
    """Wait for ``condition`` with a deadline generous enough for a loaded machine; past it,
    fail with the end of the worker's ``log``, if given."""
    try:
        wait_for(condition, timeout=60)
    except AssertionError as timeout:
        if log is None or not log.exists():
            raise
        raise AssertionError(
            f"the condition never held; the worker's log:\n{log.read_text()[-8000:]}"
        ) from timeout


def test_a_task_enqueued_in_the_hub_runs_in_a_worker_process(
    migrated_url: str, queue_name: str, tmp_path: Path
) -> None:
    trace = tmp_path / "touched"
    enqueue(migrated_url, queue_name, "test.touch", {"path": str(trace)})
    assert count(migrated_url, PendingWork) == 1  # recorded until it has run

    with worker_process(migrated_url, queue_name, tmp_path):
        until(lambda: derived_tasks.lines(trace) == ["ran"])
        until(lambda: count(migrated_url, PendingWork) == 0)


def test_a_failing_task_is_retried_with_backoff_until_it_succeeds(
    migrated_url: str, queue_name: str, tmp_path: Path
) -> None:
    trace = tmp_path / "attempts"
    payload = {"path": str(trace), "failures": 2}
    enqueue(migrated_url, queue_name, "test.flaky", payload, attempts=5)

    with worker_process(migrated_url, queue_name, tmp_path):
        until(lambda: count(migrated_url, PendingWork) == 0)
    assert derived_tasks.lines(trace) == ["attempt"] * 3
    assert dead_letters(migrated_url) == []


def test_a_task_failing_its_last_attempt_is_listed_and_retried_from_the_cli(
    migrated_url: str, queue_name: str, tmp_path: Path
) -> None:
    broken, trace = tmp_path / "broken", tmp_path / "ran"
    broken.touch()
    payload = {"path": str(trace), "broken": str(broken)}
    other = {**payload, "path": str(tmp_path / "other")}
    enqueue(migrated_url, queue_name, "test.fragile", payload, other, attempts=2)

    # A grace longer than any run of the test: the sweep never hands a job over again while
    # SAQ has failed it and the dead letter is not yet written (a slow run lost its letter).
    with worker_process(migrated_url, queue_name, tmp_path, grace=3600):
        until(lambda: len(dead_letters(migrated_url)) == 2)
        letters = {letter["payload"]["path"]: letter for letter in dead_letters(migrated_url)}
        first, second = letters[str(trace)], letters[other["path"]]
        assert first["task"].endswith("register.<locals>.fragile")
        assert (first["notice"], first["payload"]) == ("test.fragile", payload)
        assert "broken on purpose" in first["error"]
        assert first["failed_at"]
        text = cli("jobs", "failed", "--database-url", migrated_url)
        assert first["id"] in text
        assert "broken on purpose" in text

        broken.unlink()  # the cause fixed: retry one by id, then the rest
        retry = ("--database-url", migrated_url, "--redis-url", REDIS_URL, "--queue", queue_name)
        assert "1 jobs pending again, 1 handed" in cli("jobs", "retry", first["id"], *retry)
        # Derived work runs at least once: a job whose end the database was too busy to
        # record runs again, so the test waits for its first run and its dead letter to go.
        log = tmp_path / "worker.log"
        until(lambda: "ran" in derived_tasks.lines(trace), log)
        until(
            lambda: [letter["id"] for letter in dead_letters(migrated_url)] == [second["id"]], log
        )
        assert "1 jobs pending again, 1 handed" in cli("jobs", "retry", "--all", *retry)
        until(lambda: "ran" in derived_tasks.lines(tmp_path / "other"), log)
        until(lambda: count(migrated_url, PendingWork) == 0, log)
    assert dead_letters(migrated_url) == []


def test_ingest_with_the_queue_down_is_acknowledged_and_the_work_runs_once_it_is_back(
    settings: Settings,
    org: IssuedKey,
    queue_name: str,
    dead_redis_url: str,
    tmp_path: Path,
) -> None:
    url = settings.database_url
    log = tmp_path / "derived.log"
    before, during = run_event(), run_event()
    queue = make_queue(dead_redis_url, url, queue_name)  # the hub's Redis is down throughout
    with TestClient(create_app(settings, derived_work=queue)) as client:
        response = client.post(
            INGEST,
            json=batch(before, span_event(before), span_event(before)),
            headers=bearer(org.key),
        )
        assert response.status_code == 200, response.text
        assert response.json()["accepted"] == 3
        # One per task of the notice (run totals, budget charges, rollups, live run events, and
        # the log of tests/server/derived_tasks.py) for each acknowledged request, not one per
        # event.
        assert count(url, PendingWork) == 5

        # A worker on the live Redis: its first sweep catches up, later sweeps keep up.
        with worker_process(url, queue_name, tmp_path, grace=0.2):
            until(lambda: len(derived_tasks.lines(log)) == 1)
            response = client.post(INGEST, json=batch(during), headers=bearer(org.key))
            assert response.status_code == 200, response.text
            until(lambda: len(derived_tasks.lines(log)) >= 2)
            until(lambda: count(url, PendingWork) == 0)

    seen = [json.loads(line) for line in derived_tasks.lines(log)]
    notices = {notice["run_ids"][0]: notice for notice in seen}
    assert set(notices) == {before["id"], during["id"]}
    assert notices[before["id"]]["org_id"] == str(org.org_id)
    assert len(notices[before["id"]]["span_ids"]) == 2


def test_the_apps_role_records_work_but_cannot_read_the_outbox(
    queue_name: str, dead_redis_url: str
) -> None:
    with postgresql_schema() as url:  # roles are PostgreSQL's: SQLite has none
        upgrade(url)
        org = make_org(url, "acme")
        settings = Settings(database_url=url, secret_key=SECRET_KEY)
        queue = make_queue(dead_redis_url, url, queue_name)
        with TestClient(create_app(settings, derived_work=queue)) as client:
            response = client.post(INGEST, json=batch(run_event()), headers=bearer(org.key))
        assert response.status_code == 200, response.text  # written as the app's role
        # Totals, charges, rollups, live run events, the test's log.
        assert count(url, PendingWork) == 5
        with pytest.raises(ProgrammingError, match="permission denied"):
            as_tenant(url, org.org_id, ["SELECT count(*) FROM derived_work"])


def test_a_worker_needs_a_redis_url(migrated_url: str) -> None:
    result = CliRunner(env={"AGENTOPS_REDIS_URL": ""}).invoke(
        main, ["worker", "--database-url", migrated_url]
    )
    assert result.exit_code == 2
    assert "--redis-url" in result.output


def test_the_queue_on_redis_is_chosen_when_redis_is_set_else_the_in_process_runner() -> None:
    assert isinstance(create_derived_work(Settings()), InProcessRunner)
    assert isinstance(create_derived_work(Settings(redis_url=REDIS_URL)), SaqQueue)


def test_the_in_process_default_runs_ingest_work_with_no_redis_and_keeps_no_record(
    settings: Settings, org: IssuedKey, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "derived.log"
    monkeypatch.setenv(derived_tasks.DERIVED_LOG, str(log))
    runner = InProcessRunner()
    derived_tasks.register(runner, TaskContext.__new__(TaskContext))
    with TestClient(create_app(settings, derived_work=runner)) as client:
        response = client.post(INGEST, json=batch(run_event()), headers=bearer(org.key))
        until(lambda: len(derived_tasks.lines(log)) == 1)
    assert response.status_code == 200
    assert count(settings.database_url, PendingWork) == 0


def test_a_notice_due_later_runs_in_a_worker_once_due_and_is_not_swept_before(
    migrated_url: str, queue_name: str, tmp_path: Path
) -> None:
    trace = tmp_path / "touched"
    due = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=3)

    async def record_and_dispatch() -> list[Any]:
        queue = make_queue(REDIS_URL, migrated_url, queue_name)
        engine = create_async_db_engine(migrated_url)
        try:
            async with AsyncSession(engine) as session:
                notice = await queue.record(
                    session, "test.touch", {"path": str(trace)}, not_before=due
                )
                await session.commit()
            await queue.dispatch(notice)
            return await queue.outbox.due(grace=0)  # recorded, not due yet: not swept
        finally:
            await queue.close()
            await engine.dispose()

    swept = asyncio.run(record_and_dispatch())

    with worker_process(migrated_url, queue_name, tmp_path, grace=0):
        until(lambda: derived_tasks.lines(trace) == ["ran"])
        ran_at = dt.datetime.now(dt.UTC)
        until(lambda: count(migrated_url, PendingWork) == 0)

    assert swept == []
    assert ran_at >= due - dt.timedelta(seconds=1)  # SAQ schedules by whole seconds
    assert derived_tasks.lines(trace) == ["ran"]  # once, though the sweep ran meanwhile


def test_the_in_process_runner_holds_a_notice_due_later_until_it_is_due() -> None:
    ran: list[float] = []

    async def scenario() -> float:
        runner = InProcessRunner()

        async def task(_payload: Mapping[str, Any]) -> None:
            ran.append(time.monotonic())

        runner.register("test.later", task)
        await runner.start()
        started = time.monotonic()
        due = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=0.3)
        await runner.dispatch(Notice("test.later", {}, not_before=due))
        await runner.idle()
        assert ran == []  # nothing queued yet: the timer holds it
        deadline = started + 10
        while not ran and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        await runner.close()
        return started

    started = asyncio.run(scenario())

    assert len(ran) == 1
    assert ran[0] - started >= 0.29
