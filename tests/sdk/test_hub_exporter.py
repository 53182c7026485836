"""Delivery to the hub over HTTP, against a real HTTP server playing the hub (``FakeHub``).

Specification: batches travel as gzip-compressed JSON the hub's schema accepts, with the API key;
transient failures are retried (honouring ``Retry-After``) and nothing is lost or stored twice;
permanent failures are loud and counted; ``flush``/``shutdown`` keep their deadline whatever the
hub does; while the hub is down batches wait in the spool and go out once it is back.
"""

from __future__ import annotations

import gzip
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import agentops_sdk as agentops
from agentops_sdk.client import Client
from agentops_sdk.schema import Batch
from tests.sdk.fake_hub import FakeHub, free_port

StartSdk = Callable[..., Client]
SpoolFiles = Callable[[], list[Path]]

API_KEY = "ak_test_delivery"
EVENTS_PER_CALL = 3
"""A top-level call records its run when it starts, then its span and the finished run."""
MARGIN = 0.5
"""Slack allowed past a deadline for thread scheduling on a busy machine."""


@agentops.tool
def search(query: str) -> list[str]:
    return [query]


@agentops.agent
def researcher(topic: str) -> str:
    return ",".join(search(topic) + search(topic + "!"))


@pytest.fixture
def start_hub_sdk(start_sdk: StartSdk, spool_dir: Path) -> Callable[..., Client]:
    """``start_hub_sdk(url, **options)``: the SDK exporting to the hub at ``url``."""

    def start(url: str, **options: Any) -> Client:
        settings: dict[str, Any] = {
            "hub_url": url,
            "api_key": API_KEY,
            "spool_dir": spool_dir,
            "max_backoff": 2.0,
        }
        return start_sdk(**(settings | options))

    return start


def span_ids(hub: FakeHub) -> set[str]:
    return {span["id"] for span in hub.spans()}


def assert_each_event_arrived_once(hub: FakeHub, client: Client) -> None:
    """Spans arrive once each; runs twice (started, finished); nothing else was sent."""
    with hub._lock:
        counts = dict(hub.received_ids)
        kinds = {event_id: event["type"] for event_id, event in hub.events.items()}
    assert all(counts[i] == 1 for i, kind in kinds.items() if kind == "span"), counts
    assert all(counts[i] == 2 for i, kind in kinds.items() if kind == "run"), counts
    stats = client.stats()
    assert hub.received == stats.sent


def wait_until(condition: Callable[[], bool], timeout: float) -> bool:
    """Check ``condition`` until it holds or ``timeout`` passes; return whether it held."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)
    return True


# -- the request -------------------------------------------------------------------------------


def test_batch_is_gzip_json_that_the_hub_schema_accepts_with_the_api_key(
    hub: FakeHub, start_hub_sdk: Callable[..., Client]
) -> None:
    client = start_hub_sdk(hub.url)

    researcher("cats")
    assert client.flush(5).completed

    (request,) = hub.requests
    assert request["path"] == "/api/v1/ingest/batch"
    assert request["headers"]["Authorization"] == f"Bearer {API_KEY}"
    assert request["headers"]["Content-Encoding"] == "gzip"
    assert request["headers"]["Content-Type"] == "application/json"
    batch = Batch.model_validate(json.loads(gzip.decompress(request["body"])))
    assert [event.type for event in batch.events].count("span") == 3
    assert {event.name for event in batch.events if event.type == "span"} == {
        "researcher",
        "search",
    }
    assert client.stats().sent == 2 + 3


# -- transient failures: retried, nothing lost or duplicated ------------------------------------


def test_503_is_retried_until_the_hub_takes_the_batch(
    hub: FakeHub, start_hub_sdk: Callable[..., Client]
) -> None:
    client = start_hub_sdk(hub.url)
    hub.fail_next(2, 503)

    search("q")
    assert client.flush(10).completed

    assert len(hub.requests) == 3
    assert len(span_ids(hub)) == 1
    assert client.stats().retried == 2
    assert client.stats().sent == EVENTS_PER_CALL
    assert_each_event_arrived_once(hub, client)


def test_429_waits_what_retry_after_asks_before_retrying(
    hub: FakeHub, start_hub_sdk: Callable[..., Client]
) -> None:
    client = start_hub_sdk(hub.url)
    hub.fail_next(1, 429, headers={"Retry-After": "2"})

    search("q")
    assert client.flush(10).completed

    # The refused batch, then its retry (a busy machine may split the events into two
    # batches: the second goes after the retry).
    first, second = hub.requests[:2]
    assert gzip.decompress(second["body"]) == gzip.decompress(first["body"])
    # Without Retry-After the first backoff is at most 0.5 s.
    assert 2.0 - 0.05 <= second["at"] - first["at"] < 2.0 + MARGIN
    assert client.stats().retried == 1
    assert_each_event_arrived_once(hub, client)


def test_connection_refused_is_retried_until_the_hub_comes_up(
    start_hub: Callable[..., FakeHub], start_hub_sdk: Callable[..., Client]
) -> None:
    port = free_port()
    client = start_hub_sdk(f"http://127.0.0.1:{port}")

    search("q")
    researcher("r")
    down = client.flush(0.5)
    assert not down.completed
    assert down.pending == EVENTS_PER_CALL + 2 + 3, "a run of three spans: five events"
    hub = start_hub(port)
    assert client.flush(15).completed

    assert client.stats().retried >= 1
    assert client.stats().spooled == 0
    assert len(span_ids(hub)) == 1 + 3
    assert_each_event_arrived_once(hub, client)


# -- permanent failures: not retried, loud, counted ----------------------------------------------


def test_422_is_not_retried_and_is_logged_and_counted_as_export_failed(
    hub: FakeHub, start_hub_sdk: Callable[..., Client], caplog: pytest.LogCaptureFixture
) -> None:
    client = start_hub_sdk(hub.url)
    hub.fail_next(1, 422, problem={"code": "invalid_batch", "detail": "events[0].id: not a UUID"})
    caplog.set_level(logging.ERROR, logger="agentops_sdk")

    search("rejected")
    assert client.flush(5).completed
    search("accepted")
    assert client.flush(5).completed

    assert len(hub.requests) == 2
    stats = client.stats()
    assert stats.retried == 0
    assert stats.dropped["export_failed"] == EVENTS_PER_CALL
    assert stats.sent == EVENTS_PER_CALL
    (record,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "422" in record.getMessage()
    assert "invalid_batch" in record.getMessage()
    assert "events[0].id: not a UUID" in record.getMessage()
    assert [span["input"] for span in hub.spans()] == [{"query": "accepted"}]


def test_events_the_hub_rejects_with_207_are_dropped_as_rejected_and_the_first_reason_logged(
    hub: FakeHub, start_hub_sdk: Callable[..., Client], caplog: pytest.LogCaptureFixture
) -> None:
    def refuse_bad_spans(event: dict[str, Any]) -> str | None:
        bad = event["type"] == "span" and event["input"] == {"query": "bad"}
        return "input.query: not allowed" if bad else None

    hub.reject = refuse_bad_spans
    client = start_hub_sdk(hub.url)
    caplog.set_level(logging.WARNING, logger="agentops_sdk")

    search("bad")
    search("good")
    assert client.flush(5).completed

    stats = client.stats()
    assert stats.dropped["rejected"] == 1
    assert stats.dropped_total == 1
    assert stats.sent == 2 * EVENTS_PER_CALL - 1
    assert stats.retried == 0
    assert [span["input"] for span in hub.spans()] == [{"query": "good"}]
    (record,) = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert record.levelno == logging.WARNING
    assert "rejected 1 of" in record.getMessage()
    assert "validation_error - input.query: not allowed" in record.getMessage()


def test_refused_api_key_logs_one_error_with_the_hubs_reason_and_counts_each_batch(
    start_hub: Callable[..., FakeHub],
    start_hub_sdk: Callable[..., Client],
    caplog: pytest.LogCaptureFixture,
) -> None:
    hub = start_hub(api_key="ak_the_right_one")
    # The exporter's report alone: the controls link reports the key too (test_hub_stream.py).
    client = start_hub_sdk(hub.url, api_key="ak_revoked", controls=False)
    caplog.set_level(logging.WARNING, logger="agentops_sdk")

    for query in ("a", "b", "c"):
        search(query)
        assert client.flush(5).completed

    assert len(hub.requests) == 3
    assert hub.events == {}
    stats = client.stats()
    assert stats.auth_failures == 3
    assert stats.retried == 0
    assert stats.sent == 0
    assert stats.dropped["export_failed"] == 3 * EVENTS_PER_CALL
    logged = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(logged) == 1
    assert logged[0].levelno == logging.ERROR
    assert "invalid_api_key" in logged[0].getMessage()
    assert "API key revoked" in logged[0].getMessage()
    assert "401" in logged[0].getMessage()


# -- deadlines: flush and shutdown return in time, and say what they did --------------------------


def test_flush_and_shutdown_keep_their_deadline_with_the_hub_down(
    start_hub_sdk: Callable[..., Client], spool_files: SpoolFiles
) -> None:
    client = start_hub_sdk(f"http://127.0.0.1:{free_port()}", spool=True)
    search("q")

    started = time.monotonic()
    flushed = client.flush(1.0)
    assert time.monotonic() - started < 1.0 + MARGIN
    assert not flushed.completed, "the events wait in the spool: not delivered"
    assert flushed.pending == 0, "what the hub cannot take now goes to the spool at once"
    assert flushed.spooled == flushed.spool_pending == EVENTS_PER_CALL
    assert flushed.sent == 0

    started = time.monotonic()
    closed = client.shutdown(1.0)
    assert time.monotonic() - started < 1.0 + MARGIN
    assert closed.pending == 0
    assert not closed.completed
    assert closed.spool_pending == EVENTS_PER_CALL
    assert closed.spool_bytes == sum(path.stat().st_size for path in spool_files()) > 0
    assert client.stats().spooled == EVENTS_PER_CALL
    assert len(spool_files()) == 1


def test_flush_and_shutdown_keep_their_deadline_with_a_hub_that_hangs(
    hub: FakeHub, start_hub_sdk: Callable[..., Client], spool_files: SpoolFiles
) -> None:
    hub.hang_seconds = 6.0
    client = start_hub_sdk(hub.url, spool=True, export_timeout=5.0)
    search("q")

    started = time.monotonic()
    flushed = client.flush(1.0)
    assert time.monotonic() - started < 1.0 + MARGIN
    assert not flushed.completed
    assert flushed.pending == EVENTS_PER_CALL

    started = time.monotonic()
    closed = client.shutdown(1.0)
    assert time.monotonic() - started < 1.0 + MARGIN
    assert closed.pending == 0
    assert closed.spooled == EVENTS_PER_CALL
    assert len(spool_files()) == 1


def test_shutdown_without_a_spool_counts_what_it_could_not_deliver_as_dropped(
    start_hub_sdk: Callable[..., Client],
) -> None:
    client = start_hub_sdk(f"http://127.0.0.1:{free_port()}")
    search("q")

    started = time.monotonic()
    closed = client.shutdown(1.0)

    assert time.monotonic() - started < 1.0 + MARGIN
    assert closed.spooled == 0
    assert closed.dropped == EVENTS_PER_CALL
    assert client.stats().dropped["export_failed"] == EVENTS_PER_CALL


# -- the spool, in one process -------------------------------------------------------------------


def test_batches_are_spooled_while_the_hub_is_down_and_delivered_once_it_is_back(
    start_hub: Callable[..., FakeHub], start_hub_sdk: Callable[..., Client], spool_files: SpoolFiles
) -> None:
    port = free_port()
    client = start_hub_sdk(f"http://127.0.0.1:{port}", spool=True, max_backoff=0.5)

    search("during the outage")
    first = client.flush(1)
    assert not first.completed
    assert first.spooled == first.spool_pending == EVENTS_PER_CALL
    search("still down")
    assert client.flush(1).spool_pending == 2 * EVENTS_PER_CALL
    assert client.stats().spooled == 2 * EVENTS_PER_CALL
    assert client.stats().sent == 0
    assert len(spool_files()) == 2

    hub = start_hub(port)
    # The sender tries the spool again after its backoff (at most max_backoff).
    assert wait_until(lambda: client.stats().spool_delivered == 2 * EVENTS_PER_CALL, 20)
    assert client.stats().sent == 2 * EVENTS_PER_CALL

    assert {span["input"]["query"] for span in hub.spans()} == {"during the outage", "still down"}
    assert spool_files() == []
    assert_each_event_arrived_once(hub, client)


def test_a_full_spool_drops_and_counts_what_does_not_fit(
    start_hub_sdk: Callable[..., Client], spool_files: SpoolFiles, caplog: pytest.LogCaptureFixture
) -> None:
    client = start_hub_sdk(
        f"http://127.0.0.1:{free_port()}", spool=True, spool_max_bytes=100, max_backoff=0.5
    )
    caplog.set_level(logging.WARNING, logger="agentops_sdk")

    search("q")
    result = client.flush(5)

    assert result.completed, "nothing remains: the events are dropped and counted"
    assert result.spooled == 0
    assert result.dropped == EVENTS_PER_CALL
    assert client.stats().dropped["spool_full"] == EVENTS_PER_CALL
    assert spool_files() == []
    assert any("spool" in r.getMessage() and "full" in r.getMessage() for r in caplog.records)


def test_without_a_spool_an_outage_keeps_events_queued_and_delivers_them_when_the_hub_is_back(
    start_hub: Callable[..., FakeHub], start_hub_sdk: Callable[..., Client]
) -> None:
    port = free_port()
    client = start_hub_sdk(f"http://127.0.0.1:{port}", spool=False, max_backoff=0.5)

    search("first, fails its retries")
    assert not client.flush(2).completed  # the hub is down: still pending, not dropped
    search("during the outage")
    assert not client.flush(0.5).completed
    during = client.stats()
    assert during.dropped_total == 0
    assert during.queued > 0

    hub = start_hub(port)
    assert wait_until(lambda: client.stats().queued == 0, 20)

    stats = client.stats()
    assert stats.dropped_total == 0
    assert {span["input"]["query"] for span in hub.spans()} == {
        "first, fails its retries",
        "during the outage",
    }
    assert_each_event_arrived_once(hub, client)


# -- outages, throttling and overload: the spool at once -----------------------------------------


def test_a_batch_the_hub_fails_goes_to_the_spool_at_once_and_out_again_when_it_answers(
    hub: FakeHub, start_hub_sdk: Callable[..., Client], spool_files: SpoolFiles
) -> None:
    client = start_hub_sdk(hub.url, spool=True, max_backoff=0.5)
    hub.fail_next(1, 503)

    search("q")
    assert wait_until(lambda: client.stats().spooled == EVENTS_PER_CALL, 5)
    assert len(hub.requests) == 1, "spooled after one failed request, not after retries"

    assert client.flush(10).completed
    assert client.stats().spool_delivered == client.stats().sent == EVENTS_PER_CALL
    assert spool_files() == []
    assert_each_event_arrived_once(hub, client)


def test_a_429_is_backpressure_logged_as_rate_limiting_and_honours_retry_after(
    hub: FakeHub,
    start_hub_sdk: Callable[..., Client],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="agentops_sdk")
    client = start_hub_sdk(hub.url, spool=True)
    hub.fail_next(1, 429, headers={"Retry-After": "1"})

    search("q")
    waiting = client.flush(0.5)
    assert not waiting.completed
    assert waiting.spool_pending == EVENTS_PER_CALL
    assert client.flush(10).completed

    first, second = hub.requests
    assert 1.0 - 0.05 <= second["at"] - first["at"] < 1.0 + MARGIN
    stats = client.stats()
    assert stats.rate_limited == 1
    assert stats.dropped_total == 0
    said = [record.getMessage() for record in caplog.records]
    assert any("rate limiting this API key" in line and "HTTP 429" in line for line in said)
    assert not any("cannot reach" in line for line in said)
    assert_each_event_arrived_once(hub, client)


def test_a_queue_that_overflows_while_the_hub_is_slow_spills_to_the_spool_and_drops_nothing(
    hub: FakeHub, start_hub_sdk: Callable[..., Client]
) -> None:
    hub.hang_seconds = 0.5
    client = start_hub_sdk(hub.url, spool=True, max_queue_events=60, batch_max_events=20)

    for i in range(300):
        search(i)

    during = client.stats()
    assert during.dropped_total == 0
    assert during.spooled > 0, "the oldest events of the full queue went to the spool"
    assert during.queued <= 60
    hub.hang_seconds = 0
    assert client.flush(20).completed
    assert len(span_ids(hub)) == 300
    assert_each_event_arrived_once(hub, client)


def test_with_overflow_drop_a_full_queue_drops_and_the_drops_are_logged_with_their_cause(
    hub: FakeHub, start_hub_sdk: Callable[..., Client], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="agentops_sdk")
    hub.hang_seconds = 0.5
    client = start_hub_sdk(
        hub.url, spool=True, overflow="drop", max_queue_events=60, batch_max_events=20
    )

    for i in range(300):
        search(i)
    hub.hang_seconds = 0
    client.shutdown(10)

    dropped = client.stats().dropped["queue_full"]
    assert dropped > 0
    lines = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert lines, "the drops are logged"
    assert sum(int(line.split("dropped ")[1].split()[0]) for line in lines) == dropped
    assert all("queue_full: the in-memory queue was full" in line for line in lines)


def test_events_recorded_at_a_steady_pace_travel_in_full_batches_not_slivers(
    hub: FakeHub, start_hub_sdk: Callable[..., Client]
) -> None:
    client = start_hub_sdk(hub.url, flush_interval=1.0, batch_max_events=100)

    for i in range(500):  # 1,500 events over about a second
        search(i)
        time.sleep(0.002)
    assert client.flush(10).completed

    assert client.stats().sent == 500 * EVENTS_PER_CALL
    assert len(hub.requests) <= 500 * EVENTS_PER_CALL // 100 + 3
