"""Derived work: notices of committed changes run their tasks off the request path, with
retries and a bounded queue; ingest hands one over after each commit that changed rows."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest
from litestar.testing import TestClient

from agentops_server import Settings, create_app
from agentops_server.backends.derived_work import InProcessRunner
from agentops_server.services.identity.api_keys import IssuedKey
from agentops_server.services.tasks import MAX_MERGED_IDS, merge_events_committed
from agentops_server.services.telemetry.ingest import EVENTS_COMMITTED
from tests.server.api import bearer
from tests.server.ingest_events import INGEST, batch, run_event, span_event


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Return once ``condition()`` holds; fail at the deadline."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.01)


async def test_a_task_runs_with_the_payload_after_enqueue_returns() -> None:
    runner = InProcessRunner()
    release = asyncio.Event()
    seen: list[Mapping[str, Any]] = []

    async def task(payload: Mapping[str, Any]) -> None:
        await release.wait()
        seen.append(payload)

    runner.register("thing.changed", task)
    await runner.start()
    try:
        await runner.enqueue("thing.changed", {"id": 1})  # returns while the task still waits
        assert seen == []
        release.set()
        await asyncio.wait_for(runner.idle(), 5)
    finally:
        await runner.close()
    assert seen == [{"id": 1}]


async def test_a_failing_task_is_retried_and_recorded_after_its_last_attempt() -> None:
    runner = InProcessRunner(attempts=3, backoff=0.01)
    calls: list[int] = []

    async def flaky(payload: Mapping[str, Any]) -> None:
        calls.append(len(calls))
        if len(calls) < 3:
            raise RuntimeError("not yet")

    async def broken(payload: Mapping[str, Any]) -> None:
        raise RuntimeError("never")

    runner.register("a", flaky)
    runner.register("b", broken)
    await runner.start()
    try:
        await runner.enqueue("a", {})
        await runner.enqueue("b", {"n": 2})
        await asyncio.wait_for(runner.idle(), 5)
    finally:
        await runner.close()
    assert len(calls) == 3
    assert [(f.task_name, f.payload) for f in runner.failures] == [("b", {"n": 2})]
    assert "never" in runner.failures[0].error


async def test_a_full_queue_drops_and_counts_without_waiting() -> None:
    runner = InProcessRunner(max_pending=2, workers=1)
    release = asyncio.Event()

    async def slow(payload: Mapping[str, Any]) -> None:
        await release.wait()

    runner.register("slow", slow)
    await runner.start()
    try:
        for n in range(5):  # one taken by the worker, two wait, two find no room
            await asyncio.wait_for(runner.enqueue("slow", {"n": n}), 1)
            await asyncio.sleep(0)
        assert runner.dropped == 2
        release.set()
        await asyncio.wait_for(runner.idle(), 5)
    finally:
        await runner.close()


async def test_a_notice_nobody_registered_for_does_nothing() -> None:
    runner = InProcessRunner()
    await runner.start()
    try:
        await runner.enqueue("nobody.listens", {})
        await asyncio.wait_for(runner.idle(), 1)
    finally:
        await runner.close()
    assert (runner.dropped, list(runner.failures)) == (0, [])


def notice(org: str, *runs: str, spans: tuple[str, ...] = (), at: str = "1") -> dict[str, Any]:
    return {
        "org_id": org,
        "run_ids": list(runs),
        "span_ids": list(spans),
        "call_run_ids": [],
        "span_run_ids": [],
        "owed_run_ids": list(runs),
        "committed_at": at,
    }


async def test_notices_waiting_for_a_busy_task_are_merged_per_org() -> None:
    runner = InProcessRunner(workers=1)
    release = asyncio.Event()
    seen: list[Mapping[str, Any]] = []
    other: list[Mapping[str, Any]] = []

    async def task(payload: Mapping[str, Any]) -> None:
        await release.wait()
        seen.append(payload)

    async def second_task(payload: Mapping[str, Any]) -> None:
        other.append(payload)

    runner.register(EVENTS_COMMITTED, task)
    runner.register(EVENTS_COMMITTED, second_task)
    runner.coalesce(EVENTS_COMMITTED, merge_events_committed)
    await runner.start()
    try:
        await runner.enqueue(EVENTS_COMMITTED, notice("a", "r1", at="1"))
        for _ in range(5):  # the worker takes the first job and waits in it
            await asyncio.sleep(0)
        await runner.enqueue(EVENTS_COMMITTED, notice("a", "r3", spans=("s1",), at="2"))
        await runner.enqueue(EVENTS_COMMITTED, notice("b", "r9", at="3"))
        await runner.enqueue(EVENTS_COMMITTED, notice("a", "r2", "r3", at="4"))
        release.set()
        await asyncio.wait_for(runner.idle(), 5)
    finally:
        await runner.close()
    assert seen == [
        notice("a", "r1", at="1"),
        notice("a", "r2", "r3", spans=("s1",), at="4"),
        notice("b", "r9", at="3"),
    ]
    # The second task's first job was still waiting: every later notice of org a joined it.
    assert other == [
        notice("a", "r1", "r2", "r3", spans=("s1",), at="4"),
        notice("b", "r9", at="3"),
    ]
    assert runner.merged == 3


def test_notices_of_two_orgs_or_too_many_ids_stay_apart() -> None:
    many = tuple(f"s{n}" for n in range(MAX_MERGED_IDS))
    assert merge_events_committed(notice("a", "r1"), notice("b", "r2")) is None
    assert merge_events_committed(notice("a", spans=many), notice("a", spans=("extra",))) is None
    merged = merge_events_committed(notice("a", "r2", at="5"), notice("a", "r1", at="3"))
    assert merged == notice("a", "r1", "r2", at="5")


def test_a_merged_notice_owes_totals_to_the_runs_either_notice_owed() -> None:
    totalled_at_ingest = notice("a", "r1") | {"owed_run_ids": []}
    of_an_older_hub = {
        key: value for key, value in notice("a", "r2").items() if key != "owed_run_ids"
    }
    of_an_older_hub["call_run_ids"] = ["r3"]
    merged = merge_events_committed(totalled_at_ingest, of_an_older_hub)
    assert merged is not None
    assert merged["owed_run_ids"] == ["r2", "r3"]
    again = merge_events_committed(merged, notice("a", "r4") | {"owed_run_ids": ["r5"]})
    assert again is not None
    assert again["owed_run_ids"] == ["r2", "r3", "r5"]


@pytest.fixture
def notices(settings: Settings) -> Iterator[tuple[TestClient[Any], list[Mapping[str, Any]]]]:
    """A hub whose derived work records every events-committed notice."""
    runner = InProcessRunner()
    seen: list[Mapping[str, Any]] = []
    lock = threading.Lock()

    async def record(payload: Mapping[str, Any]) -> None:
        with lock:
            seen.append(payload)

    runner.register(EVENTS_COMMITTED, record)
    with TestClient(create_app(settings, derived_work=runner)) as client:
        yield client, seen


def test_ingest_hands_the_committed_runs_and_spans_to_derived_work(
    notices: tuple[TestClient[Any], list[Mapping[str, Any]]], org: IssuedKey
) -> None:
    client, seen = notices
    run = run_event()
    span = span_event(run)

    response = client.post(INGEST, json=batch(run, span), headers=bearer(org.key))

    assert response.status_code == 200, response.text
    wait_for(lambda: len(seen) == 1)
    notice = seen[0]
    assert notice["org_id"] == str(org.org_id)
    assert (notice["run_ids"], notice["span_ids"]) == ([run["id"]], [span["id"]])
    assert notice["committed_at"]


def test_a_batch_that_changes_nothing_hands_nothing_over(
    notices: tuple[TestClient[Any], list[Mapping[str, Any]]], org: IssuedKey
) -> None:
    client, seen = notices
    payload = batch(run_event())
    client.post(INGEST, json=payload, headers=bearer(org.key))
    wait_for(lambda: len(seen) == 1)

    again = client.post(INGEST, json=payload, headers=bearer(org.key))

    assert again.json()["duplicates"] == 1
    marker = batch(run_event())  # a later change: its notice comes after any for the repeat
    client.post(INGEST, json=marker, headers=bearer(org.key))
    wait_for(lambda: len(seen) == 2)
    assert seen[1]["run_ids"] == [marker["events"][0]["id"]]


def test_ingest_is_acknowledged_when_the_derived_task_fails(
    settings: Settings, org: IssuedKey
) -> None:
    runner = InProcessRunner(attempts=1)

    async def broken(payload: Mapping[str, Any]) -> None:
        raise RuntimeError("rollups are down")

    runner.register(EVENTS_COMMITTED, broken)
    with TestClient(create_app(settings, derived_work=runner)) as client:
        response = client.post(INGEST, json=batch(run_event()), headers=bearer(org.key))
        wait_for(lambda: len(runner.failures) == 1)

    assert response.status_code == 200
    assert response.json()["accepted"] == 1
