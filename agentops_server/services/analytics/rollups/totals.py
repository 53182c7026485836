"""What a rollup row holds: :class:`Totals` by dimension and key, in hour and day buckets."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from agentops_server.services.analytics import histogram

HOUR, DAY = "hour", "day"
DIMENSIONS = ("org", "agent", "team", "environment", "model")
"""What rollups are kept by: the whole org (key ``""``), an agent's name, a team's id (``""``:
agents of no team), an environment, a model (``""``: calls that named none)."""

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

Key = tuple[str, str]
"""A dimension and a key of it."""


def hour_of(moment: dt.datetime) -> dt.datetime:
    """The start of the UTC hour of ``moment``."""
    return moment.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)


def day_of(moment: dt.datetime) -> dt.datetime:
    """The start of the UTC day of ``moment``."""
    return hour_of(moment).replace(hour=0)


def _latest(first: dt.datetime | None, second: dt.datetime | None) -> dt.datetime | None:
    if first is None or second is None:
        return first or second
    return max(first, second)
