"""Retention: an org's raw runs and spans (and their search documents) that started before its
:func:`cutoff` (the start of the UTC day ``retention_days`` days before today) are deleted, and
then the runs' rollup contributions (what each run adds to its hour's rollups); the ledger of
budget charges, prices, rollups and audit outlive them. A rollup that finds a run gone leaves its
contribution alone, and a rebuild leaves an hour retention has begun on as it is, so the rollups
of a purged hour keep their figures (docs/decisions/0031-analytics-rollups.md).

:func:`purge` deletes in batches of at most :data:`BATCH` rows, each batch its own short
transaction (``DELETE ... WHERE id IN (SELECT id ... LIMIT n)`` on the ``(org_id, started_at)``
indexes; ``(org_id, hour)`` for contributions), so a purge of millions of rows never holds a lock
for long: ingest, which writes new rows, waits at most for one batch on SQLite (one writer) and
for nothing on PostgreSQL.

On PostgreSQL spans are also partitioned by day (docs/decisions/0036-span-partitions.md): a day
every org's retention has passed is dropped whole by
:func:`~agentops_server.services.telemetry.partitions.drop_expired`, before the purges, which then
find in the kept partitions only the rows of orgs keeping less than the longest retention.
Cutoffs fall on whole UTC days so that an org keeping the longest retention has all its expired
spans in droppable partitions.

It runs as the derived-work task :data:`RETENTION` (``{"org_id"}``), which any process holding
the queue may enqueue. The hub schedules :data:`RETENTION_DUE` itself, daily by default
(``AGENTOPS_UPKEEP_RETENTION``; docs/decisions/0037-scheduled-upkeep.md): the partitions' upkeep,
then one :data:`RETENTION` notice per org. ``agentops-hub jobs retention`` does the same at once
(partitions, then every org or one), for a hub whose schedule is off.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Mapping
from typing import Any, Final

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncEngine

from agentops_server.backends.derived_work import DerivedWork
from agentops_server.db.engine import create_async_db_engine, open_session
from agentops_server.db.models import Org, RollupContribution, Run, RunSearchDocument, Span
from agentops_server.db.tenancy import tenant
from agentops_server.services.telemetry import partitions

__all__ = [
    "BATCH",
    "RETENTION",
    "RETENTION_DUE",
    "Purged",
    "cutoff",
    "every_org",
    "purge",
    "purge_org",
    "register",
]

RETENTION: Final = "telemetry.retention"
"""The task that applies an org's retention: ``{"org_id"}``."""
RETENTION_DUE: Final = "telemetry.retention_due"
"""The task that applies every org's retention (scheduled; payload unused): the partitions'
upkeep, then a :data:`RETENTION` notice per org."""
BATCH: Final = 1000
"""Rows deleted per transaction."""

_TABLES: tuple[tuple[Any, Any, Any], ...] = (
    (Span, Span.id, Span.started_at),
    (RunSearchDocument, RunSearchDocument.id, RunSearchDocument.started_at),
    (Run, Run.id, Run.started_at),  # after its spans
    # After its run. By hour (its index), the same rows: cutoffs fall on whole hours.
    (RollupContribution, RollupContribution.run_id, RollupContribution.hour),
)
"""What a purge deletes, in order: each table, its id and the moment its rows expire by."""


@dataclasses.dataclass(frozen=True, slots=True)
class Purged:
    """How many rows of each kind a purge deleted."""

    runs: int = 0
    spans: int = 0
    documents: int = 0
    contributions: int = 0


async def purge(
    engine: AsyncEngine,
    org_id: uuid.UUID,
    *,
    days: int,
    now: dt.datetime | None = None,
    batch: int = BATCH,
) -> Purged:
    """Delete the org's runs, spans, search documents and rollup contributions that started
    before :func:`cutoff` of ``days``, ``batch`` rows a transaction."""
    before = cutoff(days, now=now)
    counts = {}
    with tenant(org_id=org_id):
        for table in _TABLES:
            counts[table[0]] = await _purge_table(engine, table, org_id, before, batch)
    return Purged(
        runs=counts[Run],
        spans=counts[Span],
        documents=counts[RunSearchDocument],
        contributions=counts[RollupContribution],
    )


def cutoff(days: int, *, now: dt.datetime | None = None) -> dt.datetime:
    """What an org keeping ``days`` days keeps starts here: midnight UTC ``days`` days before
    today (so today and ``days`` whole days before it are kept)."""
    today = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).date()
    return dt.datetime.combine(today - dt.timedelta(days=days), dt.time(), dt.UTC)


async def purge_org(engine: AsyncEngine, org_id: uuid.UUID, *, batch: int = BATCH) -> Purged:
    """Apply the org's own ``retention_days`` (nothing if the org is gone)."""
    with tenant(org_id=org_id):
        async with open_session(engine) as session:
            days = await session.scalar(select(Org.retention_days).where(Org.id == org_id))
    if days is None:
        return Purged()
    return await purge(engine, org_id, days=days, batch=batch)


async def every_org(database_url: str) -> list[uuid.UUID]:
    """Every org's id, read as the database's own user (the app role sees an org's row only
    while it acts for that org)."""
    engine = create_async_db_engine(database_url)
    try:
        async with engine.connect() as connection:
            found = await connection.scalars(select(Org.__table__.c.id))
            return [uuid.UUID(str(org_id)) for org_id in found]
    finally:
        await engine.dispose()


def register(derived: DerivedWork, engine: AsyncEngine, database_url: str) -> None:
    """Register the :data:`RETENTION` task (on ``engine``, acting for the notice's org) and
    :data:`RETENTION_DUE` (as the database's own user at ``database_url``)."""

    async def apply_retention(notice: Mapping[str, Any]) -> None:
        await purge_org(engine, uuid.UUID(str(notice["org_id"])))

    async def apply_every_retention(_notice: Mapping[str, Any]) -> None:
        await partitions.keep(database_url)  # whole days first, as `jobs retention` does
        for org_id in await every_org(database_url):
            await derived.enqueue(RETENTION, {"org_id": str(org_id)})

    derived.register(RETENTION, apply_retention)
    derived.register(RETENTION_DUE, apply_every_retention)


async def _purge_table(
    engine: AsyncEngine,
    table: tuple[Any, Any, Any],
    org_id: uuid.UUID,
    cutoff: dt.datetime,
    batch: int,
) -> int:
    model, id_column, moment = table
    total = 0
    while True:
        old = (
            select(id_column)
            .where(model.org_id == org_id, moment < cutoff)
            .limit(batch)
            .scalar_subquery()
        )
        async with open_session(engine) as session, session.begin():
            result = await session.execute(
                delete(model)
                .where(model.org_id == org_id, id_column.in_(old))
                .execution_options(synchronize_session=False)
            )
        deleted = int(getattr(result, "rowcount", 0) or 0)
        total += deleted
        if deleted < batch:
            return total
