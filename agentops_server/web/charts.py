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
import gzip
import hashlib
import importlib.util
from collections.abc import Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

import anyio.to_thread
from litestar import Controller, Response, get
from litestar.datastructures import CacheControlHeader
from litestar.params import Parameter
from litestar.response import File

from agentops_server.api.headers import etag_matches
from agentops_server.auth.guards import PUBLIC
from agentops_server.services.analytics.trends import Point

__all__ = ["PLOTLY_PATH", "Chart", "ChartAssets", "Line", "chart_data", "point_chart"]

PLOTLY_PATH = "/vendor/plotly.min.js"
PLOTLY_MAX_AGE = 300
"""Seconds a browser keeps plotly.js (as the hub's own static files: no fingerprint)."""
JAVASCRIPT = "text/javascript; charset=utf-8"

Format = Literal["count", "percent", "usd", "tokens", "ms"]


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

    @property
    def empty(self) -> bool:
        """Whether no line has a value (no line at all, or only gaps): drawn, plotly.js would
        show an empty plot over its default range (January to November 2000), so the page
        says there is no data instead."""
        return all(value is None for line in self.lines for value in line.y)


class ChartAssets(Controller):
    """plotly.js, from the installed ``plotly`` package: gzip-compressed (a copy made once per
    process: 1.5 of its 4.8 MB) for a client that accepts it, else as it is. Either
    answer says ``Vary: Accept-Encoding``, so a cache keeps the two apart, and carries an ETag of
    its own (the file's digest, ``-gzip`` for the compressed one): ``If-None-Match`` answers
    304."""

    @get(
        PLOTLY_PATH,
        opt={**PUBLIC, "exclude_from_csrf": True},
        # The same file for everyone (so ``public``), revalidated by its ETag.
        cache_control=CacheControlHeader(public=True, max_age=PLOTLY_MAX_AGE),
    )
    async def plotly_js(
        self,
        accept_encoding: Annotated[str, Parameter(header="Accept-Encoding")] = "",
        if_none_match: Annotated[str, Parameter(header="If-None-Match")] = "",
    ) -> Response[bytes] | File:
        """The bundled ``plotly.min.js``."""
        gzipped = accepts_gzip(accept_encoding)
        digest = await anyio.to_thread.run_sync(plotly_digest)
        etag = f'"plotly-{digest}{"-gzip" if gzipped else ""}"'
        headers = {"ETag": etag, "Vary": "Accept-Encoding"}
        if if_none_match and etag_matches(if_none_match, etag):
            return Response(b"", status_code=304, headers=headers)
        if gzipped:
            body = await anyio.to_thread.run_sync(plotly_gzip)
            return Response(
                body, media_type=JAVASCRIPT, headers={**headers, "Content-Encoding": "gzip"}
            )
        return File(
            plotly_file(),
            content_disposition_type="inline",
            media_type=JAVASCRIPT,
            etag=None,
            headers=headers,
        )


def accepts_gzip(accept_encoding: str) -> bool:
    """Whether an ``Accept-Encoding`` header takes gzip (named, or ``*``, with a q above 0)."""
    taken = {}
    for item in accept_encoding.split(","):
        coding, _, parameters = item.strip().partition(";")
        quality = parameters.strip().removeprefix("q=").strip() if parameters else "1"
        try:
            taken[coding.strip().lower()] = float(quality) > 0
        except ValueError:
            taken[coding.strip().lower()] = False
    return taken.get("gzip", taken.get("x-gzip", taken.get("*", False)))


@functools.cache
def plotly_file() -> Path:
    """Where the installed ``plotly`` package keeps ``plotly.min.js`` (found, not imported)."""
    spec = importlib.util.find_spec("plotly")
    origin = spec.origin if spec is not None else None
    assert origin is not None, "plotly is in the server extra"
    return Path(origin).parent / "package_data" / "plotly.min.js"


@functools.cache
def plotly_digest() -> str:
    """The first 16 hex digits of ``plotly.min.js``'s SHA-256: its ETag (a new plotly, a new
    ETag)."""
    return hashlib.sha256(plotly_file().read_bytes()).hexdigest()[:16]


@functools.cache
def plotly_gzip() -> bytes:
    """``plotly.min.js`` gzip-compressed, once per process (``mtime=0``: the same bytes each
    time, for the same ETag)."""
    return gzip.compress(plotly_file().read_bytes(), compresslevel=9, mtime=0)


def chart_data(chart: Chart) -> dict[str, Any]:
    """``chart`` as the JSON ``charts.js`` reads (ISO 8601 times, numbers for money)."""
    return {
        "id": chart.id,
        "title": chart.title,
        "kind": chart.kind,
        "format": chart.format,
        "x": [moment.isoformat() for moment in chart.x],
        "lines": [{"name": line.name, "y": [_number(v) for v in line.y]} for line in chart.lines],
        "empty": chart.empty,
    }


def point_chart(
    chart_id: str, title: str, form: Format, points: Sequence[Point], lines: Mapping[str, str]
) -> Chart:
    """A line chart of a series' ``points``: ``lines`` names each line and the field of
    :class:`~agentops_server.services.analytics.trends.Point` it draws."""
    return Chart(
        id=chart_id,
        title=title,
        kind="line",
        format=form,
        x=[point.start for point in points],
        lines=[
            Line(name, [getattr(point, field) for point in points]) for name, field in lines.items()
        ],
    )


def top_and_other(lines: Sequence[Line], keep: int) -> list[Line]:
    """The first ``keep`` lines, and the rest summed into one named ``other``."""
    if len(lines) <= keep + 1:
        return list(lines)
    rest = lines[keep:]
    other = [sum(float(line.y[i] or 0) for line in rest) for i in range(len(rest[0].y))]
    return [*lines[:keep], Line("other", [round(value, 6) for value in other])]


def _number(value: float | int | Decimal | None) -> float | int | None:
    return float(value) if isinstance(value, Decimal) else value
