"""A run's totals, summed from its LLM spans (see :mod:`agentops_server.services.costs.totals`).

One ``UPDATE`` sets every total from one scan of the run's calls (the spans with a
``cost_match``). PostgreSQL's sums are exact (``numeric``). SQLite has no decimal type: it stores
costs as floating point, and they and their sums read back rounded to the column's 10 decimal
places, exact while a run's cost has at most 15 significant digits (under $100,000 at 10
places).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from sqlalchemy import Table, Uuid, bindparam, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from agentops_server.db.models import Run

__all__ = ["chunks", "total_runs"]

_CHUNK = 500


async def total_runs(
    session: AsyncSession,
    org_id: uuid.UUID,
    run_ids: Iterable[uuid.UUID],
    *,
    locked: bool = False,
) -> int:
    """Set the totals of the org's runs ``run_ids`` from their spans (in ``session``'s
    transaction); the number of runs totalled (a run not stored yet is totalled on arrival).

    The runs are locked first (``locked``: the caller holds every write lock already, as ingest
    does on SQLite) and summed in a later statement, which sees every committed span. Only the
    runs locked are totalled: one committed between the lock and the sum would be locked out of
    id order (a deadlock with ingest), and its own commit's task totals it."""
    runs = _table(Run)
    totalled = 0
    for chunk in chunks(sorted(set(run_ids))):
        held = chunk if locked else await _lock(session, runs, org_id, chunk)
        if not held:
            continue
        done = await session.execute(_TOTALS, {"org_id": org_id, "run_ids": list(held)})
        totalled += done.rowcount  # type: ignore[attr-defined]
    return totalled


# One scan of the run's calls sets every total. No calls: $0; calls but none priced: unknown
# (NULL, never $0); else the sum of the priced ones. Row-value SET: SQLite 3.15+, PostgreSQL 10+.
_TOTALS = text(
    """
    UPDATE runs SET (
        llm_calls, unpriced_calls, cost, sdk_cost,
        cached_input_tokens, cache_write_tokens, reasoning_tokens
    ) = (
        SELECT
            count(*),
            count(*) - count(calls.cost),
            COALESCE(SUM(calls.cost), CASE WHEN count(*) = 0 THEN 0 END),
            SUM(calls.sdk_cost),
            COALESCE(SUM(calls.cached_input_tokens), 0),
            COALESCE(SUM(calls.cache_write_tokens), 0),
            COALESCE(SUM(calls.reasoning_tokens), 0)
        FROM spans AS calls
        WHERE calls.org_id = runs.org_id
            AND calls.run_id = runs.id
            AND calls.cost_match IS NOT NULL
    )
    WHERE runs.org_id = :org_id AND runs.id IN :run_ids
    """
).bindparams(bindparam("org_id", type_=Uuid()), bindparam("run_ids", type_=Uuid(), expanding=True))


async def _lock(
    session: AsyncSession, runs: Table, org_id: uuid.UUID, run_ids: Sequence[uuid.UUID]
) -> Sequence[uuid.UUID]:
    """Lock the stored runs among ``run_ids``, in id order (the order ingest locks runs in, so
    the two never deadlock); the ids locked. PostgreSQL: ``FOR UPDATE``; SQLite, which ignores
    it: a no-op write, which takes the database's write lock (no other writer: all of them)."""
    chosen = runs.c.org_id == org_id, runs.c.id.in_(run_ids)
    if session.get_bind().dialect.name == "postgresql":
        found = await session.execute(
            select(runs.c.id).where(*chosen).order_by(runs.c.id).with_for_update()
        )
        return list(found.scalars())
    await session.execute(update(runs).where(*chosen).values(llm_calls=runs.c.llm_calls))
    return run_ids


def chunks(items: Sequence[Any]) -> Iterator[Sequence[Any]]:
    """``items`` a few hundred at a time (SQL parameter lists stay short)."""
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


def _table(model: Any) -> Table:
    table = model.__table__
    assert isinstance(table, Table)
    return table
