"""Passing events on ``GET /api/v1/stream`` for pages: runs started and updated after ingest
commits (derived work), approvals requested and decided; across two hubs on one Redis, and
never to another org."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from agentops_server import Settings, create_app
from agentops_server.backends.derived_work import InProcessRunner
from agentops_server.services.identity.api_keys import IssuedKey
from agentops_server.services.telemetry.live_runs import RUN_STARTED, RUN_UPDATED
from tests.server.api import bearer
from tests.server.conftest import make_org
from tests.server.ingest_events import INGEST, batch, run_event, started
from tests.server.principals import Person
from tests.server.servers import serving
from tests.server.streams import last_of, listening
from tests.server.test_approvals import ask_body

REDIS_URL = "redis://127.0.0.1:6379/0"


def live_settings(settings: Settings, **changes: object) -> Settings:
    values: dict[str, object] = {"stream_heartbeat": 0.3, "stream_max_age": 60.0}
    return dataclasses.replace(settings, **{**values, **changes})  # type: ignore[arg-type]


@pytest.fixture
def two_hubs(settings: Settings) -> Iterator[tuple[str, str]]:
    """Two hubs on one database and one Redis, each running its own derived work."""
    shared = live_settings(settings, redis_url=REDIS_URL)
    one = create_app(shared, derived_work=InProcessRunner())
    other = create_app(shared, derived_work=InProcessRunner())
    with serving(one) as one_url, serving(other) as other_url:
        yield one_url, other_url


def test_an_ingest_on_one_hub_is_announced_on_a_stream_of_another_and_no_other_org(
    two_hubs: tuple[str, str], org: IssuedKey, migrated_url: str
) -> None:
    one_url, other_url = two_hubs
    stranger = make_org(migrated_url, "globex")
    run = run_event(name="nightly-report")
    with listening(other_url, org.key) as stream, listening(other_url, stranger.key) as theirs:
        stream.wait_for(last_of("controls"), "the first snapshot")
        theirs.wait_for(last_of("controls"), "the first snapshot")
        relaying(stream, one_url, org.key)
        relaying(theirs, one_url, stranger.key)

        _ingest(one_url, org.key, started(run))
        event = stream.wait_for(of_run(RUN_STARTED, run["id"]), "run_started")
        assert json.loads(event.data)["id"] == run["id"]
        assert json.loads(event.data)["status"] == "running"

        _ingest(one_url, org.key, run)
        event = stream.wait_for(of_run(RUN_UPDATED, run["id"]), "run_updated")
        assert json.loads(event.data)["status"] == "ok"
        assert json.loads(event.data)["name"] == "nightly-report"

        _ingest(one_url, stranger.key, run_event(name="their-run"))
        theirs.wait_for(last_of(RUN_UPDATED), "their own run_updated")
    assert [e for e in stream.events if "their-run" in e.data] == []
    assert [e for e in theirs.events if "nightly-report" in e.data] == []
    ours = [e for e in stream.events if e.event == RUN_STARTED and run["id"] in e.data]
    assert len(ours) == 1  # the hub's own copy and Redis's: sent once


def test_approvals_requested_and_decided_are_announced(
    settings: Settings, org: IssuedKey, owner: Person
) -> None:
    app = create_app(live_settings(settings))
    with serving(app) as url, listening(url, org.key) as stream:
        stream.wait_for(last_of("controls"), "the first snapshot")
        with httpx.Client(base_url=url, timeout=10) as http:
            asked = http.post("/api/v1/approvals", json=ask_body(), headers=bearer(org.key))
            assert asked.status_code == 201, asked.text
            event = stream.wait_for(last_of("approval_requested"), "approval_requested")
            assert json.loads(event.data)["id"] == asked.json()["id"]

            decided = http.post(
                f"/api/v1/approvals/{asked.json()['id']}/decision",
                json={"decision": "approve"},
                headers=owner.headers,
            )
            assert decided.status_code == 200, decided.text
        event = stream.wait_for(last_of("approval_decided"), "approval_decided")
    assert json.loads(event.data)["state"] == "approved"


def of_run(kind: str, run_id: Any) -> Any:
    """What ``wait_for`` waits for: the event ``kind`` of the run ``run_id``."""
    return lambda events: next(
        (e for e in events if e.event == kind and json.loads(e.data)["id"] == run_id), None
    )


def relaying(stream: Any, url: str, key: str) -> None:
    """Return once the stream's hub relays the org's passing events from the other hub: its
    Redis subscription is made as the org's first stream opens, a moment after the stream's
    snapshot, and a passing event published before it is not replayed. Warm-up runs are
    ingested until one is announced."""
    deadline = time.monotonic() + 40
    while True:
        warm = run_event(name="warm-up")
        _ingest(url, key, started(warm))
        try:
            stream.wait_for(
                lambda events, run_id=warm["id"]: next(
                    (e for e in events if e.event == RUN_STARTED and run_id in e.data), None
                ),
                "the warm-up's run_started",
            )
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise


def _ingest(url: str, key: str, *events: dict[str, object]) -> None:
    response = httpx.post(f"{url}{INGEST}", json=batch(*events), headers=bearer(key), timeout=10)
    assert response.status_code == 200, response.text
