"""The rows of one bucket (an hour or a day): its lock, changing its rows by differences,
replacing them, and a day from its hours."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Collection, Iterable, Mapping
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from agentops_server.db.models import RollupBucket, RollupRow
from agentops_server.db.upsert import dialect_insert
from agentops_server.services.analytics.rollups.contributions import Contribution, _summed
from agentops_server.services.analytics.rollups.totals import (
    DAY,
    HOUR,
    STORED,
    Key,
    Totals,
    _latest,
    day_of,
)
from agentops_server.services.costs.run_totals import chunks


async def roll_up_day(session: AsyncSession, org_id: uuid.UUID, day: dt.datetime) -> None:
    """Replace the rollups of ``day`` with the sums of its hours' rows (in ``session``'s
    transaction, after any hour's lock: the order that cannot deadlock)."""
    await _lock(session, org_id, DAY, day)
    await _replace(session, org_id, DAY, day, await _from_hours(session, org_id, day))


# -- changing rows by differences -----------------------------------------------------------------


async def _apply(
    session: AsyncSession,
    org_id: uuid.UUID,
    old: Iterable[Contribution],
    new: Iterable[Contribution],
) -> set[dt.datetime]:
    """Take ``old`` out of the rows of their hours and days and put ``new`` in (the
    contributions already stored); the hours changed."""
    buckets: dict[tuple[str, dt.datetime], tuple[dict[Key, Totals], dict[Key, Totals]]] = {}
    for side, contributions in enumerate((old, new)):
        for contribution in contributions:
            for bucket in ((HOUR, contribution.hour), (DAY, day_of(contribution.hour))):
                into = buckets.setdefault(bucket, ({}, {}))[side]
                for key, totals in contribution.rows.items():
                    into.setdefault(key, Totals()).add(totals)
    # Hours first: a day whose latest run left it reads the latest from its hours' rows.
    for grain, start in sorted(buckets, key=lambda bucket: (bucket[0] == DAY, bucket[1])):
        removed, added = buckets[(grain, start)]
        await _change(session, org_id, grain, start, removed=removed, added=added)
    return {start for grain, start in buckets if grain == HOUR}


async def _change(
    session: AsyncSession,
    org_id: uuid.UUID,
    grain: str,
    start: dt.datetime,
    *,
    removed: Mapping[Key, Totals],
    added: Mapping[Key, Totals],
) -> None:
    """Subtract ``removed`` from the bucket's rows and add ``added``; a row left with no run
    goes. A row whose latest run was taken out and not put back reads its latest again."""
    keys = set(removed) | set(added)
    rows = await _rows(session, org_id, grain, start, keys)
    changed: dict[Key, Totals] = {}
    stale: set[Key] = set()
    for key in keys:
        totals = Totals()
        if key in rows:
            totals.add(rows[key])
        if key in removed:
            totals.subtract(removed[key])
        if key in added:
            totals.add(added[key])
        latest = rows[key].last_run_at if key in rows else None
        gone = removed[key].last_run_at if key in removed else None
        put_back = added[key].last_run_at if key in added else None
        if (
            latest is not None
            and gone is not None
            and gone >= latest
            and (put_back is None or put_back < gone)
        ):
            stale.add(key)
        changed[key] = totals
    for key, moment in (await _latest_of(session, org_id, grain, start, stale)).items():
        changed[key].last_run_at = moment
    gone_keys = sorted(key for key, totals in changed.items() if totals.runs <= 0)
    for dimension, name in gone_keys:
        await session.execute(
            delete(RollupRow).where(
                RollupRow.org_id == org_id,
                RollupRow.grain == grain,
                RollupRow.bucket_start == start,
                RollupRow.dimension == dimension,
                RollupRow.key == name,
            )
        )
    kept = {key: totals for key, totals in changed.items() if totals.runs > 0}
    if kept:
        table = RollupRow.__table__
        statement = dialect_insert(session, table)  # type: ignore[arg-type]
        upsert = statement.on_conflict_do_update(
            index_elements=["org_id", "grain", "dimension", "key", "bucket_start"],
            set_={name: statement.excluded[name] for name in STORED},
        )
        for chunk in chunks(_row_values(org_id, grain, start, kept)):
            await session.execute(upsert, list(chunk))


async def _rows(
    session: AsyncSession,
    org_id: uuid.UUID,
    grain: str,
    start: dt.datetime,
    keys: Collection[Key],
) -> dict[Key, Totals]:
    """The stored rows of the bucket among ``keys``."""
    found = await session.execute(
        select(*RollupRow.__table__.c).where(
            RollupRow.org_id == org_id,
            RollupRow.grain == grain,
            RollupRow.bucket_start == start,
            RollupRow.dimension.in_(sorted({dimension for dimension, _ in keys})),
            RollupRow.key.in_(sorted({key for _, key in keys})),
        )
    )
    rows = {(row.dimension, row.key): Totals.of_row(row) for row in found}
    return {key: totals for key, totals in rows.items() if key in keys}


async def _latest_of(
    session: AsyncSession,
    org_id: uuid.UUID,
    grain: str,
    start: dt.datetime,
    keys: Collection[Key],
) -> dict[Key, dt.datetime | None]:
    """The latest run of each of ``keys`` in the bucket: from the hour's stored contributions,
    or the day's hour rows (already changed)."""
    latest: dict[Key, dt.datetime | None] = dict.fromkeys(keys)
    if not keys:
        return latest
    if grain == HOUR:
        for key, totals in (await _summed(session, org_id, start)).items():
            if key in latest:
                latest[key] = totals.last_run_at
        return latest
    found = await session.execute(
        select(RollupRow.dimension, RollupRow.key, RollupRow.last_run_at).where(
            RollupRow.org_id == org_id,
            RollupRow.grain == HOUR,
            RollupRow.bucket_start >= start,
            RollupRow.bucket_start < start + dt.timedelta(days=1),
            RollupRow.dimension.in_(sorted({dimension for dimension, _ in keys})),
            RollupRow.key.in_(sorted({key for _, key in keys})),
        )
    )
    for dimension, name, moment in found:
        if (dimension, name) in latest:
            latest[(dimension, name)] = _latest(latest[(dimension, name)], moment)
    return latest


# -- a day from its hours, and writing ------------------------------------------------------------


async def _from_hours(
    session: AsyncSession, org_id: uuid.UUID, day: dt.datetime
) -> dict[Key, Totals]:
    """The totals of every dimension's keys for ``day``: the sums of its hours' rows."""
    rows = await session.execute(
        select(*RollupRow.__table__.c).where(
            RollupRow.org_id == org_id,
            RollupRow.grain == HOUR,
            RollupRow.bucket_start >= day,
            RollupRow.bucket_start < day + dt.timedelta(days=1),
        )
    )
    totals: dict[Key, Totals] = {}
    for row in rows:
        totals.setdefault((row.dimension, row.key), Totals()).add(Totals.of_row(row))
    return totals


async def _lock(session: AsyncSession, org_id: uuid.UUID, grain: str, start: dt.datetime) -> bool:
    """Take the bucket's lock (its row, made if need be) until the transaction ends; whether
    the bucket is incremental (a new one is)."""
    now = dt.datetime.now(dt.UTC)
    table = RollupBucket.__table__
    statement = dialect_insert(session, table).values(  # type: ignore[arg-type]
        org_id=org_id, grain=grain, bucket_start=start, refreshed_at=now, incremental=True
    )
    found = await session.execute(
        statement.on_conflict_do_update(
            index_elements=["org_id", "grain", "bucket_start"], set_={"refreshed_at": now}
        ).returning(table.c.incremental)
    )
    return bool(found.scalar_one())


async def _replace(
    session: AsyncSession,
    org_id: uuid.UUID,
    grain: str,
    start: dt.datetime,
    totals: Mapping[Key, Totals],
) -> None:
    """Make the bucket's rows exactly ``totals``."""
    await session.execute(
        delete(RollupRow).where(
            RollupRow.org_id == org_id, RollupRow.grain == grain, RollupRow.bucket_start == start
        )
    )
    for chunk in chunks(_row_values(org_id, grain, start, totals)):
        await session.execute(insert(RollupRow), list(chunk))


def _row_values(
    org_id: uuid.UUID, grain: str, start: dt.datetime, totals: Mapping[Key, Totals]
) -> list[dict[str, Any]]:
    """The rollup rows of the bucket holding ``totals``, in key order."""
    return [
        {
            "org_id": org_id,
            "grain": grain,
            "dimension": dimension,
            "key": key,
            "bucket_start": start,
            **{name: getattr(value, name) for name in STORED},
        }
        for (dimension, key), value in sorted(totals.items())
    ]
