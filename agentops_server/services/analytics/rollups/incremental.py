"""Rolling up the runs a commit touched, incrementally (steps 1 to 3 of the package's docstring):
the derived-work tasks after ingest and after a price recompute."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import and_, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from agentops_server.backends.derived_work import DerivedWork
from agentops_server.db.engine import open_session
from agentops_server.db.models import RollupBucket, RollupContribution, Run, Span
from agentops_server.db.tenancy import tenant
from agentops_server.services.analytics.rollups.buckets import (
    _apply,
    _lock,
    _replace,
    roll_up_day,
)
from agentops_server.services.analytics.rollups.contributions import (
    _from_raw,
    _store,
    _stored,
    _summed,
)
from agentops_server.services.analytics.rollups.totals import DAY, HOUR, day_of, hour_of
from agentops_server.services.costs.run_totals import chunks
from agentops_server.services.costs.totals import REPRICED
from agentops_server.services.governance.agents import AGENTS_MOVED
from agentops_server.services.telemetry.ingest import EVENTS_COMMITTED

OrgChanged = Callable[[uuid.UUID], Awaitable[None]]
"""Told an org's id after its rollups changed (the agent stats cache forgets the org)."""


class RollupTasks:
    """The rollup task of :data:`EVENTS_COMMITTED`, bound to the process's engine; ``changed``
    is told each org whose rollups it changed."""

    def __init__(self, engine: AsyncEngine, changed: OrgChanged | None = None) -> None:
        self._engine = engine
        self._changed = changed

    def register(self, derived: DerivedWork) -> None:
        """Register the rollup tasks: after ingest, after a price recompute, and after agents
        changed team."""
        derived.register(EVENTS_COMMITTED, self.events_committed)
        derived.register(REPRICED, self.repriced)
        derived.register(AGENTS_MOVED, self.agents_moved)

    async def events_committed(self, notice: Mapping[str, Any]) -> None:
        """Roll up the runs a commit touched, its spans' runs included (named by the notice's
        ``span_run_ids``; looked up from ``span_ids`` for a notice that has none)."""
        if "span_run_ids" in notice:
            runs = [*notice.get("run_ids", ()), *notice["span_run_ids"]]
            await self._roll_up(notice, runs, span_ids=())
        else:
            await self._roll_up(notice, notice.get("run_ids", ()), notice.get("span_ids", ()))

    async def repriced(self, notice: Mapping[str, Any]) -> None:
        """Roll up the runs a price recompute re-priced."""
        await self._roll_up(notice, notice.get("run_ids", ()), span_ids=())

    async def agents_moved(self, notice: Mapping[str, Any]) -> None:
        """Roll up every stored run of the agents that changed team, :data:`_PAGE` runs at a
        time, so that they count under their new team (runs retention deleted stay where they
        were counted)."""
        org_id = uuid.UUID(str(notice["org_id"]))
        changed = False
        with tenant(org_id=org_id):
            async with open_session(self._engine) as session:
                for name in notice["agents"]:
                    after: tuple[dt.datetime, uuid.UUID] | None = None
                    while True:
                        page = await _runs_of_agent(session, org_id, name, after)
                        changed |= bool(await roll_up_runs(session, org_id, [p.id for p in page]))
                        if len(page) < _PAGE:
                            break
                        after = (page[-1].started_at, page[-1].id)
        if changed and self._changed is not None:
            await self._changed(org_id)

    async def _roll_up(
        self, notice: Mapping[str, Any], run_ids: Iterable[str], span_ids: Iterable[str]
    ) -> None:
        org_id = uuid.UUID(str(notice["org_id"]))
        with tenant(org_id=org_id):
            async with open_session(self._engine) as session:
                hours = await roll_up_runs(
                    session,
                    org_id,
                    {uuid.UUID(value) for value in run_ids},
                    {uuid.UUID(value) for value in span_ids},
                )
        if hours and self._changed is not None:
            await self._changed(org_id)


async def roll_up_runs(
    session: AsyncSession,
    org_id: uuid.UUID,
    run_ids: Iterable[uuid.UUID],
    span_ids: Iterable[uuid.UUID] = (),
) -> set[dt.datetime]:
    """Roll up the runs ``run_ids`` and the runs of ``span_ids``, a few hundred to a
    transaction, committing ``session`` after each; the hours whose rows changed."""
    runs = set(run_ids) | await _runs_of_spans(session, org_id, span_ids)
    await session.commit()
    changed: set[dt.datetime] = set()
    for chunk in chunks(sorted(runs)):
        changed |= await _roll_up_chunk(session, org_id, chunk)
    return changed


# -- one set of runs ------------------------------------------------------------------------------


async def _roll_up_chunk(
    session: AsyncSession, org_id: uuid.UUID, run_ids: Sequence[uuid.UUID]
) -> set[dt.datetime]:
    """Roll up the runs ``run_ids`` in one transaction (steps 1 to 3 of the module's docstring),
    and commit; the hours whose rows changed."""
    hours = await _hours_of(session, org_id, run_ids)
    await session.commit()
    while True:
        rebuilt = await _lock_hours(session, org_id, hours)
        old = await _stored(session, org_id, run_ids)
        new = await _from_raw(
            session, org_id, Run.id.in_(run_ids), Span.run_id.in_(run_ids), joined=False
        )
        needed = {contribution.hour for contribution in (*old.values(), *new.values())}
        if needed <= hours:
            break
        await session.rollback()  # a run moved hour since the hours were read: lock it too
        hours |= needed
    changed = {
        run_id: contribution
        for run_id, contribution in new.items()
        if run_id not in old or not contribution.same_as(old[run_id])
    }
    # The days' locks come after every hour's (one order for all), and only when needed.
    days = {day_of(hour) for hour in hours} if changed else set()
    for day in sorted(days | rebuilt):
        if day in rebuilt:
            await roll_up_day(session, org_id, day)
        else:
            await _lock(session, org_id, DAY, day)
    rolled: set[dt.datetime] = set()
    if changed:
        await _store(session, org_id, changed)
        old_ones = [old[run_id] for run_id in changed if run_id in old]
        rolled = await _apply(session, org_id, old_ones, changed.values())
    await session.commit()
    return rolled


_PAGE = 1000
"""Runs read at a time when rolling up all of an agent's."""


async def _runs_of_agent(
    session: AsyncSession,
    org_id: uuid.UUID,
    name: str,
    after: tuple[dt.datetime, uuid.UUID] | None,
) -> Sequence[Any]:
    """The next :data:`_PAGE` runs of the agent ``name`` after ``after``, by start then id
    (through the ``(org_id, agent, started_at)`` index)."""
    query = (
        select(Run.started_at, Run.id)
        .where(Run.org_id == org_id, Run.agent == name)
        .order_by(Run.started_at, Run.id)
        .limit(_PAGE)
    )
    if after is not None:
        query = query.where(tuple_(Run.started_at, Run.id) > tuple_(*after))
    page = (await session.execute(query)).all()
    await session.commit()
    return page


async def _runs_of_spans(
    session: AsyncSession, org_id: uuid.UUID, span_ids: Iterable[uuid.UUID]
) -> set[uuid.UUID]:
    runs: set[uuid.UUID] = set()
    for chunk in chunks(sorted(set(span_ids))):
        found = await session.execute(
            select(Span.run_id).where(Span.org_id == org_id, Span.id.in_(chunk)).distinct()
        )
        runs.update(found.scalars())
    return runs


async def _hours_of(
    session: AsyncSession, org_id: uuid.UUID, run_ids: Sequence[uuid.UUID]
) -> set[dt.datetime]:
    """The hours the runs start in and the hours of their stored contributions."""
    starts = await session.scalars(
        select(Run.started_at).where(Run.org_id == org_id, Run.id.in_(run_ids))
    )
    hours = {hour_of(moment) for moment in starts}
    stored = await session.scalars(
        select(RollupContribution.hour).where(
            RollupContribution.org_id == org_id, RollupContribution.run_id.in_(run_ids)
        )
    )
    return hours | set(stored)


async def _lock_hours(
    session: AsyncSession, org_id: uuid.UUID, hours: Collection[dt.datetime]
) -> set[dt.datetime]:
    """Lock the ``hours`` in time order; rebuild from the raw rows an hour rolled up before
    contributions existed; the days of the hours rebuilt (whose rows must follow)."""
    rebuilt: set[dt.datetime] = set()
    for hour in sorted(hours):
        if not await _lock(session, org_id, HOUR, hour):
            await _rebuild_hour(session, org_id, hour)
            rebuilt.add(day_of(hour))
    return rebuilt


async def _rebuild_hour(session: AsyncSession, org_id: uuid.UUID, hour: dt.datetime) -> None:
    """Give the raw runs of ``hour`` that have none their contribution, make the hour's rows
    the sum of its contributions and mark the hour incremental (under the hour's lock)."""
    in_hour = and_(
        Run.org_id == org_id,
        Run.started_at >= hour,
        Run.started_at < hour + dt.timedelta(hours=1),
    )
    fresh = await _from_raw(session, org_id, in_hour, in_hour, joined=True)
    counted = await _stored(session, org_id, sorted(fresh))
    await _store(session, org_id, {run: c for run, c in fresh.items() if run not in counted})
    await _replace(session, org_id, HOUR, hour, await _summed(session, org_id, hour))
    await session.execute(
        update(RollupBucket)
        .where(
            RollupBucket.org_id == org_id,
            RollupBucket.grain == HOUR,
            RollupBucket.bucket_start == hour,
        )
        .values(incremental=True)
    )
