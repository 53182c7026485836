"""Contributions: what one run adds to the rows of its hour, worked out from its raw rows, stored
and summed."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from agentops_server.db.models import Agent, RollupContribution, Run, Span
from agentops_server.db.upsert import dialect_insert
from agentops_server.services.analytics import histogram
from agentops_server.services.analytics.rollups.totals import (
    _COUNTS,
    _SPAN_COUNTS,
    _TOKENS,
    Key,
    Totals,
    hour_of,
)
from agentops_server.services.costs.run_totals import chunks


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


_COST_SCALE = Decimal("1e-10")
"""The scale of stored costs (``Numeric(20, 10)``)."""

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
