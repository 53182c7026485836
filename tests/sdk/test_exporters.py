"""The local exporters (JSONL file, console) and exporters users bring themselves."""

from __future__ import annotations

import io
import json
import threading
from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter

import agentops_sdk as agentops
from agentops_sdk.exporters import ExportBatch, ExportOutcome
from agentops_sdk.exporters.console import ConsoleExporter
from agentops_sdk.exporters.jsonl import JsonlExporter
from agentops_sdk.schema import Event

EVENT: TypeAdapter[Any] = TypeAdapter(Event)


@agentops.tool
def lookup(key: str) -> str:
    return key.upper()


@agentops.agent(name="clerk")
def clerk(key: str) -> str:
    return lookup(key)


def test_jsonl_exporter_appends_one_schema_valid_event_per_line(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "events.jsonl"
    client = agentops.init(exporter="jsonl", jsonl_path=path, environment="test")
    assert client is not None
    try:
        clerk("a")
        assert agentops.flush(5).completed
        clerk("b")
        assert agentops.flush(5).completed
    finally:
        agentops.shutdown(5)

    events = [json.loads(line) for line in path.read_text().splitlines()]
    for event in events:
        EVENT.validate_python(event)
    runs = {e["id"]: e for e in events if e["type"] == "run"}  # latest state of each run
    assert sorted(run["input"]["key"] for run in runs.values()) == ["a", "b"]
    assert {run["status"] for run in runs.values()} == {"ok"}
    assert [e["name"] for e in events if e["type"] == "span"] == ["lookup", "clerk"] * 2


def test_jsonl_exporter_reports_a_failure_it_cannot_write(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    exporter = JsonlExporter(blocker / "events.jsonl")
    batch = ExportBatch("b", [{"type": "run"}], [b'{"type":"run"}'])
    outcome = exporter.export(batch, deadline=0.0, cancel=threading.Event())
    assert outcome.status == "failed"
    assert outcome.detail is not None
    assert str(blocker) in outcome.detail


def test_console_exporter_prints_a_line_per_event_with_status_and_error() -> None:
    stream = io.StringIO()

    @agentops.tool
    def explode() -> None:
        raise LookupError("no such key")

    client = agentops.init(exporter=ConsoleExporter(stream), environment="test")
    assert client is not None
    try:
        clerk("a")
        with pytest.raises(LookupError):
            explode()
        assert agentops.flush(5).completed
    finally:
        agentops.shutdown(5)

    lines = stream.getvalue().splitlines()
    assert any(" tool  lookup ok " in line for line in lines)
    assert any(" agent clerk ok " in line for line in lines)
    assert any(line.startswith("[agentops] run   clerk/clerk ok spans=2") for line in lines)
    assert any(" tool  explode error LookupError: no such key " in line for line in lines)


class ListExporter:
    """A user's own exporter: any object with export() and close()."""

    def __init__(self) -> None:
        self.batches: list[list[dict[str, Any]]] = []
        self.closed = False

    def export(
        self, batch: ExportBatch, *, deadline: float, cancel: threading.Event
    ) -> ExportOutcome:
        self.batches.append(batch.events)
        return ExportOutcome.sent()

    def close(self) -> None:
        self.closed = True


def test_a_custom_exporter_receives_batches_and_is_closed_at_shutdown() -> None:
    exporter = ListExporter()
    agentops.init(exporter=exporter, environment="test")
    clerk("a")
    result = agentops.shutdown(5)

    assert result.completed
    assert result.sent == sum(len(batch) for batch in exporter.batches) == 4  # run x2 + 2 spans
    assert exporter.closed
