"""Run totals and recomputes: derived work that keeps what runs cost exact.

Spans are priced in the ingest transaction (:mod:`.prices`); a run's totals (cost, the SDK's
cost, cached/cache-write/reasoning tokens, LLM calls and unpriced calls) are sums over its spans,
which may arrive in many requests, before or after the run
(:func:`~agentops_server.services.costs.run_totals.total_runs`: it first locks the runs, then
sums their spans in a new statement, so it sees every committed span).

- On PostgreSQL, ingest totals the runs whose rows its transaction wrote (their upsert holds
  their locks, so the sum, a later statement, sees every committed span, and a concurrent
  request's spans commit after it and are totalled by that request's task). Every other run a
  commit touched (the runs of its LLM calls, when the commit did not carry the run) is derived
  work: a task of the :data:`~agentops_server.services.telemetry.ingest.EVENTS_COMMITTED`
  notice re-totals the runs it owes (``owed_run_ids``). Whichever task runs last after the
  last commit sees every span, so the totals are exact once derived work has run, and a task
  that runs twice changes nothing. Locking those runs in the ingest transaction instead would
  take run locks after span locks, out of the upserts' order.
- On SQLite, which has one writer, ingest totals them in its own transaction (exact on the ack,
  and no second commit), and the task does nothing.

:func:`recompute` re-prices an org's spans that started in a time range at today's prices (the
catalog under the org's own prices) and re-totals their runs: the task of :data:`RECOMPUTE`,
recorded by ``POST /api/v1/pricing/recompute`` with a :class:`~agentops_server.db.models.
PricingJob` row that reports how it went.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from agentops_server.backends.derived_work import DerivedWork
from agentops_server.db.engine import open_session
from agentops_server.db.models import PricingJob, Span
from agentops_server.db.tenancy import tenant
from agentops_server.services.costs.prices import load_price_book, price_span_rows
from agentops_server.services.costs.run_totals import chunks, total_runs
from agentops_server.services.telemetry.ingest import EVENTS_COMMITTED

__all__ = [
    "RECOMPUTE",
    "REPRICED",
    "Repriced",
    "RunTotals",
    "owed_run_ids",
    "recompute",
    "register",
    "total_runs",
]

logger = logging.getLogger("agentops_server.costs")

RECOMPUTE = "costs.recompute"
"""The notice of a recompute job: ``{"org_id", "job_id"}`` (the job's row holds the range)."""
REPRICED = "costs.repriced"
"""The notice a recompute commits with: ``{"org_id", "run_ids"}``, the runs whose calls it
re-priced (rollups of their hours are made again)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Repriced:
    """What a recompute did: the spans it priced, the runs it totalled, and their ids."""

    spans: int
    runs: int
    run_ids: frozenset[uuid.UUID]

    def notice(self, org_id: uuid.UUID) -> dict[str, Any]:
        """The payload of :data:`REPRICED` for it."""
        return {"org_id": str(org_id), "run_ids": sorted(str(run_id) for run_id in self.run_ids)}


_COST_COLUMNS = ("cost", "cost_match", "pricing_version", "priced_model")
_PRICED_INPUT = (
    Span.id,
    Span.run_id,
    Span.kind,
    Span.model,
    Span.provider,
    Span.started_at,
    Span.input_tokens,
    Span.output_tokens,
    Span.cached_input_tokens,
    Span.cache_write_tokens,
    Span.reasoning_tokens,
    Span.cost_match,
)


class RunTotals:
    """The tasks of this module, bound to the process's engine."""

    def __init__(self, engine: AsyncEngine, derived: DerivedWork) -> None:
        self._engine = engine
        self._derived = derived

    async def events_committed(self, notice: Mapping[str, Any]) -> None:
        """Re-total the runs a commit touched and did not total itself: its runs (one may
        arrive after its spans) and the runs of its LLM calls, but those whose rows the commit
        wrote, totalled in its transaction (``owed_run_ids``)."""
        org_id = uuid.UUID(str(notice["org_id"]))
        run_ids = {uuid.UUID(value) for value in owed_run_ids(notice)}
        if not run_ids or self._engine.dialect.name == "sqlite":
            return  # one writer: ingest totalled them in its transaction
        with tenant(org_id=org_id):
            async with open_session(self._engine) as session:
                await total_runs(session, org_id, run_ids)
                await session.commit()

    async def recompute_job(self, notice: Mapping[str, Any]) -> None:
        """Run the recompute job the notice names, and record how it went on its row."""
        org_id = uuid.UUID(str(notice["org_id"]))
        job_id = uuid.UUID(str(notice["job_id"]))
        with tenant(org_id=org_id):
            async with open_session(self._engine) as session:
                job = await session.get(PricingJob, (org_id, job_id))
                if job is None or job.status != "queued":
                    return  # done by an earlier run of this task
                range_from, range_to = job.range_from, job.range_to
            async with open_session(self._engine) as session:
                try:
                    done = await recompute(session, org_id, range_from, range_to)
                    # Committed with the new costs: the rollups of their hours are made again.
                    rolled = await self._derived.record(session, REPRICED, done.notice(org_id))
                    await session.commit()
                except Exception as exc:
                    await session.rollback()
                    logger.exception("costs: recompute job %s failed", job_id)
                    await _finish(session, org_id, job_id, status="failed", error=repr(exc)[:2000])
                    return
                await self._derived.dispatch(rolled)
                await _finish(
                    session, org_id, job_id, spans_priced=done.spans, runs_totalled=done.runs
                )


def owed_run_ids(notice: Mapping[str, Any]) -> list[str]:
    """The runs an events-committed notice owes totals to: ``owed_run_ids``; for a notice of a
    hub before it, every run it touched (``run_ids`` and ``call_run_ids``)."""
    owed = notice.get("owed_run_ids")
    if owed is not None:
        return list(owed)
    return [*notice.get("run_ids", ()), *notice.get("call_run_ids", ())]


def register(derived: DerivedWork, engine: AsyncEngine) -> None:
    """Register the run totals and recompute tasks."""
    totals = RunTotals(engine, derived)
    derived.register(EVENTS_COMMITTED, totals.events_committed)
    derived.register(RECOMPUTE, totals.recompute_job)


async def recompute(
    session: AsyncSession, org_id: uuid.UUID, range_from: dt.datetime, range_to: dt.datetime
) -> Repriced:
    """Re-price the org's LLM spans that started in ``[range_from, range_to)`` at the prices
    in force now, and re-total their runs (in ``session``'s transaction: the caller commits,
    then has the rollups of the runs' hours made again, see :data:`REPRICED`)."""
    book = await load_price_book(session, org_id, fresh=True)
    spans_table = _table(Span)
    statement = (
        update(spans_table)
        .where(spans_table.c.org_id == bindparam("b_org_id"), spans_table.c.id == bindparam("b_id"))
        .values({name: bindparam(name) for name in _COST_COLUMNS})
    )
    found = await session.execute(
        select(*_PRICED_INPUT).where(
            Span.org_id == org_id,
            Span.started_at >= range_from,
            Span.started_at < range_to,
            Span.cost_match.is_not(None),
        )
    )
    rows = [dict(row._mapping) for row in found]
    price_span_rows(book, rows)
    for chunk in chunks(rows):
        params = [
            {"b_org_id": org_id, "b_id": row["id"], **{name: row[name] for name in _COST_COLUMNS}}
            for row in chunk
        ]
        await session.execute(statement, params)
    run_ids = frozenset(row["run_id"] for row in rows)
    runs = await total_runs(session, org_id, run_ids)
    return Repriced(len(rows), runs, run_ids)


async def _finish(
    session: AsyncSession, org_id: uuid.UUID, job_id: uuid.UUID, **values: Any
) -> None:
    values.setdefault("status", "done")
    await session.execute(
        update(PricingJob)
        .where(PricingJob.org_id == org_id, PricingJob.id == job_id)
        .values(finished_at=dt.datetime.now(dt.UTC), **values)
    )
    await session.commit()


def _table(model: Any) -> Table:
    table = model.__table__
    assert isinstance(table, Table)
    return table
