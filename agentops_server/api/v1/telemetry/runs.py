"""``/api/v1/runs``: an org's runs, filtered and paged, and one run with its span tree."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, get
from litestar.di import NamedDependency
from litestar.params import PathParameter, QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession

from agentops_server.auth.guards import requires
from agentops_server.security.permissions import Permission
from agentops_server.security.principal import Principal
from agentops_server.services.telemetry import runs
from agentops_server.services.telemetry.runs import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    Environment,
    RunDetail,
    RunPage,
    RunStatus,
)
from agentops_server.values import Text, Timestamp

__all__ = ["RunController"]


class RunController(Controller):
    """Reading runs (the ``read`` scope)."""

    path = "/runs"
    tags = ("runs",)
    guards = (requires(Permission.RUNS_READ),)

    @get("/")
    async def list_runs(
        self,
        *,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        agent: Annotated[Text | None, QueryParameter(description="Only this agent's runs.")] = None,
        status: Annotated[
            RunStatus | None, QueryParameter(description="Only runs in this state.")
        ] = None,
        environment: Annotated[
            Environment | None, QueryParameter(description="Only runs from this environment.")
        ] = None,
        started_after: Annotated[
            Timestamp | None,
            QueryParameter(description="ISO 8601; runs started at or after it (naive: UTC)."),
        ] = None,
        started_before: Annotated[
            Timestamp | None,
            QueryParameter(description="ISO 8601; runs started strictly before it (naive: UTC)."),
        ] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=MAX_PAGE_SIZE)] = DEFAULT_PAGE_SIZE,
        cursor: Annotated[
            Text | None, QueryParameter(description="`next_cursor` of the previous page.")
        ] = None,
    ) -> RunPage:
        """The org's runs, newest first, a page at a time."""
        where = runs.RunFilter(
            agent=agent,
            status=status,
            environment=environment,
            started_after=started_after,
            started_before=started_before,
        )
        return await runs.list_runs(
            db_session, request.auth.org_id, where, limit=limit, cursor=cursor
        )

    @get("/{run_id:str}")
    async def get_run(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        run_id: Annotated[str, PathParameter(description="The run's id (a UUID).")],
    ) -> RunDetail:
        """One run of the org, with its spans as a tree."""
        return await runs.get_run(db_session, request.auth.org_id, run_id)
