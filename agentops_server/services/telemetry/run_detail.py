"""One run for forensic replay: its summary, its spans as a tree with full payloads, and, in
line on each span, what enforcement decided (policy and budget decisions, control refusals) and
the approvals it asked for.

A run's spans come a page at a time, oldest first (keyset on ``(started_at, id)``, the index
``(org_id, run_id, started_at)``), so a run of 10,000 spans is never loaded whole: the run
carries its first page and a cursor, ``GET /api/v1/runs/{id}/spans`` the rest.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections import defaultdict
from decimal import Decimal
from typing import Any

from sqlalchemy import select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from agentops_sdk.contract.decisions import DECISION_EVENT
from agentops_server.db.models import ApprovalRequest, Run, Span
from agentops_server.db.types import to_utc
from agentops_server.refusals import NotFound
from agentops_server.services.pagination import decode_cursor, encode_cursor
from agentops_server.services.telemetry.runs import (
    ErrorInfo,
    RunSummary,
    duration_ms,
    error_info,
    mismatch,
    summary_fields,
)

__all__ = [
    "DEFAULT_SPAN_PAGE",
    "MAX_SPAN_PAGE",
    "MAX_TREE_DEPTH",
    "ApprovalRecord",
    "DecisionRecord",
    "RunDetail",
    "SpanNode",
    "SpanPage",
    "get_run",
    "list_spans",
    "span_tree",
]

DEFAULT_SPAN_PAGE = 1000
MAX_SPAN_PAGE = 5000
MAX_TREE_DEPTH = 128


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class DecisionRecord:
    """One enforcement decision on a call: which stage, what it said, by which rule, why."""

    stage: str
    outcome: str
    rule: str | None
    reason: str | None
    details: dict[str, Any]
    at: str | None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ApprovalRecord:
    """An approval request a call made, and how it was decided."""

    id: uuid.UUID
    state: str
    rule: str
    reason: str | None
    created_at: dt.datetime
    decided_at: dt.datetime | None
    decided_by: str | None
    comment: str | None
    edited_arguments: dict[str, Any] | None


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
    blocked_by: str | None
    """The enforcement stage that refused the call (None: it was not refused)."""
    decisions: list[DecisionRecord]
    """What enforcement decided about the call, other than plain allows, in order."""
    approvals: list[ApprovalRecord]
    """The approval requests the call made, oldest first."""
    children: list[SpanNode] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class RunDetail(RunSummary):
    """A run with its inputs, outputs and the first page of its spans as a tree.

    ``spans`` holds the root spans of the page: those without a parent, and those whose parent
    never arrived or is on another page (so no span is ever hidden). ``spans_next_cursor``
    fetches the next page (``GET /api/v1/runs/{id}/spans``); None: the run has no more.
    """

    metadata: dict[str, Any]
    input: Any
    output: Any
    spans: list[SpanNode]
    spans_next_cursor: str | None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class SpanPage:
    """A page of a run's spans (oldest first) as a tree; ``next_cursor`` for the next one."""

    items: list[SpanNode]
    next_cursor: str | None


async def get_run(
    session: AsyncSession, org_id: uuid.UUID, run_id: str, *, span_limit: int = DEFAULT_SPAN_PAGE
) -> RunDetail:
    """The org's run ``run_id`` (a UUID) with the first ``span_limit`` of its spans as a tree;
    ``run_not_found`` if it has none."""
    run = await _find_run(session, org_id, run_id)
    spans = await _span_page(session, org_id, run.id, span_limit, None)
    return RunDetail(
        **summary_fields(run),
        metadata=run.metadata_,
        input=run.input,
        output=run.output,
        spans=spans.items,
        spans_next_cursor=spans.next_cursor,
    )


async def list_spans(
    session: AsyncSession,
    org_id: uuid.UUID,
    run_id: str,
    *,
    limit: int = DEFAULT_SPAN_PAGE,
    cursor: str | None = None,
) -> SpanPage:
    """A page of the run's spans after ``cursor``, oldest first, as a tree; ``run_not_found``
    if the org has no such run, ``validation_error`` for a cursor this hub did not make."""
    run = await _find_run(session, org_id, run_id)
    return await _span_page(session, org_id, run.id, limit, cursor)


async def _find_run(session: AsyncSession, org_id: uuid.UUID, run_id: str) -> Run:
    try:
        run = await session.get(Run, (org_id, uuid.UUID(run_id)))
    except ValueError:
        run = None  # an id that is no UUID names no run
    if run is None:
        raise NotFound("run_not_found", f"This org has no run {run_id!r}.")
    return run


async def _span_page(
    session: AsyncSession, org_id: uuid.UUID, run_id: uuid.UUID, limit: int, cursor: str | None
) -> SpanPage:
    if not 1 <= limit <= MAX_SPAN_PAGE:
        raise ValueError(f"limit must be between 1 and {MAX_SPAN_PAGE}, got {limit}")
    conditions = [Span.org_id == org_id, Span.run_id == run_id]
    if cursor is not None:
        conditions.append(tuple_(Span.started_at, Span.id) > decode_cursor(cursor))
    rows = list(
        await session.scalars(
            select(Span).where(*conditions).order_by(Span.started_at, Span.id).limit(limit + 1)
        )
    )
    page = rows[:limit]
    next_cursor = None
    if len(rows) > limit:
        next_cursor = encode_cursor(page[-1].started_at, page[-1].id)
    approvals = await _approvals(session, org_id, run_id, page)
    nodes = [_node(span, approvals.get(str(span.id), [])) for span in page]
    return SpanPage(items=span_tree(nodes), next_cursor=next_cursor)


async def _approvals(
    session: AsyncSession, org_id: uuid.UUID, run_id: uuid.UUID, spans: list[Span]
) -> dict[str, list[ApprovalRecord]]:
    """The approval requests of the page's blocked or approval-deciding spans, by span id."""
    asking = [str(span.id) for span in spans if _asked_for_approval(span)]
    if not asking:
        return {}
    found = await session.scalars(
        select(ApprovalRequest)
        .where(
            ApprovalRequest.org_id == org_id,
            ApprovalRequest.run_id == str(run_id),
            ApprovalRequest.span_id.in_(asking),
        )
        .order_by(ApprovalRequest.created_at, ApprovalRequest.id)
    )
    by_span: dict[str, list[ApprovalRecord]] = defaultdict(list)
    for row in found:
        by_span[row.span_id].append(
            ApprovalRecord(
                id=row.id,
                state=row.state,
                rule=row.rule,
                reason=row.reason,
                created_at=to_utc(row.created_at),
                decided_at=to_utc(row.decided_at) if row.decided_at else None,
                decided_by=row.decided_by,
                comment=row.comment,
                edited_arguments=row.edited_arguments,
            )
        )
    return by_span


def _asked_for_approval(span: Span) -> bool:
    return (
        any(
            isinstance(event, dict)
            and event.get("name") == DECISION_EVENT
            and (event.get("attributes") or {}).get("outcome") == "require_approval"
            for event in span.events
        )
        or span.blocked_by == "approval"
    )


def _decisions(events: list[Any]) -> list[DecisionRecord]:
    decisions = []
    for event in events:
        if not isinstance(event, dict) or event.get("name") != DECISION_EVENT:
            continue
        attributes = event.get("attributes") or {}
        decisions.append(
            DecisionRecord(
                stage=str(attributes.get("stage", "")),
                outcome=str(attributes.get("outcome", "")),
                rule=attributes.get("rule"),
                reason=attributes.get("reason"),
                details=attributes.get("details") or {},
                at=event.get("at"),
            )
        )
    return decisions


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


def _node(span: Span, approvals: list[ApprovalRecord]) -> SpanNode:
    return SpanNode(
        id=span.id,
        parent_id=span.parent_id,
        kind=span.kind,
        name=span.name,
        status=span.status,
        started_at=to_utc(span.started_at),
        ended_at=to_utc(span.ended_at) if span.ended_at else None,
        duration_ms=duration_ms(span.started_at, span.ended_at),
        tags=span.tags,
        attributes=span.attributes,
        input=span.input,
        output=span.output,
        error=error_info(span.error),
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
        cost_mismatch=mismatch(span.cost, span.sdk_cost),
        blocked_by=span.blocked_by,
        decisions=_decisions(span.events),
        approvals=approvals,
    )
