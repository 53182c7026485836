"""The run explorer and forensic replay: ``/runs``, ``/runs/export.csv`` and ``/runs/{id}``.

The explorer is :func:`~agentops_server.services.telemetry.runs.list_runs` with the filters of
``GET /api/v1/runs`` (read by the API's own :func:`run_filter`), from a GET form whose URL is
the search: it can be bookmarked and shared. Pages follow the API's cursors; "previous" goes
back along the cursors of the pages before (``back``, carried in the links). The CSV export is
:func:`~agentops_server.services.telemetry.exports.export`, as ``GET
/api/v1/exports/runs.csv`` streams it, to the session cookie.

A run's page is :func:`~agentops_server.services.telemetry.run_detail.get_run` (and
:func:`~agentops_server.services.telemetry.run_detail.list_spans` for its later pages of
spans), drawn as a waterfall (:mod:`agentops_server.web.timeline`).
"""

from __future__ import annotations

import re
import uuid
from decimal import Decimal
from typing import Annotated, Any, get_args
from urllib.parse import urlencode

import msgspec
from litestar import Controller, Request, Response, get
from litestar.di import NamedDependency
from litestar.params import PathParameter
from litestar.response import Stream
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from agentops_server.api.v1.telemetry.run_filters import run_filter
from agentops_server.auth.guards import requires
from agentops_server.refusals import Invalid, Refused
from agentops_server.security.permissions import Permission
from agentops_server.security.principal import Principal
from agentops_server.services.governance.agent_directory import agent_ids
from agentops_server.services.governance.control_sets import team_names
from agentops_server.services.telemetry import run_detail, runs
from agentops_server.services.telemetry.exports import export
from agentops_server.services.telemetry.run_detail import MAX_SPAN_PAGE
from agentops_server.services.telemetry.run_filters import (
    Environment,
    RunFilter,
    RunStatus,
    StageName,
)
from agentops_server.services.telemetry.runs import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    RunPage,
    RunSort,
    SortOrder,
)
from agentops_server.values import Text, Timestamp
from agentops_server.web.forms import validated
from agentops_server.web.pages import page
from agentops_server.web.timeline import pretty, timeline

__all__ = ["RunPages", "RunQuery", "given_query", "run_query"]

PATH = "/runs"
DEFAULT_SPAN_LIMIT = 200
"""Spans a run's page shows at a time (the API's default page is larger: a page is for eyes)."""
SORTS: dict[str, str] = {"started_at": "Time", "cost": "Cost", "duration": "Duration"}


class RunQuery(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """The explorer's query string: the API's filters (``tag`` repeated, or comma-separated
    in the form's one field), its sort and its page."""

    agent: Text | None = None
    team: uuid.UUID | None = None
    status: RunStatus | None = None
    environment: Environment | None = None
    tag: list[Text] = msgspec.field(default_factory=list)
    model: Text | None = None
    min_cost: Decimal | None = None
    max_cost: Decimal | None = None
    min_duration_ms: Annotated[float, msgspec.Meta(ge=0)] | None = None
    max_duration_ms: Annotated[float, msgspec.Meta(ge=0)] | None = None
    started_after: Timestamp | None = None
    started_before: Timestamp | None = None
    error_type: Text | None = None
    blocked_by: StageName | None = None
    q: Text | None = None
    sort: RunSort = "started_at"
    order: SortOrder = "desc"
    limit: Annotated[int, msgspec.Meta(ge=1, le=MAX_PAGE_SIZE)] = DEFAULT_PAGE_SIZE
    cursor: Text | None = None
    back: list[Text] = msgspec.field(default_factory=list)
    """The cursors of the pages before this one (the first page has none)."""

    def where(self) -> RunFilter:
        """The filter, as ``GET /api/v1/runs`` reads it."""
        fields = {name: getattr(self, name) for name in FILTERS if name != "tag"}
        return run_filter(**fields, tag=list(self.tag))


FILTERS = (
    "agent",
    "team",
    "status",
    "environment",
    "tag",
    "model",
    "min_cost",
    "max_cost",
    "min_duration_ms",
    "max_duration_ms",
    "started_after",
    "started_before",
    "error_type",
    "blocked_by",
    "q",
)
"""The query's filters (every one of the API's), in the form's order."""
_PAGING = ("sort", "order", "limit", "cursor", "back")
_LISTS = ("tag", "back")
_MOMENTS = ("started_after", "started_before")
_MINUTE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d")
"""A browser's ``datetime-local`` value on a whole minute (it leaves the seconds out)."""


def given_query(request: Request[Any, Any, Any]) -> dict[str, Any]:
    """The query string's fields as given (blank ones left out, tags split at commas), to read
    with :func:`run_query` and to fill the form again."""
    params = request.query_params
    given: dict[str, Any] = {}
    for name in FILTERS + _PAGING:
        if name in _LISTS:
            values = [
                part.strip() for value in params.getall(name, []) for part in value.split(",")
            ]
            if values := [value for value in values if value]:
                given[name] = values
        elif value := (params.get(name) or "").strip():
            given[name] = value
    return given


def run_query(given: dict[str, Any]) -> RunQuery:
    """What the query asks for, typed; ``invalid_form`` (or the refusing value's code, such as
    ``invalid_timestamp``) for a value the API would refuse."""
    typed = {
        name: value + ":00" if name in _MOMENTS and _MINUTE.fullmatch(value) else value
        for name, value in given.items()
    }
    return validated(RunQuery, typed)


class RunPages(Controller):
    """The explorer, its export and a run's replay: ``runs:read``, as the API's runs."""

    guards = (requires(Permission.RUNS_READ),)

    @get(PATH)
    async def runs_page(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
    ) -> Response[Any]:
        """The org's runs matching the query string's filters, sorted, a page at a time."""
        refusal: Refused | None = None
        found = RunPage(items=[], next_cursor=None)
        query = RunQuery()
        given = given_query(request)
        try:
            query = run_query(given)
            found = await runs.list_runs(
                db_session,
                request.auth.org_id,
                query.where(),
                limit=query.limit,
                cursor=query.cursor,
                sort=query.sort,
                order=query.order,
            )
        except Invalid as exc:
            await db_session.rollback()
            refusal, given = exc, {key: given[key] for key in FILTERS if key in given}
        org_id = request.auth.org_id
        agents = await agent_ids(db_session, org_id)
        teams = sorted((await team_names(db_session, org_id)).items(), key=lambda team: team[1])
        filters = {key: value for key, value in given.items() if key in FILTERS}
        response = await page(
            request,
            db_session,
            "runs.html",
            runs=found.items,
            chosen=given,
            query=query,
            links=_links(filters, query, found.next_cursor),
            agent_names=list(agents),
            agent_ids=agents,
            teams=teams,
            statuses=get_args(RunStatus),
            environments=get_args(Environment),
            stages=get_args(StageName),
            sorts=SORTS,
            error=refusal,
        )
        response.status_code = refusal.status if refusal else 200
        return response

    @get(PATH + "/export.csv", media_type="text/csv; charset=utf-8")
    async def export_runs(
        self,
        request: Request[Principal, Principal, Any],
        engine: NamedDependency[AsyncEngine],
    ) -> Stream:
        """The runs matching the explorer's filters as CSV, newest first: the API's export."""
        query = run_query(given_query(request))
        return Stream(
            export(engine, request.auth.org_id, query.where(), kind="runs", fmt="csv"),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="runs.csv"'},
        )

    @get(PATH + "/{run_id:str}")
    async def run_page(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        run_id: Annotated[str, PathParameter()],
    ) -> Response[Any]:
        """One run replayed: its summary, payloads, and its spans as a waterfall, a page at a
        time (``spans`` is the cursor of a later page)."""
        org_id = request.auth.org_id
        cursor = request.query_params.get("spans") or None
        limit = validated(SpanQuery, dict(request.query_params)).span_limit
        detail = await run_detail.get_run(db_session, org_id, run_id, span_limit=limit)
        spans, next_cursor = detail.spans, detail.spans_next_cursor
        if cursor is not None:
            later = await run_detail.list_spans(
                db_session, org_id, run_id, limit=limit, cursor=cursor
            )
            spans, next_cursor = later.items, later.next_cursor
        more = None
        if next_cursor is not None:
            more = f"{PATH}/{detail.id}?" + urlencode({"spans": next_cursor, "span_limit": limit})
        return await page(
            request,
            db_session,
            "run.html",
            run=detail,
            rows=timeline(detail, spans),
            later_page=cursor is not None,
            more_spans=more,
            agent_id=(await agent_ids(db_session, org_id)).get(detail.agent),
            pretty=pretty,
        )


class SpanQuery(msgspec.Struct, frozen=True):
    """A run page's query: how many spans a page shows."""

    span_limit: Annotated[int, msgspec.Meta(ge=1, le=MAX_SPAN_PAGE)] = DEFAULT_SPAN_LIMIT


def _links(filters: dict[str, Any], query: RunQuery, next_cursor: str | None) -> dict[str, Any]:
    """The explorer's links: sorting by each column, the next and previous pages, the export;
    every one keeps the filters."""
    paging: dict[str, str] = {"sort": query.sort, "order": query.order}
    if query.limit != DEFAULT_PAGE_SIZE:
        paging["limit"] = str(query.limit)

    def url(path: str = PATH, **more: Any) -> str:
        return f"{path}?{urlencode({**filters, **more}, doseq=True)}"

    sort_links = {}
    for sort in SORTS:
        flipped = "asc" if (query.sort, query.order) == (sort, "desc") else "desc"
        sort_links[sort] = url(**{**paging, "sort": sort, "order": flipped})
    previous = None
    if query.cursor is not None:
        earlier = query.back[:-1]
        cursor = {"cursor": query.back[-1]} if query.back else {}
        previous = url(**paging, **cursor, back=earlier)
    following = None
    if next_cursor is not None:
        trail = [*query.back, query.cursor] if query.cursor else []
        following = url(**paging, cursor=next_cursor, back=trail)
    return {
        "sort": sort_links,
        "previous": previous,
        "next": following,
        "page": len(query.back) + (2 if query.cursor else 1),
        "export": url(PATH + "/export.csv"),
        "reset": PATH,
    }
