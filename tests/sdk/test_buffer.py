"""The bounded buffer between agent threads and the delivery worker.

Specification: recording never blocks the caller, memory stays bounded by count and by bytes
however long the process runs, and every recorded event is either sent or counted as dropped
with its reason.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

import agentops_sdk as agentops
from agentops_sdk.buffer import EventBuffer
from agentops_sdk.client import Client
from agentops_sdk.exporters import ExportBatch, ExportOutcome
from agentops_sdk.exporters.memory import MemoryExporter
from agentops_sdk.stats import DROP_REASONS, Counters

StartSdk = Callable[..., Client]

EVENTS_PER_TOP_LEVEL_CALL = 3
"""A top-level call records its run when it starts, then its span and the finished run."""


class Item:
    """Something queued, with the size the SDK estimated for it."""

    def __init__(self, size: int) -> None:
        self.size = size


class StalledExporter:
    """A backend that stops answering: each batch waits on ``release`` (or the deadline)."""

    def __init__(self) -> None:
        self.delivered = MemoryExporter()
        self.release = threading.Event()
        self.holding = threading.Event()
        """Set once a batch is held, i.e. the worker is stuck in ``export``."""

    def export(
        self, batch: ExportBatch, *, deadline: float, cancel: threading.Event
    ) -> ExportOutcome:
        if not self.release.is_set():
            self.holding.set()
        if not self.release.wait(max(0.0, deadline - time.monotonic())):
            return ExportOutcome("retry", detail="stalled")
        return self.delivered.export(batch, deadline=deadline, cancel=cancel)

    def close(self) -> None:
        pass


def make_buffer(**limits: int) -> tuple[EventBuffer, Counters]:
    counters = Counters()
    settings = {
        "max_events": 1000,
        "max_bytes": 1_000_000,
        "max_event_bytes": 100_000,
        "batch_events": 100,
        "batch_bytes": 100_000,
    }
    return EventBuffer(**(settings | limits), counters=counters), counters


@agentops.tool
def lookup(query: Any) -> Any:
    return query


@agentops.agent
def research(topic: str) -> str:
    return topic


# -- the buffer itself ---------------------------------------------------------------------------


def test_buffer_drops_and_counts_events_past_max_events() -> None:
    buffer, counters = make_buffer(max_events=5)

    accepted = [buffer.put(Item(10)) for _ in range(8)]

    assert accepted == [True] * 5 + [False] * 3
    assert len(buffer) == 5
    assert buffer.enqueued == 5
    assert counters.dropped["queue_full"] == 3


def test_buffer_drops_and_counts_events_past_max_bytes() -> None:
    buffer, counters = make_buffer(max_bytes=1000)

    accepted = [buffer.put(Item(300)) for _ in range(5)]

    assert accepted == [True, True, True, False, False]
    assert counters.dropped["queue_full"] == 2
    assert buffer.put(Item(100)), "a smaller event still fits in the bytes left"


def test_event_larger_than_a_batch_is_dropped_as_oversize_and_not_queued() -> None:
    buffer, counters = make_buffer(max_event_bytes=500)

    assert not buffer.put(Item(501))
    assert buffer.put(Item(500))

    assert counters.dropped["oversize"] == 1
    assert counters.dropped["queue_full"] == 0
    assert len(buffer) == 1


def test_take_returns_oldest_first_within_the_batch_limits() -> None:
    buffer, _ = make_buffer()
    items = [Item(100) for _ in range(10)]
    for item in items:
        buffer.put(item)

    assert buffer.take(4, 1_000_000) == items[:4]
    assert buffer.take(100, 250) == items[4:6]
    assert buffer.take(100, 50) == [items[6]], "one item always fits, however large"
    assert buffer.take(100, 1_000_000) == items[7:]
    assert buffer.take(100, 1_000_000) == []


def test_taking_frees_the_bytes_an_event_took_when_queued_even_if_it_grew_since() -> None:
    # A run is queued when it starts and again when it ends, and its size estimate grows in
    # between; freeing its current size twice would let the queue hold more than max_bytes.
    buffer, _ = make_buffer(max_bytes=1000)
    run = Item(100)
    buffer.put(run)
    run.size = 600
    buffer.put(run)
    taken = buffer.take(100, 1_000_000)
    assert len(taken) == 2
    buffer.release(len(taken), taken.size)

    accepted = sum(buffer.put(Item(100)) for _ in range(20))

    assert accepted == 10


def test_events_taken_but_not_yet_settled_still_count_within_the_bounds() -> None:
    buffer, counters = make_buffer(max_events=5, max_bytes=1000)
    for _ in range(5):
        buffer.put(Item(100))
    taken = buffer.take(3, 1_000_000)

    assert not buffer.put(Item(100)), "the three taken are still in memory"
    assert counters.dropped["queue_full"] == 1

    buffer.release(len(taken), taken.size)
    assert [buffer.put(Item(100)) for _ in range(4)] == [True, True, True, False]


def test_a_full_queue_hands_its_oldest_batch_to_the_overflow_and_keeps_the_new_event() -> None:
    buffer, counters = make_buffer(max_events=10, batch_events=4)
    spilled: list[list[Any]] = []
    buffer.overflow = lambda items: spilled.append(list(items))
    items = [Item(10) for _ in range(10)]
    for item in items:
        buffer.put(item)

    newest = Item(10)
    assert buffer.put(newest)

    assert spilled == [items[:4]], "the oldest batch's worth, in order"
    assert counters.dropped["queue_full"] == 0
    assert buffer.take(100, 1_000_000) == [*items[4:], newest]


def test_batch_ready_is_signalled_when_a_batch_worth_is_queued() -> None:
    buffer, _ = make_buffer(batch_events=3, batch_bytes=1_000_000)

    buffer.put(Item(1))
    buffer.put(Item(1))
    assert not buffer.batch_ready.is_set()
    buffer.put(Item(1))
    assert buffer.batch_ready.is_set()


# -- through the client, with many threads ---------------------------------------------------------


def test_flood_from_many_threads_never_blocks_while_the_exporter_is_stalled(
    start_sdk: StartSdk,
) -> None:
    exporter = StalledExporter()
    client = start_sdk(exporter=exporter, max_queue_events=500, batch_max_events=50)
    lookup("first")
    assert exporter.holding.wait(5), "the worker should be stuck in the stalled exporter"
    threads_count, calls_per_thread = 8, 1500
    slowest: list[float] = []

    def flood() -> None:
        worst = 0.0
        for i in range(calls_per_thread):
            started = time.perf_counter()
            lookup(i)
            worst = max(worst, time.perf_counter() - started)
        slowest.append(worst)

    threads = [threading.Thread(target=flood) for _ in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not any(thread.is_alive() for thread in threads), "a recording call blocked"

    # Every call returned while the exporter still held its first batch.
    assert not exporter.release.is_set()
    assert exporter.delivered.events == []
    assert max(slowest) < 1.0
    during = client.stats()
    assert during.queued <= 500 + 50, "memory is bounded: the queue plus one batch in flight"
    assert during.dropped["queue_full"] > 0
    assert during.sent == 0

    exporter.release.set()
    assert client.flush(10).completed

    after = client.stats()
    recorded = EVENTS_PER_TOP_LEVEL_CALL * (1 + threads_count * calls_per_thread)
    assert after.sent + after.dropped_total == recorded
    assert after.sent == len(exporter.delivered.events)
    assert after.dropped_total == after.dropped["queue_full"]
    assert after.queued == 0


def test_queue_bytes_stay_bounded_however_long_the_sdk_has_been_running(
    start_sdk: StartSdk,
) -> None:
    def accepted_while_stalled(runs_before: int) -> int:
        exporter = StalledExporter()
        exporter.release.set()
        client = start_sdk(
            exporter=exporter, max_queue_events=1_000_000, max_queue_bytes=256 * 1024
        )
        for _ in range(runs_before // 10):  # in steps the queue can hold: nothing dropped
            for _ in range(10):
                research("x" * 2000)
            assert client.flush(10).completed
        assert client.stats().dropped_total == 0
        exporter.release.clear()
        research("held")
        assert exporter.holding.wait(5)
        before = client.stats()
        flood = 3000
        for _ in range(flood):
            research("x" * 2000)
        dropped = client.stats().dropped_total - before.dropped_total
        exporter.release.set()
        assert client.flush(10).completed
        return EVENTS_PER_TOP_LEVEL_CALL * flood - dropped

    fresh = accepted_while_stalled(runs_before=0)
    seasoned = accepted_while_stalled(runs_before=1500)

    assert 0 < fresh < 3 * 3000
    assert seasoned <= fresh * 1.1 + 10


def test_oversize_event_is_dropped_and_counted_and_the_rest_still_sent(
    start_sdk: StartSdk,
) -> None:
    exporter = MemoryExporter()
    client = start_sdk(exporter=exporter, batch_max_bytes=8192, max_capture_chars=50_000)

    lookup("y" * 20_000)
    lookup("small")
    assert client.flush(5).completed

    stats = client.stats()
    sent = exporter.events
    assert stats.sent + stats.dropped_total == 2 * EVENTS_PER_TOP_LEVEL_CALL
    assert stats.dropped["oversize"] >= 2
    assert stats.dropped_total == stats.dropped["oversize"]
    assert [e["input"] for e in sent if e["type"] == "span"] == [{"query": "small"}]


def test_stats_report_every_counter_and_every_drop_reason(start_sdk: StartSdk) -> None:
    exporter = MemoryExporter()
    client = start_sdk(exporter=exporter)

    research("cats")
    assert client.flush(5).completed
    stats = agentops.stats()

    assert stats == client.stats()
    assert stats.queued == 0
    assert stats.sent == EVENTS_PER_TOP_LEVEL_CALL == len(exporter.events)
    assert set(stats.dropped) == set(DROP_REASONS)
    assert stats.dropped_total == 0
    assert stats.retried == stats.spooled == stats.spool_delivered == stats.auth_failures == 0


def test_stats_before_init_are_all_zero() -> None:
    assert agentops.get_client() is None
    stats = agentops.stats()

    assert stats.queued == stats.sent == stats.dropped_total == stats.retried == 0
    assert set(stats.dropped) == set(DROP_REASONS)


@pytest.mark.parametrize("reason", DROP_REASONS)
def test_dropping_counts_under_its_reason_only(reason: str) -> None:
    counters = Counters()

    counters.drop(reason, 3)

    assert counters.snapshot(queued=0).dropped == {r: 3 if r == reason else 0 for r in DROP_REASONS}


def test_with_exporter_none_flush_returns_at_once_and_nothing_is_held(start_sdk: StartSdk) -> None:
    client = start_sdk(exporter="none")

    lookup("q")
    started = time.monotonic()
    result = client.flush(5)

    assert time.monotonic() - started < 1.0
    assert result.completed
    stats = client.stats()
    assert stats.queued == 0
    assert stats.sent == 0
    assert stats.dropped == dict.fromkeys(DROP_REASONS, 0) | {"no_exporter": 3}
