"""Live run events: after each ingest commit, the org's open streams hear which runs started
and which changed (``run_started``, ``run_updated``), so a page of runs updates itself.

The task of the :data:`~agentops_server.services.telemetry.ingest.EVENTS_COMMITTED` notice
reads the runs the commit touched (their own rows, and the runs of its spans; at most
:data:`MAX_ANNOUNCED` a commit, the newest first) and announces each as a passing event
(:meth:`~agentops_server.backends.live.LiveUpdates.announce`) whose data is the run's summary
as ``GET /api/v1/runs`` lists it. A run whose own row the commit stored as ``running`` has
started; any other has been updated (it ended, or its spans arrived). It runs wherever derived
work runs (the hub's runner, or a worker, which announces through Redis) and may run twice for
one notice: an event then arrives twice, as news may.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any, Final

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from agentops_server.backends.derived_work import DerivedWork
from agentops_server.backends.live import LiveUpdates
from agentops_server.db.engine import open_session
from agentops_server.db.models import Run
from agentops_server.db.tenancy import tenant
from agentops_server.services.telemetry.ingest import EVENTS_COMMITTED
from agentops_server.services.telemetry.runs import summary

__all__ = ["MAX_ANNOUNCED", "RUN_STARTED", "RUN_UPDATED", "RunAnnouncer"]

RUN_STARTED: Final = "run_started"
RUN_UPDATED: Final = "run_updated"
MAX_ANNOUNCED: Final = 100
"""Runs announced for one commit: a bulk upload of old runs is no news to stream run by run."""


class RunAnnouncer:
    """The task that announces a commit's runs on the org's stream."""

    def __init__(self, engine: AsyncEngine, live: LiveUpdates) -> None:
        self._engine = engine
        self._live = live

    def register(self, derived: DerivedWork) -> None:
        """Announce the runs of every ingest commit."""
        derived.register(EVENTS_COMMITTED, self.events_committed)

    async def events_committed(self, notice: Mapping[str, Any]) -> None:
        """Announce the runs the commit touched."""
        org_id = uuid.UUID(str(notice["org_id"]))
        stored = {uuid.UUID(value) for value in notice.get("run_ids", ())}
        touched = stored | {uuid.UUID(value) for value in notice.get("span_run_ids", ())}
        if not touched:
            return
        newest = sorted(touched, reverse=True)[:MAX_ANNOUNCED]  # UUIDv7s: newest first
        with tenant(org_id=org_id):
            async with open_session(self._engine) as session:
                runs = list(
                    await session.scalars(
                        select(Run).where(Run.org_id == org_id, Run.id.in_(newest))
                    )
                )
        for run in sorted(runs, key=lambda run: (run.started_at, run.id)):
            started = run.id in stored and run.status == "running"
            data = msgspec.json.encode(summary(run)).decode()
            await self._live.announce(org_id, RUN_STARTED if started else RUN_UPDATED, data)
