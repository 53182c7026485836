"""``/api/v1/exports``: the org's runs, and what their LLM calls cost, as CSV or JSON Lines,
streamed in constant memory, with the run explorer's filters."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get
from litestar.di import NamedDependency
from litestar.response import Stream
from sqlalchemy.ext.asyncio import AsyncEngine

from agentops_server.api.problems import problems
from agentops_server.api.v1.telemetry.run_filters import RUN_FILTER
from agentops_server.auth.guards import requires
from agentops_server.refusals import Invalid
from agentops_server.security.permissions import Permission
from agentops_server.security.principal import Principal
from agentops_server.services.telemetry.exports import ExportFormat, ExportKind, export
from agentops_server.services.telemetry.run_filters import RunFilter

__all__ = ["ExportController"]

BAD_FILTER = Invalid("validation_error", "for a search of no word")
_MEDIA_TYPES = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson"}


class ExportController(Controller):
    """Exports of runs and costs (the ``read`` scope, as the explorer)."""

    path = "/exports"
    tags = ("runs",)
    guards = (requires(Permission.RUNS_READ),)
    dependencies = {"where": RUN_FILTER}  # noqa: RUF012

    @get("/runs.csv", media_type=_MEDIA_TYPES["csv"], responses=problems(BAD_FILTER))
    async def runs_csv(
        self,
        request: Request[Principal, Principal, Any],
        engine: NamedDependency[AsyncEngine],
        where: NamedDependency[RunFilter],
    ) -> Stream:
        """The runs matching the filters, newest first, one CSV line each (a header first)."""
        return _streamed(engine, request.auth, where, "runs", "csv")

    @get("/runs.jsonl", media_type=_MEDIA_TYPES["jsonl"], responses=problems(BAD_FILTER))
    async def runs_jsonl(
        self,
        request: Request[Principal, Principal, Any],
        engine: NamedDependency[AsyncEngine],
        where: NamedDependency[RunFilter],
    ) -> Stream:
        """The runs matching the filters, newest first, one JSON object a line."""
        return _streamed(engine, request.auth, where, "runs", "jsonl")

    @get("/costs.csv", media_type=_MEDIA_TYPES["csv"], responses=problems(BAD_FILTER))
    async def costs_csv(
        self,
        request: Request[Principal, Principal, Any],
        engine: NamedDependency[AsyncEngine],
        where: NamedDependency[RunFilter],
    ) -> Stream:
        """One CSV line per LLM call of the runs matching the filters: tokens and cost."""
        return _streamed(engine, request.auth, where, "costs", "csv")

    @get("/costs.jsonl", media_type=_MEDIA_TYPES["jsonl"], responses=problems(BAD_FILTER))
    async def costs_jsonl(
        self,
        request: Request[Principal, Principal, Any],
        engine: NamedDependency[AsyncEngine],
        where: NamedDependency[RunFilter],
    ) -> Stream:
        """One JSON object per LLM call of the runs matching the filters: tokens and cost."""
        return _streamed(engine, request.auth, where, "costs", "jsonl")


def _streamed(
    engine: AsyncEngine, caller: Principal, where: RunFilter, kind: ExportKind, fmt: ExportFormat
) -> Stream:
    return Stream(
        export(engine, caller.org_id, where, kind=kind, fmt=fmt),
        media_type=_MEDIA_TYPES[fmt],
        headers={"Content-Disposition": f'attachment; filename="{kind}.{fmt}"'},
    )
