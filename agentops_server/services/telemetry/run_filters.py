"""Which runs a reader wants: the run explorer's filters, as SQL conditions on ``runs``.

One :class:`RunFilter` serves the run list (``GET /api/v1/runs``) and the streamed exports
(``/api/v1/exports/...``), so an export holds exactly the runs the explorer shows. Every
condition is scoped to one org. Filters on what a run's spans did (a model called, a stage that
blocked a call, an error raised, words said) are ``run id IN (spans of the org that ...)``,
each served by an ``(org_id, column, run_id)`` index; ``q`` reads the full-text index
(:mod:`.search`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from decimal import Decimal
from typing import Literal

from sqlalchemy import ColumnElement, Select, Text, cast, exists, func, or_, select

from agentops_sdk.contract.decisions import StageName
from agentops_server.db.models import Agent, Run, Span
from agentops_server.db.types import to_utc
from agentops_server.services.telemetry.search import matching_run_ids, search_words

__all__ = ["Environment", "RunFilter", "RunStatus", "StageName", "run_conditions"]

RunStatus = Literal["running", "ok", "error", "blocked", "cancelled"]
Environment = Literal["prod", "staging", "test", "dev"]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class RunFilter:
    """Which runs to list or export; every field set must hold (None: any).

    Times are a half-open range (``after <= started_at < before``); cost (USD) and duration
    (milliseconds) ranges are closed, and a run with no cost or no end is outside any range of
    them.
    """

    agent: str | None = None
    team: uuid.UUID | None = None
    """Runs of the agents the registry puts in this team."""
    status: RunStatus | None = None
    environment: Environment | None = None
    tags: tuple[str, ...] = ()
    """Runs carrying every one of these tags."""
    model: str | None = None
    """Runs with an LLM call of this model (as the SDK named it)."""
    min_cost: Decimal | None = None
    max_cost: Decimal | None = None
    min_duration_ms: float | None = None
    max_duration_ms: float | None = None
    started_after: dt.datetime | None = None
    started_before: dt.datetime | None = None
    error_type: str | None = None
    """Runs that ended with, or have a span that raised, an error of this type."""
    blocked_by: StageName | None = None
    """Runs with a call refused by this enforcement stage (``controls``, ``policy``...)."""
    q: str | None = None
    """Words every one of which a run's or one of its spans' name, input, output or error
    holds (whole words, any case)."""


def run_conditions(dialect: str, org_id: uuid.UUID, where: RunFilter) -> list[ColumnElement[bool]]:
    """The SQL conditions on :class:`~agentops_server.db.models.Run` for ``where`` in the org,
    for a database of ``dialect`` (``validation_error`` for a search with no word)."""
    conditions: list[ColumnElement[bool]] = [Run.org_id == org_id]
    equal = {
        Run.agent: where.agent,
        Run.status: where.status,
        Run.environment: where.environment,
    }
    conditions.extend(column == value for column, value in equal.items() if value is not None)
    bounds = (
        (Run.cost >= where.min_cost) if where.min_cost is not None else None,
        (Run.cost <= where.max_cost) if where.max_cost is not None else None,
        (Run.duration_ms >= where.min_duration_ms) if where.min_duration_ms is not None else None,
        (Run.duration_ms <= where.max_duration_ms) if where.max_duration_ms is not None else None,
        (Run.started_at >= to_utc(where.started_after)) if where.started_after else None,
        (Run.started_at < to_utc(where.started_before)) if where.started_before else None,
    )
    conditions.extend(bound for bound in bounds if bound is not None)
    conditions.extend(_has_tag(dialect, tag) for tag in where.tags)
    if where.team is not None:
        team_agents = select(Agent.name).where(Agent.org_id == org_id, Agent.team_id == where.team)
        conditions.append(Run.agent.in_(team_agents))
    if where.model is not None:
        conditions.append(Run.id.in_(_spans_where(org_id, Span.model == where.model)))
    if where.blocked_by is not None:
        conditions.append(Run.id.in_(_spans_where(org_id, Span.blocked_by == where.blocked_by)))
    if where.error_type is not None:
        span_errors = _spans_where(org_id, Span.error["type"].as_string() == where.error_type)
        run_error = Run.error["type"].as_string() == where.error_type
        conditions.append(or_(run_error, Run.id.in_(span_errors)))
    if where.q is not None:
        conditions.append(Run.id.in_(matching_run_ids(dialect, org_id, search_words(where.q))))
    return conditions


def _spans_where(org_id: uuid.UUID, condition: ColumnElement[bool]) -> Select[uuid.UUID]:
    return select(Span.run_id).where(Span.org_id == org_id, condition)


def _has_tag(dialect: str, tag: str) -> ColumnElement[bool]:
    if dialect == "postgresql":
        return Run.tags.op("@>")(func.jsonb_build_array(cast(tag, Text)))
    values = func.json_each(Run.tags).table_valued("value")
    return exists(select(1).select_from(values).where(values.c.value == tag))
