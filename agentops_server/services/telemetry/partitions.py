"""Upkeep of the daily span partitions on PostgreSQL: made ahead of time, split out of the
default partition, dropped once no org keeps them (docs/decisions/0036-span-partitions.md).

- :func:`prepare` makes the partitions of today and the next :data:`AHEAD` days, and moves any
  rows the default partition caught (a day with no partition yet, a clock far off) into
  partitions of their own, so the default partition stays empty and cheap to check.
- :func:`drop_expired` drops the partitions whose whole day is past every org's retention:
  detached under a short ``lock_timeout`` (so ingest, queued behind the lock, waits at most that
  long; a partition that cannot be had is left for the next run), then dropped.

Both run as the database's own user (they change the schema: the app role may not), one after
the other in :func:`keep`: as the derived-work task :data:`PARTITIONS`, which the hub schedules
itself (at start, then every six hours by default: ``AGENTOPS_UPKEEP_PARTITIONS``; see
docs/decisions/0037-scheduled-upkeep.md), and from ``agentops-hub jobs partitions`` and
``agentops-hub jobs retention``. On SQLite they do nothing: there ``spans`` is one table and
retention deletes rows in batches (:mod:`agentops_server.services.telemetry.retention`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Mapping
from typing import Any, Final

from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from agentops_server.backends.derived_work import DerivedWork
from agentops_server.db.engine import create_async_db_engine
from agentops_server.db.partitions import (
    PARENT,
    attach_split_sql,
    create_partition_sql,
    day_of,
    days_in_default_sql,
    list_partitions_sql,
    partition_name,
)

__all__ = [
    "AHEAD",
    "LOCK_TIMEOUT",
    "PARTITIONS",
    "Upkeep",
    "drop_expired",
    "keep",
    "prepare",
    "register",
]

logger = logging.getLogger(__name__)

PARTITIONS: Final = "telemetry.partitions"
"""The task that prepares span partitions and drops expired ones (payload unused)."""
AHEAD: Final = 7
"""Days after today that get their partition ahead of time."""
LOCK_TIMEOUT: Final = "500ms"
"""The longest a detach or drop waits for its lock (ingest waits behind it meanwhile)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Upkeep:
    """What an upkeep did: partitions made, made out of default rows, dropped, left locked."""

    created: int = 0
    split: int = 0
    dropped: tuple[str, ...] = ()
    busy: tuple[str, ...] = ()


async def prepare(
    engine: AsyncEngine, *, now: dt.datetime | None = None, ahead: int = AHEAD
) -> Upkeep:
    """Make the partitions of today and the ``ahead`` days after it, and split the rows of the
    default partition out into partitions of their days."""
    if engine.dialect.name != "postgresql":
        return Upkeep()
    today = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).date()
    async with engine.connect() as connection:
        existing = set(await _day_tables(connection))
        stray = [row[0] for row in await connection.execute(text(days_in_default_sql()))]
    split = 0
    for day in stray:
        if partition_name(day) in existing:  # made after the rows came: a fresh default
            continue
        async with engine.begin() as connection:
            for statement in attach_split_sql(day):
                await connection.execute(text(statement))
        existing.add(partition_name(day))
        split += 1
    created = 0
    for offset in range(ahead + 1):
        day = today + dt.timedelta(days=offset)
        if partition_name(day) not in existing:
            async with engine.begin() as connection:
                await connection.execute(text(create_partition_sql(day)))
            created += 1
    return Upkeep(created=created, split=split)


async def drop_expired(engine: AsyncEngine, *, now: dt.datetime | None = None) -> Upkeep:
    """Drop the day partitions every org's retention has passed (all of their rows started
    before :func:`~agentops_server.services.telemetry.retention.cutoff` of the org keeping
    spans the longest)."""
    from agentops_server.services.telemetry.retention import cutoff

    if engine.dialect.name != "postgresql":
        return Upkeep()
    async with engine.connect() as connection:
        longest = await connection.scalar(text("SELECT max(retention_days) FROM orgs"))
        tables = await _day_tables(connection)
    if longest is None:  # no org seen (none, or this user is bound by row-level security)
        return Upkeep()
    oldest_kept = cutoff(int(longest), now=now).date()
    expired = sorted(name for name in tables if (day := day_of(name)) and day < oldest_kept)
    dropped, busy = [], []
    for name in expired:
        if await _detach_and_drop(engine, name, attached=tables[name]):
            dropped.append(name)
        else:
            busy.append(name)
    return Upkeep(dropped=tuple(dropped), busy=tuple(busy))


async def keep(database_url: str) -> tuple[Upkeep, Upkeep]:
    """:func:`prepare`, then :func:`drop_expired`, connected as the database's own user; what
    each did."""
    engine = create_async_db_engine(database_url)
    try:
        return await prepare(engine), await drop_expired(engine)
    finally:
        await engine.dispose()


def register(derived: DerivedWork, database_url: str) -> None:
    """Register the :data:`PARTITIONS` task (it connects as the database's own user)."""

    async def keep_partitions(_notice: Mapping[str, Any]) -> None:
        await keep(database_url)

    derived.register(PARTITIONS, keep_partitions)


async def _day_tables(connection: AsyncConnection) -> dict[str, bool]:
    """The day tables of spans, each with whether it is attached."""
    rows = await connection.execute(text(list_partitions_sql()))
    return {name: bool(attached) for name, attached in rows}


async def _detach_and_drop(engine: AsyncEngine, name: str, *, attached: bool) -> bool:
    """Detach (if ``attached``) then drop ``name``, each under :data:`LOCK_TIMEOUT`; False if a
    lock was busy (a detached table left behind is dropped by the next run).

    ``DETACH ... CONCURRENTLY`` would wait for no lock on the parent, but PostgreSQL refuses it
    on a table with a default partition, which ``spans`` has; a plain detach takes the parent's
    lock for an instant, and the timeout bounds how long ingest may queue behind it.
    """
    try:
        if attached:
            async with engine.begin() as connection:
                await connection.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
                await connection.execute(text(f"ALTER TABLE {PARENT} DETACH PARTITION {name}"))
        async with engine.begin() as connection:
            await connection.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
            await connection.execute(text(f"DROP TABLE {name}"))
    except OperationalError as exc:  # lock_not_available: the next run tries again
        logger.warning("retention: partition %s left for the next run: %s", name, exc)
        return False
    return True
