"""The pages' charts: the data a chart is drawn from, and plotly.js, served by the hub.

A page embeds each chart's :class:`Chart` as JSON in a ``<script type="application/json">``
block (data, not code: the CSP allows it), so the first paint needs no request per chart;
``static/charts.js`` draws them with plotly.js, which ships inside the ``plotly`` package and
is served from it at :data:`PLOTLY_PATH` (never from a CDN).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import importlib.util
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from litestar import Controller, get
from litestar.datastructures import CacheControlHeader
from litestar.response import File

from agentops_server.auth.guards import PUBLIC

__all__ = ["PLOTLY_PATH", "Chart", "ChartAssets", "Line", "chart_data"]

PLOTLY_PATH = "/vendor/plotly.min.js"
PLOTLY_MAX_AGE = 300
"""Seconds a browser keeps plotly.js (as the hub's own static files: no fingerprint)."""

Format = Literal["count", "percent", "usd", "tokens"]


@dataclasses.dataclass(frozen=True, slots=True)
class Line:
    """One series of a chart: its name and a value per ``x``."""

    name: str
    y: list[float | int | Decimal | None]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Chart:
    """What ``charts.js`` draws: lines or stacked bars over time (UTC bucket starts)."""

    id: str
    title: str
    kind: Literal["line", "bar"]
    format: Format
    x: list[dt.datetime]
    lines: list[Line]


class ChartAssets(Controller):
    """plotly.js, streamed from the installed ``plotly`` package."""

    @get(
        PLOTLY_PATH,
        opt={**PUBLIC, "exclude_from_csrf": True},
        media_type="text/javascript; charset=utf-8",
        cache_control=CacheControlHeader(max_age=PLOTLY_MAX_AGE),
    )
    async def plotly_js(self) -> File:
        """The bundled ``plotly.min.js``."""
        return File(plotly_file(), content_disposition_type="inline")


@functools.cache
def plotly_file() -> Path:
    """Where the installed ``plotly`` package keeps ``plotly.min.js`` (found, not imported)."""
    spec = importlib.util.find_spec("plotly")
    origin = spec.origin if spec is not None else None
    assert origin is not None, "plotly is in the server extra"
    return Path(origin).parent / "package_data" / "plotly.min.js"


def chart_data(chart: Chart) -> dict[str, Any]:
    """``chart`` as the JSON ``charts.js`` reads (ISO 8601 times, numbers for money)."""
    return {
        "id": chart.id,
        "title": chart.title,
        "kind": chart.kind,
        "format": chart.format,
        "x": [moment.isoformat() for moment in chart.x],
        "lines": [{"name": line.name, "y": [_number(v) for v in line.y]} for line in chart.lines],
    }


def top_and_other(lines: Sequence[Line], keep: int) -> list[Line]:
    """The first ``keep`` lines, and the rest summed into one named ``other``."""
    if len(lines) <= keep + 1:
        return list(lines)
    rest = lines[keep:]
    other = [sum(float(line.y[i] or 0) for line in rest) for i in range(len(rest[0].y))]
    return [*lines[:keep], Line("other", [round(value, 6) for value in other])]


def _number(value: float | int | Decimal | None) -> float | int | None:
    return float(value) if isinstance(value, Decimal) else value
