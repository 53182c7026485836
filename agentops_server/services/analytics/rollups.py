"""Rollups: the hourly and daily totals the analytics APIs read, kept by derived work, run by run.

Each run's *contribution*, what it adds to the rows of the hour it started in (per key of every
dimension: counts, tokens, cost, latency buckets), is stored beside those rows
(:class:`~agentops_server.db.models.RollupContribution`), and the rows of an hour are the sum of
its runs' contributions. A task of the
:data:`~agentops_server.services.telemetry.ingest.EVENTS_COMMITTED` notice rolls up the runs its
commit touched (its runs and the runs of its spans: a span that arrives before its run is counted
when the run arrives, whose notice names it), a few hundred runs to a transaction:

1. it locks the :class:`~agentops_server.db.models.RollupBucket` rows of the hours those runs
   start in now and of the hours of their stored contributions, in time order (upserts: row
   locks on PostgreSQL, the database's write lock on SQLite), so two rollups of one hour take
   turns, and after step 2, if a run changed, of their days; no rollup locks runs or spans, so
   none can deadlock with ingest or run totals;
2. it reads, in new statements that see every committed row, those runs' stored contributions
   and their new ones from their own raw rows (only those runs, never the whole hour); when a
   run now needs an hour it did not lock (it moved meanwhile), it rolls back and starts again
   with that hour locked too;
3. for each run whose contribution changed (the others cost no write), it subtracts the old
   one from its hour's and day's rows and adds the new one (so a run that moved hour leaves
   its old hour), deletes the rows no run counts in any more, and stores the new contribution.

A duplicate, a retry or an event out of order leaves a run's raw rows as they were (no write) or
at their newest state, which the run's next rollup reads whole, under the lock that every change
to its contribution takes: the rows stay exactly what the raw rows add up to, whatever order
the rollups run in. Costs are read from the spans, priced in the ingest transaction, never from
the runs' totals (themselves derived work on PostgreSQL). A run whose raw rows are gone
(retention) keeps its contribution, so rollups outlive them.

Hours rolled up before contributions existed (migration 0013) are rebuilt from their raw rows
the first time a rollup locks them; :func:`roll_up_range` re-rolls every run of a range and
rebuilds the range's rows from the contributions (a maintenance path).
See docs/decisions/0031-analytics-rollups.md.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import uuid
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, and_, case, delete, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from agentops_server.backends.derived_work import DerivedWork
from agentops_server.db.engine import open_session
from agentops_server.db.models import (
    Agent,
    RollupBucket,
    RollupContribution,
    RollupRow,
    Run,
    Span,
)
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
    "Contribution",
    "RollupTasks",
    "Totals",
    "day_of",
    "hour_of",
    "roll_up_day",
    "roll_up_range",
    "roll_up_runs",
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

    def subtract(self, other: Totals) -> None:
        """Count ``other`` out (all but ``last_run_at``: a latest cannot be subtracted)."""
        for name in _COUNTS:
            setattr(self, name, getattr(self, name) - getattr(other, name))
        self.cost -= other.cost
        self.latency = histogram.subtract(self.latency, other.latency)

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


@dataclasses.dataclass(frozen=True, slots=True)
class Contribution:
    """What one run adds to the rows of the hour it started in: totals by dimension and key,
    each with the run's start as ``last_run_at``."""

    hour: dt.datetime
    started_at: dt.datetime
    rows: Mapping[Key, Totals]

    def stored(self) -> list[Any]:
        """The ``rows`` column: ``[dimension, key, values]`` in key order, ``values`` the
        :data:`STORED` columns but ``last_run_at``, the cost as text to the stored scale."""
        return [
            [
                dimension,
                key,
                [
                    *(getattr(totals, name) for name in _COUNTS),
                    format(totals.cost.quantize(_COST_SCALE), "f"),
                    dict(totals.latency),
                ],
            ]
            for (dimension, key), totals in sorted(self.rows.items())
        ]

    @classmethod
    def of_stored(cls, hour: dt.datetime, started_at: dt.datetime, rows: Any) -> Contribution:
        """The contribution a :class:`RollupContribution` row holds."""
        return cls(
            hour,
            started_at,
            {
                (dimension, key): Totals.of_values([*values, started_at])
                for dimension, key, values in rows
            },
        )

    def same_as(self, other: Contribution) -> bool:
        """Whether ``other`` adds exactly what this one adds, to the same hour."""
        return (self.hour, self.started_at, self.stored()) == (
            other.hour,
            other.started_at,
            other.stored(),
        )


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


async def roll_up_day(session: AsyncSession, org_id: uuid.UUID, day: dt.datetime) -> None:
    """Replace the rollups of ``day`` with the sums of its hours' rows (in ``session``'s
    transaction, after any hour's lock: the order that cannot deadlock)."""
    await _lock(session, org_id, DAY, day)
    await _replace(session, org_id, DAY, day, await _from_hours(session, org_id, day))


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


def hour_of(moment: dt.datetime) -> dt.datetime:
    """The start of the UTC hour of ``moment``."""
    return moment.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)


def day_of(moment: dt.datetime) -> dt.datetime:
    """The start of the UTC day of ``moment``."""
    return hour_of(moment).replace(hour=0)


_COST_SCALE = Decimal("1e-10")
"""The scale of stored costs (``Numeric(20, 10)``)."""


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


# -- contributions --------------------------------------------------------------------------------


_IS_CALL = or_(
    Span.kind == "llm",
    Span.model.is_not(None),
    Span.input_tokens.is_not(None),
    Span.output_tokens.is_not(None),
)
"""An LLM call (as :func:`agentops_server.services.costs.prices.is_call` judges a span)."""


async def _from_raw(
    session: AsyncSession,
    org_id: uuid.UUID,
    runs_where: ColumnElement[bool],
    spans_where: ColumnElement[bool],
    *,
    joined: bool,
) -> dict[uuid.UUID, Contribution]:
    """The contributions of the runs ``runs_where`` picks, from their raw rows and those of
    their spans (``spans_where``, on the spans joined to their runs when ``joined``)."""
    runs = await session.execute(
        select(Run.id, Run.agent, Run.environment, Run.status, Run.started_at, Run.ended_at)
        .add_columns(Agent.team_id)
        .outerjoin(Agent, and_(Agent.org_id == Run.org_id, Agent.name == Run.agent))
        .where(Run.org_id == org_id, runs_where)
    )
    spans = select(
        Span.run_id,
        _IS_CALL.label("is_call"),
        Span.model,
        func.count().label("spans"),
        func.sum(case((_IS_CALL, 1), else_=0)).label("llm_calls"),
        func.sum(case((Span.kind == "tool", 1), else_=0)).label("tool_calls"),
        func.sum(case((Span.status == "blocked", 1), else_=0)).label("blocked_calls"),
        func.sum(case((and_(_IS_CALL, Span.cost.is_(None)), 1), else_=0)).label("unpriced_calls"),
        *(func.sum(getattr(Span, name)).label(name) for name in _TOKENS),
        func.sum(Span.cost).label("cost"),
    )
    if joined:
        spans = spans.join(Run, and_(Run.org_id == Span.org_id, Run.id == Span.run_id))
    groups: dict[uuid.UUID, list[Any]] = {}
    found = await session.execute(
        spans.where(Span.org_id == org_id, spans_where).group_by(Span.run_id, _IS_CALL, Span.model)
    )
    for group in found:
        groups.setdefault(group.run_id, []).append(group)
    return {
        run.id: Contribution(
            hour_of(run.started_at), run.started_at, _count_run(run, groups.get(run.id, ()))
        )
        for run in runs
    }


def _count_run(run: Any, groups: Iterable[Any]) -> dict[Key, Totals]:
    """What one run and its span groups add to the keys of every dimension it has."""
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
    totals: dict[Key, Totals] = dict.fromkeys(keys, whole)
    totals.update({("model", model): spans for model, spans in by_model.items()})
    return totals


def _spans_of(group: Any) -> Totals:
    """What one group of a run's spans adds (no run, no latency)."""
    values: dict[str, Any] = {name: int(getattr(group, name) or 0) for name in _SPAN_COUNTS}
    return Totals(**values, cost=Decimal(group.cost or 0))


async def _stored(
    session: AsyncSession, org_id: uuid.UUID, run_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, Contribution]:
    """The stored contributions of the runs among ``run_ids`` that have one."""
    stored: dict[uuid.UUID, Contribution] = {}
    for chunk in chunks(run_ids):
        found = await session.execute(
            select(*RollupContribution.__table__.c).where(
                RollupContribution.org_id == org_id, RollupContribution.run_id.in_(chunk)
            )
        )
        for row in found:
            stored[row.run_id] = Contribution.of_stored(row.hour, row.started_at, row.rows)
    return stored


async def _store(
    session: AsyncSession, org_id: uuid.UUID, contributions: Mapping[uuid.UUID, Contribution]
) -> None:
    """Store ``contributions`` in place of the runs' stored ones."""
    table = RollupContribution.__table__
    rows = [
        {
            "org_id": org_id,
            "run_id": run_id,
            "hour": contribution.hour,
            "started_at": contribution.started_at,
            "rows": contribution.stored(),
        }
        for run_id, contribution in sorted(contributions.items())
    ]
    statement = dialect_insert(session, table)  # type: ignore[arg-type]
    upsert = statement.on_conflict_do_update(
        index_elements=["org_id", "run_id"],
        set_={name: statement.excluded[name] for name in ("hour", "started_at", "rows")},
    )
    for chunk in chunks(rows):
        await session.execute(upsert, list(chunk))


async def _summed(session: AsyncSession, org_id: uuid.UUID, hour: dt.datetime) -> dict[Key, Totals]:
    """The sums of the contributions stored for ``hour``."""
    found = await session.execute(
        select(RollupContribution.started_at, RollupContribution.rows).where(
            RollupContribution.org_id == org_id, RollupContribution.hour == hour
        )
    )
    totals: dict[Key, Totals] = {}
    for started_at, rows in found:
        for key, value in Contribution.of_stored(hour, started_at, rows).rows.items():
            totals.setdefault(key, Totals()).add(value)
    return totals


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


def _latest(first: dt.datetime | None, second: dt.datetime | None) -> dt.datetime | None:
    if first is None or second is None:
        return first or second
    return max(first, second)
