"""``/api/v1/runs``: the run explorer (an org's runs, filtered, searched, sorted and paged), and
one run for forensic replay with its spans a page at a time."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, get
from litestar.di import NamedDependency
from litestar.params import PathParameter, QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession

from agentops_server.api.problems import problems
from agentops_server.api.v1.telemetry.run_filters import RUN_FILTER
from agentops_server.auth.guards import requires
from agentops_server.refusals import Invalid, NotFound
from agentops_server.security.permissions import Permission
from agentops_server.security.principal import Principal
from agentops_server.services.telemetry import run_detail, runs
from agentops_server.services.telemetry.run_detail import (
    DEFAULT_SPAN_PAGE,
    MAX_SPAN_PAGE,
    RunDetail,
    SpanPage,
)
from agentops_server.services.telemetry.runs import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    RunFilter,
    RunPage,
    RunSort,
    SortOrder,
)
from agentops_server.values import Text

__all__ = ["RunController"]

RUN_NOT_FOUND = NotFound("run_not_found", "when the org has no run of that id")
BAD_QUERY = Invalid(
    "validation_error", "for a cursor this hub did not make, or a search of no word"
)
SpanLimit = Annotated[
    int, QueryParameter(ge=1, le=MAX_SPAN_PAGE, description="Spans in the page (oldest first).")
]


class RunController(Controller):
    """Reading runs (the ``read`` scope)."""

    path = "/runs"
    tags = ("runs",)
    guards = (requires(Permission.RUNS_READ),)
    dependencies = {"where": RUN_FILTER}  # noqa: RUF012

    @get("/", responses=problems(BAD_QUERY))
    async def list_runs(
        self,
        *,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        where: NamedDependency[RunFilter],
        sort: Annotated[
            RunSort, QueryParameter(description="Order by start time, cost or duration.")
        ] = "started_at",
        order: Annotated[
            SortOrder,
            QueryParameter(
                description="`desc` (default: newest, dearest, longest "
                "first) or `asc`; runs with no cost or no end sort below every other."
            ),
        ] = "desc",
        limit: Annotated[int, QueryParameter(ge=1, le=MAX_PAGE_SIZE)] = DEFAULT_PAGE_SIZE,
        cursor: Annotated[
            Text | None, QueryParameter(description="`next_cursor` of the previous page.")
        ] = None,
    ) -> RunPage:
        """The org's runs matching the filters, sorted, a page at a time."""
        return await runs.list_runs(
            db_session,
            request.auth.org_id,
            where,
            limit=limit,
            cursor=cursor,
            sort=sort,
            order=order,
        )

    @get("/{run_id:str}", responses=problems(RUN_NOT_FOUND))
    async def get_run(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        run_id: Annotated[str, PathParameter(description="The run's id (a UUID).")],
        span_limit: SpanLimit = DEFAULT_SPAN_PAGE,
    ) -> RunDetail:
        """One run of the org, with its first page of spans as a tree (decisions and
        approvals in line); `spans_next_cursor` pages the rest."""
        return await run_detail.get_run(
            db_session, request.auth.org_id, run_id, span_limit=span_limit
        )

    @get("/{run_id:str}/spans", responses=problems(RUN_NOT_FOUND, BAD_QUERY))
    async def list_spans(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        run_id: Annotated[str, PathParameter(description="The run's id (a UUID).")],
        limit: SpanLimit = DEFAULT_SPAN_PAGE,
        cursor: Annotated[
            Text | None, QueryParameter(description="`spans_next_cursor` or `next_cursor`.")
        ] = None,
    ) -> SpanPage:
        """A page of the run's spans after `cursor`, oldest first, as a tree."""
        return await run_detail.list_spans(
            db_session, request.auth.org_id, run_id, limit=limit, cursor=cursor
        )
