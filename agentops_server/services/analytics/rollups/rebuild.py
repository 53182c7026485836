"""Rebuilding a range's rollups from its runs (a maintenance path: after upgrading, after
moving agents between teams, or to repair)."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import and_, exists, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from agentops_server.db.engine import open_session
from agentops_server.db.models import RollupContribution, Run
from agentops_server.db.tenancy import tenant
from agentops_server.services.analytics.rollups.buckets import _lock, _replace, roll_up_day
from agentops_server.services.analytics.rollups.contributions import _summed
from agentops_server.services.analytics.rollups.incremental import roll_up_runs
from agentops_server.services.analytics.rollups.totals import HOUR, day_of, hour_of


async def roll_up_range(
    engine: AsyncEngine, org_id: uuid.UUID, start: dt.datetime, end: dt.datetime
) -> int:
    """Roll up again every run of the org that started in ``[start, end)`` from its raw rows,
    then rebuild every hour of the range from its runs' contributions and every day from its
    hours (after upgrading, after moving agents between teams, or to repair); the number of
    hours rebuilt. An hour retention has begun on (a run of it is gone) keeps its rows: its
    contributions go after their runs, so what is left of them no longer adds up to it."""
    in_range = and_(
        RollupContribution.org_id == org_id,
        RollupContribution.hour >= hour_of(start),
        RollupContribution.hour < end,
        RollupContribution.started_at >= start,
        RollupContribution.started_at < end,
    )
    with tenant(org_id=org_id):
        async with open_session(engine) as session:
            runs = set(
                await session.scalars(
                    select(Run.id).where(
                        Run.org_id == org_id, Run.started_at >= start, Run.started_at < end
                    )
                )
            )
            runs.update(await session.scalars(select(RollupContribution.run_id).where(in_range)))
            await roll_up_runs(session, org_id, runs)
            found = await session.scalars(select(RollupContribution.hour).where(in_range))
            hours = sorted(set(found))
            await session.commit()
            rebuilt = []
            for hour in hours:
                await _lock(session, org_id, HOUR, hour)
                summed = await _summed(session, org_id, hour)
                if summed and not await _purged(session, org_id, hour):
                    await _replace(session, org_id, HOUR, hour, summed)
                    rebuilt.append(hour)
                await session.commit()
            for day in sorted({day_of(hour) for hour in rebuilt}):
                await roll_up_day(session, org_id, day)
                await session.commit()
    return len(rebuilt)


async def _purged(session: AsyncSession, org_id: uuid.UUID, hour: dt.datetime) -> bool:
    """Whether retention deleted a run counted in ``hour`` (only retention deletes runs)."""
    gone = (
        select(RollupContribution.run_id)
        .where(
            RollupContribution.org_id == org_id,
            RollupContribution.hour == hour,
            ~exists().where(Run.org_id == org_id, Run.id == RollupContribution.run_id),
        )
        .limit(1)
    )
    return await session.scalar(gone) is not None
