"""Rebuilding a range's rollups from its runs (a maintenance path: after upgrading, after
moving agents between teams, or to repair)."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import and_, select
from sqlalchemy.ext.asyncio import AsyncEngine

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
    """Roll up again every run of the org that started in ``[start, end)`` (its raw rows, or its
    stored contribution when they are gone), then rebuild every hour of the range from its
    runs' contributions and every day from its hours (after upgrading, after moving agents
    between teams, or to repair); the number of hours rebuilt."""
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
            for hour in hours:
                await _lock(session, org_id, HOUR, hour)
                await _replace(session, org_id, HOUR, hour, await _summed(session, org_id, hour))
                await session.commit()
            for day in sorted({day_of(hour) for hour in hours}):
                await roll_up_day(session, org_id, day)
                await session.commit()
    return len(hours)
