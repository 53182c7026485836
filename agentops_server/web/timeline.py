"""A run's spans as the rows of a waterfall: depth in the tree, and where each bar sits.

The run page draws each span's bar in an SVG whose view box is the run's time, 0 to 100 (an SVG
attribute, not a style: the pages' CSP allows no inline style). A bar starts where the span
started, relative to the run, and is as wide as it lasted; a span still going runs to the
run's end (or to the last moment the run's page knows of).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

from agentops_server.services.telemetry.run_detail import RunDetail, SpanNode

__all__ = ["TimelineRow", "pretty", "timeline"]

MIN_WIDTH = 0.4
"""The narrowest bar, in hundredths of the run (an instant span stays visible)."""


@dataclasses.dataclass(frozen=True, slots=True)
class TimelineRow:
    """A span on the waterfall: ``depth`` below its root, its bar's ``left`` and ``width`` in
    hundredths of the run, and its offset from the run's start in milliseconds."""

    span: SpanNode
    depth: int
    left: float
    width: float
    offset_ms: float


def timeline(run: RunDetail, roots: list[SpanNode]) -> list[TimelineRow]:
    """The spans under ``roots`` (a page of the run's tree), depth first, oldest first."""
    nodes = list(_walk(roots))
    start = run.started_at
    end = max(
        [run.ended_at or start, *(node.ended_at or node.started_at for node, _ in nodes)],
    )
    total = max((end - start).total_seconds(), 1e-6)
    rows = []
    for node, depth in nodes:
        offset = (node.started_at - start).total_seconds()
        left = min(max(offset / total * 100, 0.0), 100.0 - MIN_WIDTH)
        lasted = ((node.ended_at or end) - node.started_at).total_seconds()
        width = min(max(lasted / total * 100, MIN_WIDTH), 100.0 - left)
        rows.append(TimelineRow(node, depth, round(left, 3), round(width, 3), offset * 1000))
    return rows


def pretty(value: Any) -> str:
    """A payload as indented JSON (text as it is), for a ``<pre>``; the template escapes it."""
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False, default=_plain)


def _plain(value: Any) -> str:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return str(value)


def _walk(roots: list[SpanNode]) -> Iterator[tuple[SpanNode, int]]:
    """Depth first, children in order, without recursion (trees may be deep)."""
    stack = [(root, 0) for root in reversed(roots)]
    while stack:
        node, depth = stack.pop()
        yield node, depth
        stack.extend((child, depth + 1) for child in reversed(node.children))
