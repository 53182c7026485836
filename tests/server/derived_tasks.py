"""Tasks for the job-queue tests, registered in the test's hub and, through ``agentops-hub
worker --tasks tests.server.derived_tasks:register``, in real worker processes. They leave
their trace in files the payload names, so a test sees what a worker process did.

- ``test.touch`` appends ``ran`` to ``path``.
- ``test.flaky`` appends ``attempt`` to ``path`` and fails until it has ``failures`` of them.
- ``test.fragile`` fails while the file ``broken`` exists, then appends ``ran`` to ``path``.
- :data:`EVENTS_COMMITTED` appends the notice as a JSON line to ``$DERIVED_LOG``.
- With ``$UPKEEP_LOG`` set, the scheduled upkeep (:data:`PARTITIONS`, :data:`RETENTION_DUE`)
  appends a JSON line there too: the notice, its ``scheduled_at`` and the worker's pid.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from agentops_server.backends.derived_work import DerivedWork
from agentops_server.services.tasks import TaskContext
from agentops_server.services.telemetry.ingest import EVENTS_COMMITTED
from agentops_server.services.telemetry.partitions import PARTITIONS
from agentops_server.services.telemetry.retention import RETENTION_DUE

DERIVED_LOG = "DERIVED_LOG"
"""The environment variable naming the file the events-committed task writes to."""
UPKEEP_LOG = "UPKEEP_LOG"
"""The environment variable naming the file the scheduled upkeep is logged to."""


def register(derived: DerivedWork, context: TaskContext) -> None:
    """Register the test tasks on ``derived``."""

    async def touch(payload: Mapping[str, Any]) -> None:
        _append(payload["path"], "ran")

    async def flaky(payload: Mapping[str, Any]) -> None:
        _append(payload["path"], "attempt")
        if Path(payload["path"]).read_text().count("attempt") <= payload["failures"]:
            raise RuntimeError("flaky on purpose")

    async def fragile(payload: Mapping[str, Any]) -> None:
        if Path(payload["broken"]).exists():
            raise RuntimeError("broken on purpose")
        _append(payload["path"], "ran")

    async def log_commit(payload: Mapping[str, Any]) -> None:
        _append(os.environ[DERIVED_LOG], json.dumps(dict(payload)))

    derived.register("test.touch", touch)
    derived.register("test.flaky", flaky)
    derived.register("test.fragile", fragile)
    derived.register(EVENTS_COMMITTED, log_commit)
    if UPKEEP_LOG in os.environ:
        for notice in (PARTITIONS, RETENTION_DUE):
            derived.register(notice, _upkeep_logger(notice))


def _upkeep_logger(notice: str) -> Any:
    async def log_upkeep(payload: Mapping[str, Any]) -> None:
        line = {"notice": notice, "scheduled_at": payload["scheduled_at"], "pid": os.getpid()}
        _append(os.environ[UPKEEP_LOG], json.dumps(line))

    return log_upkeep


def lines(path: Path) -> list[str]:
    """The lines a task appended to ``path`` (none yet: empty)."""
    return path.read_text().splitlines() if path.exists() else []


def _append(path: str, line: str) -> None:
    with open(path, "a") as file:
        file.write(line + "\n")
