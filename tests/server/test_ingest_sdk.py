"""The real SDK against the real hub (uvicorn on a free port), on SQLite and PostgreSQL.

Specification: what an agent records reaches the hub's database exactly once (runs in their
final state, every span, the agent registered), the SDK counts it as sent; an event the hub
refuses is counted by the SDK as dropped (``rejected``) while the rest of its batch is stored.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import agentops_sdk as agentops
from agentops_sdk.client import Client
from agentops_server.services.identity.api_keys import IssuedKey
from tests.server.ingest_events import rows

EVENTS_PER_RESEARCH = 5
"""A run's start and end, its agent span and two tool spans."""


@agentops.tool
def search(query: str) -> list[str]:
    return [query]


@agentops.agent
def researcher(topic: str) -> str:
    return ",".join(search(topic) + search(topic + "!"))


@pytest.fixture
def start_hub_sdk(
    start_sdk: Callable[..., Client], hub_url: str, org: IssuedKey
) -> Callable[..., Client]:
    """``start_hub_sdk(**options)``: the SDK shipping to the hub with ``org``'s key."""
    return lambda **options: start_sdk(**({"hub_url": hub_url, "api_key": org.key} | options))


def test_what_the_sdk_records_is_stored_by_the_hub_exactly_once(
    start_hub_sdk: Callable[..., Client], org: IssuedKey, migrated_url: str
) -> None:
    client = start_hub_sdk()

    for topic in ("cats", "dogs", "owls"):
        researcher(topic)
    assert client.flush(15).completed

    stats = client.stats()
    assert stats.sent == 3 * EVENTS_PER_RESEARCH
    assert stats.dropped_total == 0
    runs = rows(migrated_url, "runs", org.org_id)
    spans = rows(migrated_url, "spans", org.org_id)
    assert len(runs) == 3
    assert {run["status"] for run in runs} == {"ok"}
    assert sorted(run["input"]["topic"] for run in runs) == ["cats", "dogs", "owls"]
    assert len(spans) == 3 * 3
    assert len({span["id"] for span in spans}) == len(spans)
    assert {span["run_id"] for span in spans} == {run["id"] for run in runs}
    assert sorted(span["name"] for span in spans).count("search") == 6
    assert [agent["name"] for agent in rows(migrated_url, "agents", org.org_id)] == ["researcher"]


def test_an_event_the_hub_rejects_is_counted_by_the_sdk_and_the_rest_is_stored(
    start_hub_sdk: Callable[..., Client], org: IssuedKey, migrated_url: str
) -> None:
    def break_one_span(event: dict[str, Any]) -> dict[str, Any]:
        if event["type"] == "span" and event["input"] == {"query": "dogs"}:
            return event | {"kind": "robot"}  # not a kind the hub knows
        return event

    client = start_hub_sdk(before_send=break_one_span)

    researcher("dogs")
    assert client.flush(15).completed

    stats = client.stats()
    assert stats.dropped == stats.dropped | {"rejected": 1}
    assert stats.dropped_total == 1
    assert stats.sent == EVENTS_PER_RESEARCH - 1
    spans = rows(migrated_url, "spans", org.org_id)
    assert sorted(span["input"].get("query", "") for span in spans) == ["", "dogs!"]
    assert [run["status"] for run in rows(migrated_url, "runs", org.org_id)] == ["ok"]
