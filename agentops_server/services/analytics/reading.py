"""Reading rollups: totals over a range and series over time, never from raw spans.

A range is whole UTC hours (:func:`parse_range` rounds its ends out to the hour); its whole
days are read from day rows, the hours at its ends from hour rows, so a 30-day range reads
about 30 rows per key whatever the number of runs.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import ColumnElement, and_, distinct, func, null, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from agentops_server.db.models import RollupRow
from agentops_server.refusals import Invalid
from agentops_server.services.analytics.rollups import (
    DAY,
    DIMENSIONS,
    HOUR,
    STORED,
    Totals,
    hour_of,
)

__all__ = [
    "GRANULARITIES",
    "active_keys",
    "busiest_keys",
    "Range",
    "bucket_of",
    "buckets",
    "parse_dimension",
    "parse_granularity",
    "parse_range",
    "series",
    "totals_by_key",
]

GRANULARITIES = ("hour", "day", "week", "month")
_HOUR = dt.timedelta(hours=1)
_DAY = dt.timedelta(days=1)
_MAX_DAYS = 1100
"""The longest range read (three years and a bit)."""
_MAX_HOURLY_DAYS = 31
"""The longest range read hour by hour (744 points a key)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Range:
    """Whole UTC hours from ``start`` (included) to ``end`` (excluded)."""

    start: dt.datetime
    end: dt.datetime

    @property
    def length(self) -> dt.timedelta:
        """How long the range is."""
        return self.end - self.start

    def previous(self) -> Range:
        """The range of the same length just before this one."""
        return Range(self.start - self.length, self.start)


def parse_range(
    start: dt.datetime | None,
    end: dt.datetime | None,
    *,
    default: dt.timedelta = dt.timedelta(days=7),
) -> Range:
    """The range ``[start, end)`` of the query (``end`` defaults to the end of the current hour,
    ``start`` to ``default`` before ``end``), rounded out to whole hours.

    Refusals: ``invalid_range`` (``end`` not after ``start``, or the range or the one before
    it outside the calendar), ``range_too_long``.
    """
    try:
        until = _ceil_hour(dt.datetime.now(dt.UTC) if end is None else end)
        since = until - default if start is None else hour_of(start)
        _ceil_day(until), since - (until - since)  # the range's last day and the one before
    except (OverflowError, ValueError):
        raise Invalid("invalid_range", "The range is outside the calendar.") from None
    if until <= since:
        raise Invalid("invalid_range", "`to` must be after `from`.")
    if until - since > dt.timedelta(days=_MAX_DAYS):
        raise Invalid("range_too_long", f"A range spans at most {_MAX_DAYS} days.")
    return Range(since, until)


def parse_granularity(value: str, span: Range) -> str:
    """``value`` if it is a granularity the range can be read at.

    Refusals: ``invalid_granularity``, ``range_too_long`` (hourly past 31 days)."""
    if value not in GRANULARITIES:
        raise Invalid("invalid_granularity", f"`granularity` is one of {', '.join(GRANULARITIES)}.")
    if value == "hour" and span.length > dt.timedelta(days=_MAX_HOURLY_DAYS):
        raise Invalid("range_too_long", f"An hourly series spans at most {_MAX_HOURLY_DAYS} days.")
    return value


def parse_dimension(value: str, allowed: Sequence[str] = DIMENSIONS) -> str:
    """``value`` if it is one of ``allowed``. Refusal: ``invalid_dimension``."""
    if value not in allowed:
        raise Invalid("invalid_dimension", f"The dimension is one of {', '.join(allowed)}.")
    return value


async def totals_by_key(
    session: AsyncSession,
    org_id: uuid.UUID,
    dimension: str,
    span: Range,
    keys: Iterable[str] | None = None,
    *,
    latency: bool = True,
) -> dict[str, Totals]:
    """Each key's totals over the range (only ``keys`` if given; histograms left empty without
    ``latency``)."""
    totals: dict[str, Totals] = {}
    pieces = _range_pieces(span)
    for key, _start, *values in await _rows(
        session, org_id, dimension, pieces, keys, latency=latency
    ):
        totals.setdefault(key, Totals()).add(Totals.of_values(values))
    return totals


async def series(
    session: AsyncSession,
    org_id: uuid.UUID,
    dimension: str,
    span: Range,
    *,
    granularity: str,
    keys: Iterable[str] | None = None,
    latency: bool = True,
) -> dict[str, dict[dt.datetime, Totals]]:
    """Each key's totals per ``granularity`` bucket of the range: hours from hour rows, days,
    weeks (from Monday) and months from day rows (a range's partial first and last days count
    whole). Without ``latency``, the histograms are left unread (empty)."""
    if granularity == HOUR:
        pieces = _pieces(HOUR, span.start, span.end)
    else:
        pieces = _pieces(DAY, span.start.replace(hour=0), _ceil_day(span.end))
    result: dict[str, dict[dt.datetime, Totals]] = {}
    rows = await _rows(session, org_id, dimension, pieces, keys, latency=latency)
    for key, start, *values in rows:
        bucket, totals = bucket_of(start, granularity), Totals.of_values(values)
        held = result.setdefault(key, {})
        if bucket in held:
            held[bucket].add(totals)
        else:
            held[bucket] = totals
    return result


def bucket_of(moment: dt.datetime, granularity: str) -> dt.datetime:
    """The start of the ``granularity`` bucket (UTC) ``moment`` falls in."""
    hour = hour_of(moment)
    if granularity == "hour":
        return hour
    day = hour.replace(hour=0)
    if granularity == "week":
        return day - dt.timedelta(days=day.weekday())
    if granularity == "month":
        return day.replace(day=1)
    return day


def buckets(span: Range, granularity: str) -> list[dt.datetime]:
    """The starts of every ``granularity`` bucket the range touches, in order."""
    starts = []
    moment = bucket_of(span.start, granularity)
    while moment < span.end:
        starts.append(moment)
        try:
            moment = _next(moment, granularity)
        except (OverflowError, ValueError):  # the calendar's last bucket
            break
    return starts


def _next(moment: dt.datetime, granularity: str) -> dt.datetime:
    if granularity == "hour":
        return moment + _HOUR
    if granularity == "day":
        return moment + _DAY
    if granularity == "week":
        return moment + 7 * _DAY
    year, month = (moment.year + 1, 1) if moment.month == 12 else (moment.year, moment.month + 1)
    return moment.replace(year=year, month=month)


async def busiest_keys(
    session: AsyncSession, org_id: uuid.UUID, dimension: str, span: Range, limit: int
) -> list[str]:
    """The ``limit`` keys of ``dimension`` with the most runs in the range, most first."""
    runs = func.sum(RollupRow.runs)
    found = await session.execute(
        select(RollupRow.key)
        .where(RollupRow.org_id == org_id, RollupRow.dimension == dimension, _range_pieces(span))
        .group_by(RollupRow.key)
        .order_by(runs.desc(), RollupRow.key)
        .limit(limit)
    )
    return list(found.scalars())


async def active_keys(session: AsyncSession, org_id: uuid.UUID, dimension: str, span: Range) -> int:
    """How many keys of ``dimension`` had a run in the range."""
    found = await session.scalar(
        select(func.count(distinct(RollupRow.key))).where(
            RollupRow.org_id == org_id,
            RollupRow.dimension == dimension,
            RollupRow.runs > 0,
            _range_pieces(span),
        )
    )
    return int(found or 0)


async def _rows(
    session: AsyncSession,
    org_id: uuid.UUID,
    dimension: str,
    pieces: ColumnElement[bool],
    keys: Iterable[str] | None,
    *,
    latency: bool = True,
) -> Sequence[Any]:
    """``(key, bucket_start, *STORED)`` of each row: plain tuples, no ORM objects to build
    (thousands of rows a request); without ``latency``, the histograms are NULL (not read nor
    decoded)."""
    table = RollupRow.__table__.c
    columns = [
        table[name] if latency or name != "latency" else null()
        for name in ("key", "bucket_start", *STORED)
    ]
    statement = select(*columns).where(
        RollupRow.org_id == org_id, RollupRow.dimension == dimension, pieces
    )
    if keys is not None:
        statement = statement.where(RollupRow.key.in_(sorted(set(keys))))
    return (await session.execute(statement)).all()


def _range_pieces(span: Range) -> ColumnElement[bool]:
    """The rows that cover the range: days for its whole days, hours for its ends."""
    first_day = _ceil_day(span.start)
    last_day = span.end.replace(hour=0)
    if first_day >= last_day:  # no whole day inside: hours only
        return _pieces(HOUR, span.start, span.end)
    return or_(
        _pieces(DAY, first_day, last_day),
        _pieces(HOUR, span.start, first_day),
        _pieces(HOUR, last_day, span.end),
    )


def _pieces(grain: str, start: dt.datetime, end: dt.datetime) -> ColumnElement[bool]:
    return and_(
        RollupRow.grain == grain, RollupRow.bucket_start >= start, RollupRow.bucket_start < end
    )


def _ceil_hour(moment: dt.datetime) -> dt.datetime:
    floor = hour_of(moment)
    return floor if floor == moment else floor + _HOUR


def _ceil_day(moment: dt.datetime) -> dt.datetime:
    floor = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    return floor if floor == moment else floor + _DAY
