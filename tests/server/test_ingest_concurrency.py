"""Ingest under concurrent requests: the hub served by uvicorn, posted to from several threads.

Specification: the same batch arriving at once on many connections is stored once, and each of
its events is accepted by exactly one request; overlapping batches in different orders neither
deadlock nor lose an event, and end in each run's final state.
"""

from __future__ import annotations

import gzip
import json
import random
import threading
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import httpx

from agentops_server.services.identity.api_keys import IssuedKey
from tests.server.ingest_events import (
    INGEST,
    batch,
    rows,
    run_event,
    span_event,
    started,
)
from tests.server.servers import wait_until

THREADS = 8


def post_all(hub_url: str, key: str, bodies_per_thread: list[list[bytes]]) -> list[Any]:
    """Each thread posts its bodies (gzip) in order, all threads starting together."""
    barrier = threading.Barrier(len(bodies_per_thread))
    headers = {
        "Authorization": f"Bearer {key}",
        "Content-Type": "application/json",
        "Content-Encoding": "gzip",
    }

    def send(bodies: list[bytes]) -> list[Any]:
        with httpx.Client(base_url=hub_url, headers=headers, timeout=60) as http:
            barrier.wait(30)
            return [http.post(INGEST, content=body) for body in bodies]

    with ThreadPoolExecutor(len(bodies_per_thread)) as pool:
        return [answer for answers in pool.map(send, bodies_per_thread) for answer in answers]


def test_one_batch_posted_on_eight_connections_at_once_is_stored_and_accepted_once(
    hub_url: str, org: IssuedKey, migrated_url: str
) -> None:
    run = run_event()
    payload = batch(started(run), *[span_event(run) for _ in range(50)], run)
    body = gzip.compress(json.dumps(payload).encode())
    sends = 3

    answers = post_all(hub_url, org.key, [[body] * sends for _ in range(THREADS)])

    assert [answer.status_code for answer in answers] == [200] * THREADS * sends
    events = len(payload["events"])
    assert sum(answer.json()["accepted"] for answer in answers) == events
    assert sum(answer.json()["duplicates"] for answer in answers) == events * (THREADS * sends - 1)
    (stored,) = rows(migrated_url, "runs")
    assert stored["status"] == "ok"
    assert len(rows(migrated_url, "spans")) == 50
    assert len(rows(migrated_url, "agents")) == 1


def test_overlapping_batches_in_different_orders_neither_deadlock_nor_lose_events(
    hub_url: str, org: IssuedKey, migrated_url: str
) -> None:
    runs = [run_event(agent=f"agent-{i % 3}") for i in range(20)]
    shuffle = random.Random(7).shuffle
    bodies_per_thread = []
    for _ in range(THREADS):
        events = [started(run) for run in runs] + runs + [span_event(run) for run in runs]
        shuffle(events)
        chunks = [events[i : i + 15] for i in range(0, len(events), 15)]
        bodies_per_thread.append([gzip.compress(json.dumps(batch(*c)).encode()) for c in chunks])

    answers = post_all(hub_url, org.key, bodies_per_thread)

    assert {answer.status_code for answer in answers} == {200}
    assert {row["status"] for row in rows(migrated_url, "runs")} == {"ok"}
    assert len(rows(migrated_url, "runs")) == 20
    assert len(rows(migrated_url, "spans")) == 20 * THREADS
    assert sorted(agent["name"] for agent in rows(migrated_url, "agents")) == [
        "agent-0",
        "agent-1",
        "agent-2",
    ]


def test_run_totals_are_exact_whether_a_batch_carries_the_run_or_only_its_calls(
    hub_url: str, org: IssuedKey, migrated_url: str
) -> None:
    """Ingest totals the runs a batch writes in its own transaction (on PostgreSQL: the runs
    whose rows it holds) and leaves the runs of calls sent without their run to derived work;
    batches of both kinds, at once and in random orders, end in every run's exact totals."""
    rng = random.Random(11)
    runs = [run_event(agent=f"agent-{i % 3}") for i in range(12)]
    calls = {
        run["id"]: [
            span_event(run, llm={"model": "gpt-4o", "provider": "openai", **tokens(rng)})
            for _ in range(rng.randint(1, 6))
        ]
        for run in runs
    }
    bodies_per_thread = []
    for _ in range(THREADS):
        events = [started(run) for run in runs] + runs
        events += [span for spans in calls.values() for span in spans]
        rng.shuffle(events)
        chunks = [events[i : i + rng.randint(3, 12)] for i in range(0, len(events), 12)]
        bodies_per_thread.append([gzip.compress(json.dumps(batch(*c)).encode()) for c in chunks])

    answers = post_all(hub_url, org.key, bodies_per_thread)

    assert {answer.status_code for answer in answers} == {200}

    def totals_match() -> bool:
        spans = rows(migrated_url, "spans")
        for run in rows(migrated_url, "runs"):
            mine = [span for span in spans if span["run_id"] == run["id"]]
            expected = sum((span["cost"] for span in mine), Decimal(0))
            if run["llm_calls"] != len(mine) or run["cost"] is None:
                return False
            if abs(Decimal(run["cost"]) - Decimal(expected)) > Decimal("1e-9"):
                return False
        return True

    assert wait_until(totals_match, timeout=30) is True
    spans = rows(migrated_url, "spans")
    assert len(spans) == sum(len(found) for found in calls.values())
    assert all(span["cost"] is not None for span in spans)


def tokens(rng: random.Random) -> dict[str, int]:
    return {"input_tokens": rng.randint(1, 5_000), "output_tokens": rng.randint(1, 2_000)}
