"""What the org's calls cost, broken down (``GET /api/v1/analytics/costs``)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Iterable
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from agentops_server.services.analytics.reading import Range, buckets, series
from agentops_server.services.analytics.rollups import Totals
from agentops_server.services.budgets.state import plain

__all__ = [
    "BREAKDOWNS",
    "COST_GRANULARITIES",
    "DEFAULT_RANGE",
    "CostBreakdown",
    "CostGroup",
    "CostPoint",
    "cost_breakdown",
]

BREAKDOWNS = ("agent", "team", "model", "environment")
COST_GRANULARITIES = ("day", "month")
DEFAULT_RANGE = dt.timedelta(days=30)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class CostPoint:
    """One day's or month's cost (USD) and tokens."""

    start: dt.datetime
    cost: Decimal
    tokens: int


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class CostGroup:
    """One key's cost over the range, and per day or month."""

    key: str
    cost: Decimal
    tokens: int
    llm_calls: int
    unpriced_calls: int
    """Calls the hub could not price: their cost is not in ``cost``."""
    share: float
    """Its part of the range's cost (0 to 1)."""
    points: list[CostPoint]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class CostBreakdown:
    """The range's cost by ``group_by``, the costliest key first, and the org's per bucket."""

    start: dt.datetime
    end: dt.datetime
    granularity: str
    group_by: str
    cost: Decimal
    tokens: int
    unpriced_calls: int
    points: list[CostPoint]
    groups: list[CostGroup]


async def cost_breakdown(
    session: AsyncSession, org_id: uuid.UUID, span: Range, group_by: str, granularity: str
) -> CostBreakdown:
    """The org's cost over ``span`` by ``group_by``, per ``granularity`` (``day``, ``month``;
    a range's partial first and last days count whole)."""
    starts = buckets(span, granularity)
    whole = (
        await series(session, org_id, "org", span, granularity=granularity, latency=False)
    ).get("", {})
    by_key = await series(session, org_id, group_by, span, granularity=granularity, latency=False)
    total = _sum(whole.values())
    groups = []
    for key, per_bucket in by_key.items():
        totals = _sum(per_bucket.values())
        groups.append(
            CostGroup(
                key=key,
                cost=plain(totals.cost),
                tokens=totals.tokens,
                llm_calls=totals.llm_calls,
                unpriced_calls=totals.unpriced_calls,
                share=round(float(totals.cost / total.cost), 6) if total.cost else 0.0,
                points=_points(starts, per_bucket),
            )
        )
    groups.sort(key=lambda group: (-group.cost, group.key))
    return CostBreakdown(
        start=span.start,
        end=span.end,
        granularity=granularity,
        group_by=group_by,
        cost=plain(total.cost),
        tokens=total.tokens,
        unpriced_calls=total.unpriced_calls,
        points=_points(starts, whole),
        groups=groups,
    )


def _points(starts: list[dt.datetime], per_bucket: dict[dt.datetime, Totals]) -> list[CostPoint]:
    points = []
    for start in starts:
        totals = per_bucket.get(start, Totals())
        points.append(CostPoint(start=start, cost=plain(totals.cost), tokens=totals.tokens))
    return points


def _sum(totals: Iterable[Totals]) -> Totals:
    result = Totals()
    for value in totals:
        result.add(value)
    return result
