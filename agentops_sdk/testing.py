"""Test your own agents: capture what the SDK records, in memory, and assert on it.

Installed as a pytest plugin, so the ``agentops_events`` fixture is there in every test suite::

    def test_researcher_searches_once(agentops_events):
        researcher("cats")
        assert [s.name for s in agentops_events.spans if s.kind == "tool"] == ["search"]
        assert agentops_events.runs[0].status == "ok"

Outside pytest, :func:`capture_events` does the same as a context manager. Events are returned as
the wire schema's pydantic models, so a test also proves what it sees is what the hub accepts.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest

from agentops_sdk import client as _client
from agentops_sdk.config import Options
from agentops_sdk.contract.schema import RunEvent, SpanEvent
from agentops_sdk.enforcement import HubSource, LocalHub
from agentops_sdk.exporters.memory import MemoryExporter

__all__ = ["CapturedEvents", "agentops_events", "capture_events"]


class CapturedEvents:
    """What the SDK recorded while capturing. Reading any property flushes first."""

    def __init__(self, client: _client.Client, exporter: MemoryExporter) -> None:
        self.client = client
        self.exporter = exporter

    def flush(self, timeout: float = 5.0) -> None:
        """Wait until everything recorded so far is exported (AssertionError on timeout)."""
        result = self.client.flush(timeout)
        assert result.completed, f"agentops did not flush within {timeout}s: {result}"

    @property
    def events(self) -> list[dict[str, Any]]:
        """Every exported event, as wire dicts, in export order."""
        self.flush()
        return list(self.exporter.events)

    @property
    def runs(self) -> list[RunEvent]:
        """Each run once, in its latest state, in start order."""
        latest: dict[str, dict[str, Any]] = {}
        for event in self.events:
            if event["type"] == "run":
                latest[event["id"]] = event
        return sorted(
            (RunEvent.model_validate(event) for event in latest.values()),
            key=lambda run: run.started_at,
        )

    @property
    def spans(self) -> list[SpanEvent]:
        """Every finished span, in start order."""
        spans = [SpanEvent.model_validate(e) for e in self.events if e["type"] == "span"]
        return sorted(spans, key=lambda span: (span.started_at, span.id.int))

    def span(self, name: str) -> SpanEvent:
        """The one span called ``name`` (AssertionError if there are none or several)."""
        found = [span for span in self.spans if span.name == name]
        assert len(found) == 1, f"expected one span named {name!r}, found {len(found)}"
        return found[0]

    def children(self, parent: SpanEvent) -> list[SpanEvent]:
        """The spans whose parent is ``parent``, in start order."""
        return [span for span in self.spans if span.parent_id == parent.id]

    def clear(self) -> None:
        """Forget what was captured so far."""
        self.flush()
        self.exporter.clear()


@contextlib.contextmanager
def capture_events(
    *, hub_source: HubSource | None = None, **options: Any
) -> Iterator[CapturedEvents]:
    """Record into memory for the duration of the block, then restore the previous client.

    ``options`` are any of :class:`agentops_sdk.Options` (e.g. ``capture=False``,
    ``before_send=...``, ``policy_file="policy.yaml"`` to run your agent under a policy); the
    environment is ignored so tests do not depend on it.
    ``hub_source`` stands in for the hub's side of the hub link (a
    :class:`~agentops_sdk.enforcement.LocalHub`; read only when ``hub_url`` is set too). A
    ``LocalHub`` holds only what the test publishes, so the client does not wait for it at
    start (``hub_wait=0``, unless given).
    """
    exporter = MemoryExporter()
    settings: dict[str, Any] = {"environment": "test", "spool": False, "flush_interval": 0.05}
    if isinstance(hub_source, LocalHub):
        settings["hub_wait"] = 0.0
    settings.update(options)
    client = _client.Client(Options(exporter=exporter, **settings), hub_source=hub_source)
    previous, _client.current = _client.current, client
    try:
        yield CapturedEvents(client, exporter)
    finally:
        _client.current = previous
        client.shutdown(5.0)


@pytest.fixture
def agentops_events() -> Iterator[CapturedEvents]:
    """Capture the SDK's events in memory for one test."""
    with capture_events() as captured:
        yield captured
