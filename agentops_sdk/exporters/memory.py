"""Keep events in memory: for tests (see :mod:`agentops_sdk.testing`)."""

from __future__ import annotations

import threading
from typing import Any

from agentops_sdk.exporters import ExportBatch, ExportOutcome

__all__ = ["MemoryExporter"]


class MemoryExporter:
    """Collects every exported event dict in ``events``, in delivery order."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.batches: list[str] = []
        self._lock = threading.Lock()

    def export(
        self, batch: ExportBatch, *, deadline: float, cancel: threading.Event
    ) -> ExportOutcome:
        """Store the batch's events."""
        with self._lock:
            self.events.extend(batch.events)
            self.batches.append(batch.batch_id)
        return ExportOutcome.sent()

    def close(self) -> None:
        """Keep the events: tests read them after shutdown."""

    def clear(self) -> None:
        """Forget everything collected so far."""
        with self._lock:
            self.events.clear()
            self.batches.clear()
