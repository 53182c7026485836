"""A run's totals, summed from its LLM spans (see :mod:`agentops_server.services.costs.totals`)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Sequence
from decimal import Decimal
from typing import Any

from sqlalchemy import Table, bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from agentops_server.db.models import Run, Span

__all__ = ["chunks", "total_runs"]

_CHUNK = 500


async def total_runs(session: AsyncSession, org_id: uuid.UUID, run_ids: Iterable[uuid.UUID]) -> int:
    """Set the totals of the org's runs ``run_ids`` from their spans (in ``session``'s
    transaction); the number of runs totalled (runs not stored yet are totalled on arrival)."""
    runs = _table(Run)
    statement = (
        update(runs)
        .where(runs.c.org_id == bindparam("b_org_id"), runs.c.id == bindparam("b_id"))
        .values(
            cost=bindparam("cost"),
            sdk_cost=bindparam("sdk_cost"),
            cached_input_tokens=bindparam("cached_input_tokens"),
            cache_write_tokens=bindparam("cache_write_tokens"),
            reasoning_tokens=bindparam("reasoning_tokens"),
            llm_calls=bindparam("llm_calls"),
            unpriced_calls=bindparam("unpriced_calls"),
        )
    )
    totalled = 0
    for chunk in chunks(sorted(set(run_ids))):
        # Lock first, then read the spans in a new statement: it sees every committed span.
        locked = await _lock(session, runs, org_id, chunk)
        if not locked:
            continue
        sums = {run_id: _empty(org_id, run_id) for run_id in locked}
        calls = Span.org_id == org_id, Span.run_id.in_(locked), Span.cost_match.is_not(None)
        if session.get_bind().dialect.name == "postgresql":  # numeric sums are exact there
            await _sum_in_sql(session, calls, sums)
        else:
            await _sum_in_python(session, calls, sums)
        for total in sums.values():
            if total["llm_calls"] and total["llm_calls"] == total["unpriced_calls"]:
                total["cost"] = None  # nothing priced: unknown, not $0
        await session.execute(statement, list(sums.values()))
        totalled += len(locked)
    return totalled


async def _lock(
    session: AsyncSession, runs: Table, org_id: uuid.UUID, run_ids: Sequence[uuid.UUID]
) -> list[uuid.UUID]:
    """Lock the stored runs among ``run_ids`` and return their ids, in id order (the order
    ingest locks runs in, so the two never deadlock). PostgreSQL: ``FOR UPDATE``; SQLite, which
    ignores it: a no-op write, which takes the database's write lock."""
    chosen = runs.c.org_id == org_id, runs.c.id.in_(run_ids)
    if session.get_bind().dialect.name == "postgresql":
        locked = await session.scalars(
            select(runs.c.id).where(*chosen).order_by(runs.c.id).with_for_update()
        )
        return list(locked)
    touched = await session.execute(
        update(runs).where(*chosen).values(llm_calls=runs.c.llm_calls).returning(runs.c.id)
    )
    return sorted(touched.scalars())


async def _sum_in_sql(
    session: AsyncSession, calls: tuple[Any, ...], sums: dict[uuid.UUID, dict[str, Any]]
) -> None:
    found = await session.execute(
        select(
            Span.run_id,
            func.count(),
            func.count() - func.count(Span.cost),
            func.coalesce(func.sum(Span.cost), 0),
            func.sum(Span.sdk_cost),
            func.coalesce(func.sum(Span.cached_input_tokens), 0),
            func.coalesce(func.sum(Span.cache_write_tokens), 0),
            func.coalesce(func.sum(Span.reasoning_tokens), 0),
        )
        .where(*calls)
        .group_by(Span.run_id)
    )
    for run_id, count, unpriced, cost, sdk_cost, cached, written, reasoning in found:
        sums[run_id].update(
            llm_calls=count,
            unpriced_calls=unpriced,
            cost=cost,
            sdk_cost=sdk_cost,
            cached_input_tokens=cached,
            cache_write_tokens=written,
            reasoning_tokens=reasoning,
        )


async def _sum_in_python(
    session: AsyncSession, calls: tuple[Any, ...], sums: dict[uuid.UUID, dict[str, Any]]
) -> None:
    """SQLite sums numerics as floats: the exact sums are made here, in Decimal."""
    found = await session.execute(
        select(
            Span.run_id,
            Span.cost,
            Span.sdk_cost,
            Span.cached_input_tokens,
            Span.cache_write_tokens,
            Span.reasoning_tokens,
        ).where(*calls)
    )
    for run_id, cost, sdk_cost, cached, written, reasoning in found:
        total = sums[run_id]
        total["llm_calls"] += 1
        if cost is None:
            total["unpriced_calls"] += 1
        else:
            total["cost"] += cost
        if sdk_cost is not None:
            total["sdk_cost"] = (total["sdk_cost"] or Decimal(0)) + sdk_cost
        total["cached_input_tokens"] += cached or 0
        total["cache_write_tokens"] += written or 0
        total["reasoning_tokens"] += reasoning or 0


def _empty(org_id: uuid.UUID, run_id: uuid.UUID) -> dict[str, Any]:
    return {
        "b_org_id": org_id,
        "b_id": run_id,
        "cost": Decimal(0),
        "sdk_cost": None,
        "cached_input_tokens": 0,
        "cache_write_tokens": 0,
        "reasoning_tokens": 0,
        "llm_calls": 0,
        "unpriced_calls": 0,
    }


def chunks(items: Sequence[Any]) -> Iterator[Sequence[Any]]:
    """``items`` a few hundred at a time (SQL parameter lists stay short)."""
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


def _table(model: Any) -> Table:
    table = model.__table__
    assert isinstance(table, Table)
    return table
