"""Reading runs: filtered, newest-first pages of an org's runs, and one run with its span tree.

Pages use keyset pagination on ``(started_at, id)`` (:mod:`~agentops_server.services.pagination`,
the index ``(org_id, started_at, id)``): runs inserted meanwhile never shift a page, so paging
through never repeats or skips a run that was there.

Every query is scoped to one org: no function here can read another org's rows.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from decimal import Decimal
from typing import Any, Literal

from sqlalchemy import ColumnElement, select
from sqlalchemy.ext.asyncio import AsyncSession

from agentops_server.db.models import Run, Span
from agentops_server.db.types import to_utc
from agentops_server.refusals import NotFound
from agentops_server.services.pagination import InvalidCursor, newest_first

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "MAX_PAGE_SIZE",
    "MAX_TREE_DEPTH",
    "Environment",
    "ErrorInfo",
    "InvalidCursor",
    "RunDetail",
    "RunFilter",
    "RunPage",
    "RunStatus",
    "RunSummary",
    "SpanNode",
    "get_run",
    "list_runs",
    "span_tree",
]

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
MAX_TREE_DEPTH = 128

RunStatus = Literal["running", "ok", "error", "blocked", "cancelled"]
Environment = Literal["prod", "staging", "test", "dev"]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class RunFilter:
    """Which runs to list. Times are a half-open range: ``after <= started_at < before``."""

    agent: str | None = None
    status: RunStatus | None = None
    environment: Environment | None = None
    started_after: dt.datetime | None = None
    started_before: dt.datetime | None = None


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


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class SpanNode:
    """A span and, in ``children``, the spans it started (oldest first)."""

    id: uuid.UUID
    parent_id: uuid.UUID | None
    kind: str
    name: str
    status: str
    started_at: dt.datetime
    ended_at: dt.datetime | None
    duration_ms: float | None
    tags: list[str]
    attributes: dict[str, Any]
    input: Any
    output: Any
    error: ErrorInfo | None
    events: list[Any]
    model: str | None
    provider: str | None
    input_tokens: int | None
    output_tokens: int | None
    cached_input_tokens: int | None
    cache_write_tokens: int | None
    reasoning_tokens: int | None
    cost: Decimal | None
    """USD, as the hub priced the call (None: not a call, or not priced: see ``cost_match``)."""
    cost_match: str | None
    """``exact``, ``fallback``, ``unmatched`` or ``no_usage`` (None: not an LLM call)."""
    pricing_version: str | None
    priced_model: str | None
    sdk_cost: Decimal | None
    cost_mismatch: bool
    children: list[SpanNode] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class RunDetail(RunSummary):
    """A run with its inputs, outputs and its spans as a tree.

    ``spans`` holds the root spans: those without a parent, and those whose parent never
    arrived (so no span is ever hidden).
    """

    metadata: dict[str, Any]
    input: Any
    output: Any
    spans: list[SpanNode]


async def list_runs(
    session: AsyncSession,
    org_id: uuid.UUID,
    where: RunFilter,
    *,
    limit: int = DEFAULT_PAGE_SIZE,
    cursor: str | None = None,
) -> RunPage:
    """The org's runs matching ``where``, newest first, ``limit`` at a time.

    Raises :class:`InvalidCursor` for a cursor this hub did not make.
    """
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise ValueError(f"limit must be between 1 and {MAX_PAGE_SIZE}, got {limit}")
    page, next_cursor = await newest_first(
        session,
        Run,
        (Run.started_at, Run.id),
        _conditions(org_id, where),
        limit=limit,
        cursor=cursor,
    )
    return RunPage(items=[_summary(row) for row in page], next_cursor=next_cursor)


async def get_run(session: AsyncSession, org_id: uuid.UUID, run_id: str) -> RunDetail:
    """The org's run ``run_id`` (a UUID) with its span tree; ``run_not_found`` if it has none."""
    try:
        run = await session.get(Run, (org_id, uuid.UUID(run_id)))
    except ValueError:
        run = None  # an id that is no UUID names no run
    if run is None:
        raise NotFound("run_not_found", f"This org has no run {run_id!r}.")
    spans = await session.scalars(
        select(Span)
        .where(Span.org_id == org_id, Span.run_id == run.id)
        .order_by(Span.started_at, Span.id)
    )
    return RunDetail(
        **_summary_fields(run),
        metadata=run.metadata_,
        input=run.input,
        output=run.output,
        spans=span_tree([_node(span) for span in spans]),
    )


def span_tree(nodes: list[SpanNode]) -> list[SpanNode]:
    """Nest ``nodes`` (oldest first) under their parents and return the roots.

    A span whose parent is missing from ``nodes``, is itself, or lies on a parent cycle (data
    no SDK should send, but the hub must still show) becomes a root. So does a span nested more
    than ``MAX_TREE_DEPTH`` levels deep, so that the tree stays within what the JSON encoder
    can nest; its ``parent_id`` still names its parent.
    """
    by_id = {node.id: node for node in nodes}
    attached: dict[uuid.UUID, SpanNode] = {}  # child id -> the parent it hangs under
    roots: list[SpanNode] = []
    for node in nodes:
        parent = by_id.get(node.parent_id) if node.parent_id is not None else None
        if parent is None or parent is node:
            roots.append(node)
        else:
            parent.children.append(node)
            attached[node.id] = parent
    reached = _descendants(roots)
    for node in nodes:
        if node.id not in reached:  # on or under a parent cycle: cut it loose here
            attached[node.id].children.remove(node)
            roots.append(node)
            reached |= _descendants([node])
    roots.extend(_cut_below(roots, MAX_TREE_DEPTH))
    roots.sort(key=lambda node: (node.started_at, node.id))
    return roots


def _cut_below(roots: list[SpanNode], depth: int) -> list[SpanNode]:
    """Detach the spans more than ``depth`` levels down; they become new roots (and are cut
    again ``depth`` levels below themselves)."""
    cut: list[SpanNode] = []
    stack = [(root, 1) for root in roots]
    while stack:
        node, level = stack.pop()
        if level == depth:
            cut.extend(node.children)
            stack.extend((child, 1) for child in node.children)
            node.children.clear()
        else:
            stack.extend((child, level + 1) for child in node.children)
    return cut


def _descendants(roots: list[SpanNode]) -> set[uuid.UUID]:
    """Ids of ``roots`` and everything below them (iteratively: trees may be deep)."""
    seen: set[uuid.UUID] = set()
    stack = list(roots)
    while stack:
        node = stack.pop()
        seen.add(node.id)
        stack.extend(node.children)
    return seen


def _conditions(org_id: uuid.UUID, where: RunFilter) -> list[ColumnElement[bool]]:
    conditions = [Run.org_id == org_id]
    if where.agent is not None:
        conditions.append(Run.agent == where.agent)
    if where.status is not None:
        conditions.append(Run.status == where.status)
    if where.environment is not None:
        conditions.append(Run.environment == where.environment)
    if where.started_after is not None:
        conditions.append(Run.started_at >= to_utc(where.started_after))
    if where.started_before is not None:
        conditions.append(Run.started_at < to_utc(where.started_before))
    return conditions


def _duration_ms(started_at: dt.datetime, ended_at: dt.datetime | None) -> float | None:
    if ended_at is None:
        return None
    return round((to_utc(ended_at) - to_utc(started_at)).total_seconds() * 1000, 3)


def _error(stored: dict[str, Any] | None) -> ErrorInfo | None:
    if stored is None:
        return None
    return ErrorInfo(
        type=str(stored.get("type", "")),
        message=str(stored.get("message", "")),
        stack=str(stored.get("stack", "")),
    )


def _summary_fields(run: Run) -> dict[str, Any]:
    return {
        "id": run.id,
        "agent": run.agent,
        "name": run.name,
        "environment": run.environment,
        "status": run.status,
        "started_at": to_utc(run.started_at),
        "ended_at": to_utc(run.ended_at) if run.ended_at else None,
        "duration_ms": _duration_ms(run.started_at, run.ended_at),
        "tags": run.tags,
        "error": _error(run.error),
        "span_count": run.span_count,
        "error_count": run.error_count,
        "input_tokens": run.input_tokens,
        "output_tokens": run.output_tokens,
        "cached_input_tokens": run.cached_input_tokens,
        "cache_write_tokens": run.cache_write_tokens,
        "reasoning_tokens": run.reasoning_tokens,
        "cost": run.cost,
        "sdk_cost": run.sdk_cost,
        "cost_mismatch": _mismatch(run.cost, run.sdk_cost),
        "llm_calls": run.llm_calls,
        "unpriced_calls": run.unpriced_calls,
    }


def _mismatch(cost: Decimal | None, sdk_cost: Decimal | None) -> bool:
    """The SDK sent a cost that is not the hub's."""
    return sdk_cost is not None and cost != sdk_cost


def _summary(run: Run) -> RunSummary:
    return RunSummary(**_summary_fields(run))


def _node(span: Span) -> SpanNode:
    return SpanNode(
        id=span.id,
        parent_id=span.parent_id,
        kind=span.kind,
        name=span.name,
        status=span.status,
        started_at=to_utc(span.started_at),
        ended_at=to_utc(span.ended_at) if span.ended_at else None,
        duration_ms=_duration_ms(span.started_at, span.ended_at),
        tags=span.tags,
        attributes=span.attributes,
        input=span.input,
        output=span.output,
        error=_error(span.error),
        events=span.events,
        model=span.model,
        provider=span.provider,
        input_tokens=span.input_tokens,
        output_tokens=span.output_tokens,
        cached_input_tokens=span.cached_input_tokens,
        cache_write_tokens=span.cache_write_tokens,
        reasoning_tokens=span.reasoning_tokens,
        cost=span.cost,
        cost_match=span.cost_match,
        pricing_version=span.pricing_version,
        priced_model=span.priced_model,
        sdk_cost=span.sdk_cost,
        cost_mismatch=_mismatch(span.cost, span.sdk_cost),
    )
