"""Reading runs: the run explorer's filtered, sorted pages of an org's runs.

Pages use keyset pagination on ``(sort key, id)``: newest first by default (the index
``(org_id, started_at, id)``), or by cost or duration (``(org_id, cost, id)``,
``(org_id, duration_ms, id)``), either way round. The cursor names the last row of a page and
the sort it was made for; runs inserted meanwhile never shift a page, so paging through never
repeats or skips a run that was there. Filters: :mod:`.run_filters`; one run with its spans:
:mod:`.run_detail`.

Every query is scoped to one org: no function here can read another org's rows.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime as dt
import math
import uuid
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from sqlalchemy import ColumnElement, func, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from agentops_server.db.models import Run
from agentops_server.db.types import to_utc
from agentops_server.refusals import Invalid
from agentops_server.services.pagination import InvalidCursor
from agentops_server.services.telemetry.run_filters import (
    Environment,
    RunFilter,
    RunStatus,
    run_conditions,
)
from agentops_server.values import Timestamp

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "MAX_PAGE_SIZE",
    "Environment",
    "ErrorInfo",
    "InvalidCursor",
    "RunFilter",
    "RunPage",
    "RunSort",
    "RunStatus",
    "RunSummary",
    "SortOrder",
    "duration_ms",
    "error_info",
    "list_runs",
    "mismatch",
    "sort_key",
    "summary",
    "summary_fields",
]

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500

RunSort = Literal["started_at", "cost", "duration"]
SortOrder = Literal["desc", "asc"]

_NONE = -1
"""Where a run with no cost or no duration sorts: below every real one (last, newest first)."""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ErrorInfo:
    """The exception a run or span ended with."""

    type: str
    message: str
    stack: str = ""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class RunSummary:
    """A run as listed: what it is, how it went, how big it was."""

    id: uuid.UUID
    agent: str
    name: str
    environment: str
    status: str
    started_at: dt.datetime
    ended_at: dt.datetime | None
    duration_ms: float | None
    tags: list[str]
    error: ErrorInfo | None
    span_count: int
    error_count: int
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int
    cost: Decimal | None
    """USD, the sum of the hub's prices of the run's LLM calls (``unpriced_calls`` of them
    have none: then it is a lower bound); None when no call was priced."""
    sdk_cost: Decimal | None
    """USD, the sum of the costs the SDK sent, if it sent any."""
    cost_mismatch: bool
    """The SDK sent costs and they differ from the hub's (the hub's is authoritative)."""
    llm_calls: int
    unpriced_calls: int
    """LLM calls the hub could not price (an unknown model, or no usage reported)."""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class RunPage:
    """One page of runs, newest first; pass ``next_cursor`` back for the next (None: the end)."""

    items: list[RunSummary]
    next_cursor: str | None


async def list_runs(
    session: AsyncSession,
    org_id: uuid.UUID,
    where: RunFilter,
    *,
    limit: int = DEFAULT_PAGE_SIZE,
    cursor: str | None = None,
    sort: RunSort = "started_at",
    order: SortOrder = "desc",
) -> RunPage:
    """The org's runs matching ``where``, by ``sort`` in ``order`` (ties by id), ``limit`` at
    a time after ``cursor``.

    Raises :class:`InvalidCursor` for a cursor this hub did not make, or made for another sort.
    """
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise ValueError(f"limit must be between 1 and {MAX_PAGE_SIZE}, got {limit}")
    key = sort_key(sort)
    conditions = run_conditions(_dialect(session), org_id, where)
    if cursor is not None:
        value, run_id = _decode(cursor, sort, order)
        after = tuple_(key, Run.id)
        conditions.append(after < (value, run_id) if order == "desc" else after > (value, run_id))
    ordering = (key.desc(), Run.id.desc()) if order == "desc" else (key.asc(), Run.id.asc())
    rows = list(
        await session.scalars(select(Run).where(*conditions).order_by(*ordering).limit(limit + 1))
    )
    page = rows[:limit]
    next_cursor = None
    if len(rows) > limit:
        next_cursor = _encode(sort, order, _sort_value(page[-1], sort), page[-1].id)
    return RunPage(items=[summary(row) for row in page], next_cursor=next_cursor)


def sort_key(sort: RunSort) -> ColumnElement[Any]:
    """The SQL expression runs are ordered by for ``sort`` (then by id)."""
    if sort == "cost":
        return func.coalesce(Run.cost, _NONE)
    if sort == "duration":
        return func.coalesce(Run.duration_ms, _NONE)
    return Run.started_at  # type: ignore[return-value]


def summary(run: Run) -> RunSummary:
    """A run as listed."""
    return RunSummary(**summary_fields(run))


def _sort_value(run: Run, sort: RunSort) -> Any:
    if sort == "cost":
        return run.cost if run.cost is not None else Decimal(_NONE)
    if sort == "duration":
        return run.duration_ms if run.duration_ms is not None else float(_NONE)
    return run.started_at


def _encode(sort: RunSort, order: SortOrder, value: Any, run_id: uuid.UUID) -> str:
    shown = to_utc(value).isoformat() if isinstance(value, dt.datetime) else str(value)
    raw = f"{sort}|{order}|{shown}|{run_id.hex}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode(cursor: str, sort: RunSort, order: SortOrder) -> tuple[Any, uuid.UUID]:
    """The sort value and id a cursor names; :class:`InvalidCursor` if this hub did not make
    it for this sort and order."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        made_for, made_order, shown, run_id = raw.split("|")
        if (made_for, made_order) != (sort, order):
            raise ValueError("a cursor of another sort")
        value: Any
        if sort == "cost":
            value = Decimal(shown)
            if not value.is_finite():
                raise ValueError("not a cost")
        elif sort == "duration":
            value = float(shown)
            if not math.isfinite(value):
                raise ValueError("not a duration")
        else:
            value = Timestamp.parse(shown)
        return value, uuid.UUID(hex=run_id)
    except (binascii.Error, UnicodeDecodeError, ValueError, InvalidOperation, Invalid) as exc:
        raise InvalidCursor(cursor) from exc


def _dialect(session: AsyncSession) -> str:
    return session.get_bind().dialect.name


def duration_ms(started_at: dt.datetime, ended_at: dt.datetime | None) -> float | None:
    if ended_at is None:
        return None
    return round((to_utc(ended_at) - to_utc(started_at)).total_seconds() * 1000, 3)


def error_info(stored: dict[str, Any] | None) -> ErrorInfo | None:
    if stored is None:
        return None
    return ErrorInfo(
        type=str(stored.get("type", "")),
        message=str(stored.get("message", "")),
        stack=str(stored.get("stack", "")),
    )


def summary_fields(run: Run) -> dict[str, Any]:
    return {
        "id": run.id,
        "agent": run.agent,
        "name": run.name,
        "environment": run.environment,
        "status": run.status,
        "started_at": to_utc(run.started_at),
        "ended_at": to_utc(run.ended_at) if run.ended_at else None,
        "duration_ms": duration_ms(run.started_at, run.ended_at),
        "tags": run.tags,
        "error": error_info(run.error),
        "span_count": run.span_count,
        "error_count": run.error_count,
        "input_tokens": run.input_tokens,
        "output_tokens": run.output_tokens,
        "cached_input_tokens": run.cached_input_tokens,
        "cache_write_tokens": run.cache_write_tokens,
        "reasoning_tokens": run.reasoning_tokens,
        "cost": run.cost,
        "sdk_cost": run.sdk_cost,
        "cost_mismatch": mismatch(run.cost, run.sdk_cost),
        "llm_calls": run.llm_calls,
        "unpriced_calls": run.unpriced_calls,
    }


def mismatch(cost: Decimal | None, sdk_cost: Decimal | None) -> bool:
    """The SDK sent a cost that is not the hub's."""
    return sdk_cost is not None and cost != sdk_cost
