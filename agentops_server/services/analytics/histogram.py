"""Latency histograms: fixed log-spaced buckets, merged by adding counts.

Bucket 0 holds durations under 1 ms; bucket ``i`` (``i >= 1``) holds
``[2**((i-1)/4), 2**(i/4))`` ms, so each bucket is 19% wider than the one below it and a
percentile read from the buckets is within 9% of the true one (the bucket's geometric middle
is reported). The last bucket, :data:`BUCKETS` - 1, also holds everything longer (past about
1.5 days). Fixed buckets make a day the sum of its hours and a month the sum of its days: no
sketch to merge, no approximation added by merging (docs/decisions/0031-analytics-rollups.md).

A histogram is stored as ``{"index": count}`` with only the buckets that hold something::

    histogram = add({}, [12.0, 480.0])  # {"15": 1, "36": 1}
    percentile(histogram, 0.95)          # 469.506 (ms)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

__all__ = [
    "BUCKETS",
    "Histogram",
    "add",
    "bucket_of",
    "count",
    "merge",
    "percentile",
    "subtract",
]

BUCKETS = 140
"""How many buckets: the last one starts at 2**(138/4) ms, about 1.5 days."""
_STEPS_PER_DOUBLING = 4

Histogram = dict[str, int]
"""Counts by bucket index (as text: a JSON object's keys)."""


def bucket_of(milliseconds: float) -> int:
    """The index of the bucket ``milliseconds`` falls in."""
    if milliseconds < 1:
        return 0
    index = math.floor(math.log2(milliseconds) * _STEPS_PER_DOUBLING) + 1
    return min(index, BUCKETS - 1)


def add(histogram: Mapping[str, int], durations: Iterable[float]) -> Histogram:
    """``histogram`` with ``durations`` (ms) counted in."""
    result = dict(histogram)
    for duration in durations:
        key = str(bucket_of(duration))
        result[key] = result.get(key, 0) + 1
    return result


def merge(histograms: Iterable[Mapping[str, int]]) -> Histogram:
    """The histogram of everything the ``histograms`` counted."""
    result: Histogram = {}
    for histogram in histograms:
        for key, value in histogram.items():
            result[key] = result.get(key, 0) + int(value)
    return result


def subtract(histogram: Mapping[str, int], taken: Mapping[str, int]) -> Histogram:
    """``histogram`` without what ``taken`` (counted in it before) counted; empty buckets go."""
    result = dict(histogram)
    for key, value in taken.items():
        result[key] = int(result.get(key, 0)) - int(value)
        if result[key] == 0:
            del result[key]
    return result


def count(histogram: Mapping[str, int]) -> int:
    """How many durations ``histogram`` counted."""
    return sum(int(value) for value in histogram.values())


def percentile(histogram: Mapping[str, int], fraction: float) -> float | None:
    """The duration (ms) below which ``fraction`` of the counted ones fall, as the middle of
    its bucket; None for an empty histogram."""
    total = count(histogram)
    if total == 0:
        return None
    rank = max(1, math.ceil(fraction * total))
    seen = 0
    for index in sorted(int(key) for key in histogram):
        seen += int(histogram[str(index)])
        if seen >= rank:
            return _middle(index)
    return _middle(max(int(key) for key in histogram))


def _middle(index: int) -> float:
    """The geometric middle of bucket ``index`` (ms); half a ms for the first."""
    if index == 0:
        return 0.5
    low = 2 ** ((index - 1) / _STEPS_PER_DOUBLING)
    return round(low * 2 ** (0.5 / _STEPS_PER_DOUBLING), 3)
