"""Rollups: the hourly and daily totals the analytics APIs read, kept by derived work.

A task of the :data:`~agentops_server.services.telemetry.ingest.EVENTS_COMMITTED` notice finds
the hours its runs started in (a span counts in its run's hour: one that arrives before its run
is counted when the run arrives, whose notice names it) and, for each hour, in one transaction:

1. locks the hour's :class:`~agentops_server.db.models.RollupBucket` row (an upsert: on
   PostgreSQL a row lock, on SQLite the database's write lock), so two rollups of one hour take
   turns; no rollup locks runs or spans, so none can deadlock with ingest or run totals;
2. reads the hour's runs and their spans' totals in new statements, which see every committed
   row, and replaces the hour's rows of every dimension with what they add up to;
3. locks the day's bucket row the same way and replaces the day's rows with the sum of its
   hours' rows.

Every rollup recomputes from the raw rows, so a duplicate, a retry or an event out of order
changes nothing, and whichever rollup of an hour runs last after its last commit leaves it
exact. Costs are read from the spans, priced in the ingest transaction, never from the runs'
totals (themselves derived work on PostgreSQL). See docs/decisions/0031-analytics-rollups.md.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, case, delete, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from agentops_server.backends.derived_work import DerivedWork
from agentops_server.db.engine import open_session
from agentops_server.db.models import Agent, RollupBucket, RollupRow, Run, Span
from agentops_server.db.tenancy import tenant
from agentops_server.db.upsert import dialect_insert
from agentops_server.services.analytics import histogram
from agentops_server.services.costs.run_totals import chunks
from agentops_server.services.costs.totals import REPRICED
from agentops_server.services.telemetry.ingest import EVENTS_COMMITTED

__all__ = [
    "DIMENSIONS",
    "STORED",
    "HOUR",
    "DAY",
    "RollupTasks",
    "Totals",
    "day_of",
    "hour_of",
    "roll_up_day",
    "roll_up_hour",
    "roll_up_range",
    "roll_up_runs",
    "take_ticket",
]

logger = logging.getLogger("agentops_server.analytics")

HOUR, DAY = "hour", "day"
DIMENSIONS = ("org", "agent", "team", "environment", "model")
"""What rollups are kept by: the whole org (key ``""``), an agent's name, a team's id (``""``:
agents of no team), an environment, a model (``""``: calls that named none)."""

OrgChanged = Callable[[uuid.UUID], Awaitable[None]]
"""Told an org's id after its rollups changed (the agent stats cache forgets the org)."""

_COUNTS = (
    "runs",
    "succeeded",
    "failures",
    "blocked_calls",
    "spans",
    "llm_calls",
    "tool_calls",
    "unpriced_calls",
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "latency_ms_sum",
)
_TOKENS = (
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
)
_SPAN_COUNTS = ("blocked_calls", "spans", "llm_calls", "tool_calls", "unpriced_calls", *_TOKENS)
"""What a run's spans add."""


@dataclasses.dataclass(slots=True)
class Totals:
    """What the runs of one bucket and key add up to (the columns of a rollup row)."""

    runs: int = 0
    succeeded: int = 0
    failures: int = 0
    blocked_calls: int = 0
    spans: int = 0
    llm_calls: int = 0
    tool_calls: int = 0
    unpriced_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    latency_ms_sum: int = 0
    cost: Decimal = Decimal(0)
    latency: histogram.Histogram = dataclasses.field(default_factory=dict)
    last_run_at: dt.datetime | None = None

    def add(self, other: Totals) -> None:
        """Count ``other`` in."""
        for name in _COUNTS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.cost += other.cost
        self.latency = histogram.merge((self.latency, other.latency))
        self.last_run_at = _latest(self.last_run_at, other.last_run_at)

    @property
    def tokens(self) -> int:
        """Every token counted, of every kind."""
        return sum(getattr(self, name) for name in _TOKENS)

    @classmethod
    def of_row(cls, row: Any) -> Totals:
        """The totals a stored rollup row holds (a :class:`RollupRow`, or a row of its
        columns)."""
        return cls.of_values([getattr(row, name) for name in STORED])

    @classmethod
    def of_values(cls, values: Sequence[Any]) -> Totals:
        """The totals of the values of :data:`STORED`, in that order."""
        *counts, cost, latency, last_run_at = values
        totals = cls(*counts)
        totals.cost, totals.latency = Decimal(cost or 0), dict(latency or {})
        totals.last_run_at = last_run_at
        return totals


STORED = (*_COUNTS, "cost", "latency", "last_run_at")
"""The columns of a rollup row that hold its totals, in the order of :class:`Totals`'s fields."""


Key = tuple[str, str]
"""A dimension and a key of it."""


class RollupTasks:
    """The rollup task of :data:`EVENTS_COMMITTED`, bound to the process's engine; ``changed``
    is told each org whose rollups it changed."""

    def __init__(self, engine: AsyncEngine, changed: OrgChanged | None = None) -> None:
        self._engine = engine
        self._changed = changed

    def register(self, derived: DerivedWork) -> None:
        """Register the rollup tasks: after ingest, and after a price recompute."""
        derived.register(EVENTS_COMMITTED, self.events_committed)
        derived.register(REPRICED, self.repriced)

    async def events_committed(self, notice: Mapping[str, Any]) -> None:
        """Roll up again the hours of the runs a commit touched, its spans' runs included."""
        await self._roll_up(notice, span_ids=notice.get("span_ids", ()))

    async def repriced(self, notice: Mapping[str, Any]) -> None:
        """Roll up again the hours of the runs a price recompute re-priced."""
        await self._roll_up(notice, span_ids=())

    async def _roll_up(self, notice: Mapping[str, Any], span_ids: Iterable[str]) -> None:
        org_id = uuid.UUID(str(notice["org_id"]))
        run_ids = {uuid.UUID(value) for value in notice.get("run_ids", ())}
        with tenant(org_id=org_id):
            async with open_session(self._engine) as session:
                hours = await roll_up_runs(
                    session, org_id, run_ids, {uuid.UUID(value) for value in span_ids}
                )
        if hours and self._changed is not None:
            await self._changed(org_id)


async def roll_up_runs(
    session: AsyncSession,
    org_id: uuid.UUID,
    run_ids: Iterable[uuid.UUID],
    span_ids: Iterable[uuid.UUID] = (),
) -> set[dt.datetime]:
    """Roll up again every hour the runs ``run_ids`` (and the runs of ``span_ids``) started in,
    committing ``session`` after each step (a ticket, then the hour and its day); the hours."""
    hours = await touched_hours(session, org_id, run_ids, span_ids)
    await session.commit()
    for hour in sorted(hours):
        ticket = await take_ticket(session, org_id, hour)
        await session.commit()
        await roll_up_hour(session, org_id, hour, ticket=ticket)
        await session.commit()
    return hours


async def touched_hours(
    session: AsyncSession,
    org_id: uuid.UUID,
    run_ids: Iterable[uuid.UUID],
    span_ids: Iterable[uuid.UUID],
) -> set[dt.datetime]:
    """The hours the stored runs among ``run_ids`` and the runs of ``span_ids`` started in."""
    runs = set(run_ids)
    for chunk in chunks(sorted(set(span_ids))):
        found = await session.execute(
            select(Span.run_id).where(Span.org_id == org_id, Span.id.in_(chunk)).distinct()
        )
        runs.update(found.scalars())
    hours: set[dt.datetime] = set()
    for chunk in chunks(sorted(runs)):
        starts = await session.scalars(
            select(Run.started_at).where(Run.org_id == org_id, Run.id.in_(chunk))
        )
        hours.update(hour_of(moment) for moment in starts)
    return hours


async def roll_up_hour(
    session: AsyncSession,
    org_id: uuid.UUID,
    hour: dt.datetime,
    *,
    with_day: bool = True,
    ticket: int | None = None,
) -> bool:
    """Replace the rollups of ``hour`` (and of its day, ``with_day``) with what the raw rows add
    up to now (in ``session``'s transaction; the caller commits); whether it did.

    With a ``ticket`` (:func:`take_ticket`, taken after the commit being rolled up), it does not
    when a rollup that began after the ticket was taken already did: that one read the commit.
    """
    wanted, done = await _lock(session, org_id, HOUR, hour)
    if ticket is not None and done >= ticket:
        return False
    hourly = await _from_raw(session, org_id, hour)
    await _replace(session, org_id, HOUR, hour, hourly)
    await session.execute(
        update(RollupBucket)
        .where(
            RollupBucket.org_id == org_id,
            RollupBucket.grain == HOUR,
            RollupBucket.bucket_start == hour,
        )
        .values(done=wanted)
    )
    if with_day:
        await roll_up_day(session, org_id, day_of(hour))
    return True


async def roll_up_day(session: AsyncSession, org_id: uuid.UUID, day: dt.datetime) -> None:
    """Replace the rollups of ``day`` with the sums of its hours' rows (in ``session``'s
    transaction, after any hour's lock: the order that cannot deadlock)."""
    await _lock(session, org_id, DAY, day)
    await _replace(session, org_id, DAY, day, await _from_hours(session, org_id, day))


async def roll_up_range(
    engine: AsyncEngine, org_id: uuid.UUID, start: dt.datetime, end: dt.datetime
) -> int:
    """Roll up every hour of ``[start, end)`` in which one of the org's runs started (rollups of
    rows stored before rollups existed); the number of hours rolled up."""
    with tenant(org_id=org_id):
        async with open_session(engine) as session:
            found = await session.execute(
                select(Run.started_at).where(
                    Run.org_id == org_id, Run.started_at >= start, Run.started_at < end
                )
            )
            hours = sorted({hour_of(moment) for moment in found.scalars()})
        for hour in hours:
            async with open_session(engine) as session:
                await roll_up_hour(session, org_id, hour, with_day=False)
                await session.commit()
        for day in sorted({day_of(hour) for hour in hours}):
            async with open_session(engine) as session:
                await roll_up_day(session, org_id, day)
                await session.commit()
    return len(hours)


def hour_of(moment: dt.datetime) -> dt.datetime:
    """The start of the UTC hour of ``moment``."""
    return moment.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)


def day_of(moment: dt.datetime) -> dt.datetime:
    """The start of the UTC day of ``moment``."""
    return hour_of(moment).replace(hour=0)


# -- one hour from the raw rows -------------------------------------------------------------------


_IS_CALL = or_(
    Span.kind == "llm",
    Span.model.is_not(None),
    Span.input_tokens.is_not(None),
    Span.output_tokens.is_not(None),
)
"""An LLM call (as :func:`agentops_server.services.costs.prices.is_call` judges a span)."""


async def _from_raw(
    session: AsyncSession, org_id: uuid.UUID, hour: dt.datetime
) -> dict[Key, Totals]:
    """The totals of every dimension's keys for the runs that started in ``hour``."""
    in_hour = and_(
        Run.org_id == org_id,
        Run.started_at >= hour,
        Run.started_at < hour + dt.timedelta(hours=1),
    )
    runs = await session.execute(
        select(Run.id, Run.agent, Run.environment, Run.status, Run.started_at, Run.ended_at)
        .add_columns(Agent.team_id)
        .outerjoin(Agent, and_(Agent.org_id == Run.org_id, Agent.name == Run.agent))
        .where(in_hour)
    )
    spans = await session.execute(
        select(
            Span.run_id,
            _IS_CALL.label("is_call"),
            Span.model,
            func.count().label("spans"),
            func.sum(case((_IS_CALL, 1), else_=0)).label("llm_calls"),
            func.sum(case((Span.kind == "tool", 1), else_=0)).label("tool_calls"),
            func.sum(case((Span.status == "blocked", 1), else_=0)).label("blocked_calls"),
            func.sum(case((and_(_IS_CALL, Span.cost.is_(None)), 1), else_=0)).label(
                "unpriced_calls"
            ),
            *(func.sum(getattr(Span, name)).label(name) for name in _TOKENS),
            func.sum(Span.cost).label("cost"),
        )
        .join(Run, and_(Run.org_id == Span.org_id, Run.id == Span.run_id))
        .where(Span.org_id == org_id, in_hour)
        .group_by(Span.run_id, _IS_CALL, Span.model)
    )
    groups: dict[uuid.UUID, list[Any]] = {}
    for group in spans:
        groups.setdefault(group.run_id, []).append(group)
    totals: dict[Key, Totals] = {}
    for run in runs:
        _count_run(totals, run, groups.get(run.id, ()))
    return totals


def _count_run(totals: dict[Key, Totals], run: Any, groups: Iterable[Any]) -> None:
    """Count one run and its span groups into the keys of every dimension it has."""
    own = Totals(
        runs=1,
        succeeded=int(run.status == "ok"),
        failures=int(run.status == "error"),
        last_run_at=run.started_at,
    )
    if run.ended_at is not None and run.status != "running":
        milliseconds = max((run.ended_at - run.started_at).total_seconds() * 1000, 0.0)
        own.latency = histogram.add({}, [milliseconds])
        own.latency_ms_sum = round(milliseconds)
    whole = dataclasses.replace(own, latency=dict(own.latency))
    by_model: dict[str, Totals] = {}
    for group in groups:
        spans = _spans_of(group)
        whole.add(spans)
        if group.is_call:
            model = group.model or ""
            if model not in by_model:
                by_model[model] = dataclasses.replace(own, latency=dict(own.latency))
            by_model[model].add(spans)
    team = "" if run.team_id is None else str(run.team_id)
    keys = [("org", ""), ("agent", run.agent), ("team", team), ("environment", run.environment)]
    for key in keys:
        totals.setdefault(key, Totals()).add(whole)
    for model, spans_of_model in by_model.items():
        totals.setdefault(("model", model), Totals()).add(spans_of_model)


def _spans_of(group: Any) -> Totals:
    """What one group of a run's spans adds (no run, no latency)."""
    values: dict[str, Any] = {name: int(getattr(group, name) or 0) for name in _SPAN_COUNTS}
    return Totals(**values, cost=Decimal(group.cost or 0))


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


async def _lock(
    session: AsyncSession, org_id: uuid.UUID, grain: str, start: dt.datetime
) -> tuple[int, int]:
    """Take the bucket's lock (its row, made if need be) until the transaction ends; the
    bucket's tickets (``wanted``) and the ticket its last rollup covered (``done``)."""
    now = dt.datetime.now(dt.UTC)
    table = RollupBucket.__table__
    statement = dialect_insert(session, table).values(  # type: ignore[arg-type]
        org_id=org_id, grain=grain, bucket_start=start, refreshed_at=now, wanted=0, done=0
    )
    found = await session.execute(
        statement.on_conflict_do_update(
            index_elements=["org_id", "grain", "bucket_start"], set_={"refreshed_at": now}
        ).returning(table.c.wanted, table.c.done)
    )
    wanted, done = found.one()
    return int(wanted), int(done)


async def take_ticket(session: AsyncSession, org_id: uuid.UUID, hour: dt.datetime) -> int:
    """A new ticket of the hour, taken (and committed by the caller) after the commit to roll
    up: every rollup of the hour that takes its lock later reads that commit, and records the
    last ticket taken before it read as ``done``, so a ticket at or below ``done`` is covered.
    Many notices of one busy hour thus cost one rollup, never one each (no clock involved)."""
    table = RollupBucket.__table__
    statement = dialect_insert(session, table).values(  # type: ignore[arg-type]
        org_id=org_id,
        grain=HOUR,
        bucket_start=hour,
        refreshed_at=dt.datetime.now(dt.UTC),
        wanted=1,
        done=0,
    )
    found = await session.execute(
        statement.on_conflict_do_update(
            index_elements=["org_id", "grain", "bucket_start"],
            set_={"wanted": table.c.wanted + 1},
        ).returning(table.c.wanted)
    )
    return int(found.scalar_one())


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
    if not totals:
        return
    rows = [
        {
            "org_id": org_id,
            "grain": grain,
            "dimension": dimension,
            "key": key,
            "bucket_start": start,
            **{name: getattr(value, name) for name in _COUNTS},
            "cost": value.cost,
            "latency": value.latency,
            "last_run_at": value.last_run_at,
        }
        for (dimension, key), value in sorted(totals.items())
    ]
    for chunk in chunks(rows):
        await session.execute(insert(RollupRow), list(chunk))


def _latest(first: dt.datetime | None, second: dt.datetime | None) -> dt.datetime | None:
    if first is None or second is None:
        return first or second
    return max(first, second)
