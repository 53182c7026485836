"""Key figures of a range (``GET /api/v1/analytics/summary``) and how they are shown."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from agentops_server.services.analytics import histogram
from agentops_server.services.analytics.reading import Range, active_keys, totals_by_key
from agentops_server.services.analytics.rollups import Totals
from agentops_server.services.budgets.state import plain

__all__ = ["Change", "Kpis", "Latency", "Summary", "Tokens", "kpis_of", "summary"]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Tokens:
    """Tokens by kind, and their total."""

    input: int
    output: int
    cached_input: int
    cache_write: int
    reasoning: int
    total: int


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Latency:
    """Percentiles of the finished runs' durations (ms, within 9%: see docs/analytics.md);
    None when no run finished."""

    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    mean_ms: float | None
    finished_runs: int


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Kpis:
    """What runs did over a range."""

    runs: int
    succeeded: int
    failures: int
    error_rate: float
    """Failures over runs (0 with no run)."""
    blocked_calls: int
    spans: int
    llm_calls: int
    tool_calls: int
    unpriced_calls: int
    """LLM calls the hub could not price (not in ``cost``)."""
    cost: Decimal
    """USD, of the priced LLM calls."""
    tokens: Tokens
    latency: Latency


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Change:
    """This range against the previous one: relative changes (0.25: up 25%; None when the
    previous range had none) and, for the error rate, the difference."""

    runs: float | None
    cost: float | None
    tokens: float | None
    blocked_calls: float | None
    active_agents: float | None
    p95_latency: float | None
    error_rate_points: float


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Summary:
    """The key figures of ``[start, end)`` and of the same length before it."""

    start: dt.datetime
    end: dt.datetime
    current: Kpis
    active_agents: int
    """Agents with at least one run in the range."""
    previous: Kpis
    previous_active_agents: int
    change: Change


def kpis_of(totals: Totals) -> Kpis:
    """The figures ``totals`` show."""
    finished = histogram.count(totals.latency)
    return Kpis(
        runs=totals.runs,
        succeeded=totals.succeeded,
        failures=totals.failures,
        error_rate=rate(totals.failures, totals.runs),
        blocked_calls=totals.blocked_calls,
        spans=totals.spans,
        llm_calls=totals.llm_calls,
        tool_calls=totals.tool_calls,
        unpriced_calls=totals.unpriced_calls,
        cost=plain(totals.cost),
        tokens=Tokens(
            input=totals.input_tokens,
            output=totals.output_tokens,
            cached_input=totals.cached_input_tokens,
            cache_write=totals.cache_write_tokens,
            reasoning=totals.reasoning_tokens,
            total=totals.tokens,
        ),
        latency=Latency(
            p50_ms=histogram.percentile(totals.latency, 0.50),
            p95_ms=histogram.percentile(totals.latency, 0.95),
            p99_ms=histogram.percentile(totals.latency, 0.99),
            mean_ms=round(totals.latency_ms_sum / finished, 3) if finished else None,
            finished_runs=finished,
        ),
    )


async def summary(session: AsyncSession, org_id: uuid.UUID, span: Range) -> Summary:
    """The org's key figures over ``span`` and the range before it."""
    now, active = await _org_and_agents(session, org_id, span)
    before, active_before = await _org_and_agents(session, org_id, span.previous())
    return Summary(
        start=span.start,
        end=span.end,
        current=now,
        active_agents=active,
        previous=before,
        previous_active_agents=active_before,
        change=Change(
            runs=relative(now.runs, before.runs),
            cost=relative(now.cost, before.cost),
            tokens=relative(now.tokens.total, before.tokens.total),
            blocked_calls=relative(now.blocked_calls, before.blocked_calls),
            active_agents=relative(active, active_before),
            p95_latency=relative(now.latency.p95_ms, before.latency.p95_ms),
            error_rate_points=round(now.error_rate - before.error_rate, 6),
        ),
    )


def rate(part: int, whole: int) -> float:
    """``part`` over ``whole``, rounded to 6 places (0 for an empty whole)."""
    return round(part / whole, 6) if whole else 0.0


def relative(now: float | Decimal | None, before: float | Decimal | None) -> float | None:
    """How much ``now`` changed relative to ``before`` (None when ``before`` is none or 0)."""
    if now is None or not before:
        return None
    return round(float((Decimal(now) - Decimal(before)) / Decimal(before)), 6)


async def _org_and_agents(
    session: AsyncSession, org_id: uuid.UUID, span: Range
) -> tuple[Kpis, int]:
    org = await totals_by_key(session, org_id, "org", span)
    return kpis_of(org.get("", Totals())), await active_keys(session, org_id, "agent", span)
