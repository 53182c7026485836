"""Print one line per event: for watching an agent during development."""

from __future__ import annotations

import sys
import threading
from typing import Any, TextIO

from agentops_sdk.exporters import ExportBatch, ExportOutcome

__all__ = ["ConsoleExporter"]


class ConsoleExporter:
    """Writes a short human-readable line per event to ``stream`` (stderr by default)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream

    def export(
        self, batch: ExportBatch, *, deadline: float, cancel: threading.Event
    ) -> ExportOutcome:
        """Print each event of the batch."""
        stream = self.stream or sys.stderr
        try:
            stream.write("".join(describe(event) + "\n" for event in batch.events))
            stream.flush()
        except (OSError, ValueError) as exc:
            return ExportOutcome("failed", detail=f"cannot write to the console: {exc}")
        return ExportOutcome.sent()

    def close(self) -> None:
        """Nothing to release."""


def describe(event: dict[str, Any]) -> str:
    """One line for an event: what it is, its name, status and, for spans, its id."""
    if event["type"] == "run":
        return (
            f"[agentops] run   {event['agent']}/{event['name']} {event['status']} "
            f"spans={event['span_count']} id={event['id']}"
        )
    error = f" {event['error']['type']}: {event['error']['message']}" if event["error"] else ""
    return (
        f"[agentops] {event['kind']:<5} {event['name']} {event['status']}{error} "
        f"id={event['id']} parent={event['parent_id']}"
    )
