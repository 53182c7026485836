"""The run explorer's query parameters, one dependency shared by ``GET /api/v1/runs`` and the
streamed exports (``/api/v1/exports/...``), so both read the same filters the same way."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Annotated

from litestar.di import Provide
from litestar.params import QueryParameter

from agentops_server.services.telemetry.run_filters import (
    Environment,
    RunFilter,
    RunStatus,
    StageName,
)
from agentops_server.values import Text, Timestamp

__all__ = ["RUN_FILTER", "run_filter"]


def run_filter(
    *,
    agent: Annotated[Text | None, QueryParameter(description="Only this agent's runs.")] = None,
    team: Annotated[
        uuid.UUID | None, QueryParameter(description="Only runs of this team's agents (its id).")
    ] = None,
    status: Annotated[RunStatus | None, QueryParameter(description="Only runs in this state.")] = (
        None
    ),
    environment: Annotated[
        Environment | None, QueryParameter(description="Only runs from this environment.")
    ] = None,
    tag: Annotated[
        list[Text] | None,
        QueryParameter(description="Only runs carrying this tag (repeat: every one of them)."),
    ] = None,
    model: Annotated[
        Text | None, QueryParameter(description="Only runs with an LLM call of this model.")
    ] = None,
    min_cost: Annotated[
        Decimal | None, QueryParameter(description="USD; runs that cost at least this.")
    ] = None,
    max_cost: Annotated[
        Decimal | None, QueryParameter(description="USD; runs that cost at most this.")
    ] = None,
    min_duration_ms: Annotated[
        float | None, QueryParameter(ge=0, description="Runs that lasted at least this.")
    ] = None,
    max_duration_ms: Annotated[
        float | None, QueryParameter(ge=0, description="Runs that lasted at most this.")
    ] = None,
    started_after: Annotated[
        Timestamp | None,
        QueryParameter(description="ISO 8601; runs started at or after it (naive: UTC)."),
    ] = None,
    started_before: Annotated[
        Timestamp | None,
        QueryParameter(description="ISO 8601; runs started strictly before it (naive: UTC)."),
    ] = None,
    error_type: Annotated[
        Text | None,
        QueryParameter(description="Runs that ended with, or raised in a span, this error type."),
    ] = None,
    blocked_by: Annotated[
        StageName | None,
        QueryParameter(description="Runs with a call this enforcement stage refused."),
    ] = None,
    q: Annotated[
        Text | None,
        QueryParameter(
            description="Words (all of them, whole, any case) in a run's or span's name, "
            "input, output or error; `word*` matches every word it begins (2 characters at "
            "least).",
        ),
    ] = None,
) -> RunFilter:
    """The :class:`RunFilter` the query asks for."""
    return RunFilter(
        agent=agent,
        team=team,
        status=status,
        environment=environment,
        tags=tuple(tag or ()),
        model=model,
        min_cost=min_cost,
        max_cost=max_cost,
        min_duration_ms=min_duration_ms,
        max_duration_ms=max_duration_ms,
        started_after=started_after,
        started_before=started_before,
        error_type=error_type,
        blocked_by=blocked_by,
        q=q,
    )


RUN_FILTER = Provide(run_filter, sync_to_thread=False)
"""The dependency ``where``: a controller declares ``dependencies={"where": RUN_FILTER}``."""
