"""Append every event to a local JSON Lines file: the embedded default when no hub is set."""

from __future__ import annotations

import threading
from pathlib import Path

from agentops_sdk.exporters import ExportBatch, ExportOutcome

__all__ = ["JsonlExporter"]


class JsonlExporter:
    """Writes one event per line to ``path`` (parent folders are created)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def export(
        self, batch: ExportBatch, *, deadline: float, cancel: threading.Event
    ) -> ExportOutcome:
        """Append the batch's events; a file system error fails the batch."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("ab") as file:
                file.write(b"".join(line + b"\n" for line in batch.lines))
        except OSError as exc:
            return ExportOutcome("failed", detail=f"cannot write {self.path}: {exc}")
        return ExportOutcome.sent()

    def close(self) -> None:
        """Nothing to release: the file is opened per batch."""
