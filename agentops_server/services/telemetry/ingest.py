"""Ingestion: what the SDK sends becomes stored runs, spans and agents.

Two entry points take a request body (JSON bytes, already decompressed) and an org:

- :func:`ingest_batch`: a :class:`~agentops_sdk.schema.Batch`, any mix of run and span events in
  any order. Each event is judged on its own: the valid ones are stored, each invalid one is
  reported in the :class:`~agentops_sdk.schema.IngestResult` with its index and reason.
- :func:`ingest_run`: a :class:`~agentops_sdk.schema.RunUpload`, one whole run with its spans,
  stored all or none.

A problem with the request as a whole (not JSON, not an object, an unknown schema version, too
many events) raises :class:`~agentops_server.refusals.Invalid` (``malformed_json``,
``validation_error``, ``unsupported_schema_version``, ``json_too_deep``) or
:class:`~agentops_server.refusals.TooLarge` (``too_many_events``) and stores nothing; a database
that cannot take the events (unreachable, locked, a deadlock) raises
:class:`~agentops_server.refusals.Unavailable` (``database_unavailable``, ``Retry-After: 1``):
nothing was committed, and a retry can succeed.

A request that changed stored rows records the :data:`EVENTS_COMMITTED` notice in its
transaction (one per request, whatever the number of events) and hands it to derived work
(:mod:`agentops_server.backends.derived_work`) after the commit; derived work prices, rolls up
and alerts off the request path. With the queue on Redis the record is an outbox row, so a queue
that is down delays the work and never loses it.

Merging (see docs/decisions/0005-ingest-upserts.md): every run and span id is stored once per
org. When an id arrives again, the newer state wins: a final state replaces ``running``, a final
state with a later ``ended_at`` replaces an earlier one, and nothing else changes the row. So a
late start never regresses a finished run, and a retried batch changes nothing. The database
applies the rule in the upsert itself (``ON CONFLICT ... DO UPDATE ... WHERE``), so concurrent
requests cannot interleave a read and a write.

Writes: one statement per table per request (:func:`~agentops_server.db.upsert.upsert_newest`),
rows sorted by key so that concurrent requests lock rows in the same order, then one commit. The
result is returned only after the commit: acknowledged means committed.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import logging
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

import anyio.to_thread
import msgspec
from pydantic import BaseModel, TypeAdapter, ValidationError
from sqlalchemy import (
    Table,
    case,
    or_,
)
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncSession

from agentops_sdk.contract.decisions import DECISION_EVENT
from agentops_sdk.contract.schema import (
    SCHEMA_VERSION,
    Batch,
    Event,
    IngestResult,
    ItemRejection,
    RunEvent,
    RunUpload,
    SpanEvent,
)
from agentops_server.backends.derived_work import DerivedWork, Notice
from agentops_server.db.models import Agent, Base, Run, Span
from agentops_server.db.types import to_utc
from agentops_server.db.upsert import Row, dialect_insert, upsert_newest
from agentops_server.refusals import Invalid, TooLarge, Unavailable
from agentops_server.services.costs.prices import is_call, load_price_book, price_span_rows
from agentops_server.services.costs.run_totals import total_runs
from agentops_server.services.telemetry.search import index_for_search
from agentops_server.values import decode_json

__all__ = ["EVENTS_COMMITTED", "ingest_batch", "ingest_run"]

logger = logging.getLogger("agentops_server")


EVENTS_COMMITTED = "telemetry.events_committed"
"""The notice ingest hands to derived work after each commit that changed stored rows, with
the payload ``{"org_id", "run_ids", "span_ids", "call_run_ids", "span_run_ids",
"owed_run_ids", "committed_at"}``: the runs and spans whose stored state changed (ids as text),
the runs of the LLM calls among those spans (whose totals changed), the runs of all those spans,
the runs whose totals the commit did not make itself (derived work owes them), and when the
commit was (ISO 8601, UTC). Pricing, rollups,
budgets, alerts and live updates take their work from it."""

Charge = Callable[[int], Awaitable[None]]
"""Called with the number of events a request carries before any is stored; it raises to
refuse them all (the caller's ingest quota)."""


async def ingest_batch(
    session: AsyncSession,
    org_id: uuid.UUID,
    body: bytes,
    *,
    max_events: int,
    charge: Charge | None = None,
    derived: DerivedWork | None = None,
    pricing: bool = True,
) -> IngestResult:
    """Store the valid events of the batch in ``body`` for ``org_id``; commit; report per event."""
    parse = functools.partial(_parse_batch, body, org_id, max_events)
    parsed = await anyio.to_thread.run_sync(parse)
    return await _charge_and_store(
        session, org_id, parsed, charge=charge, derived=derived, pricing=pricing
    )


async def ingest_run(
    session: AsyncSession,
    org_id: uuid.UUID,
    body: bytes,
    *,
    max_events: int,
    charge: Charge | None = None,
    derived: DerivedWork | None = None,
    pricing: bool = True,
) -> IngestResult:
    """Store the run upload in ``body`` for ``org_id`` (all or none); commit; report."""
    parse = functools.partial(_parse_run_upload, body, org_id, max_events)
    parsed = await anyio.to_thread.run_sync(parse)
    return await _charge_and_store(
        session, org_id, parsed, charge=charge, derived=derived, pricing=pricing
    )


async def _charge_and_store(
    session: AsyncSession,
    org_id: uuid.UUID,
    parsed: _Parsed,
    *,
    charge: Charge | None,
    derived: DerivedWork | None,
    pricing: bool,
) -> IngestResult:
    if charge is not None:
        await charge(len(parsed.runs) + len(parsed.spans) + len(parsed.rejections))
    return await _store(session, org_id, parsed, derived, pricing)


# -- parsing: runs on a worker thread, so a large batch does not stall the event loop -----------


@dataclasses.dataclass(slots=True)
class _Parsed:
    runs: list[Row] = dataclasses.field(default_factory=list)
    spans: list[Row] = dataclasses.field(default_factory=list)
    rejections: list[ItemRejection] = dataclasses.field(default_factory=list)


_EVENT: TypeAdapter[RunEvent | SpanEvent] = TypeAdapter(Event)
_INT32 = 2**31 - 1
_INT64 = 2**63 - 1
_NUL = b"\\u0000"


def _parse_batch(body: bytes, org_id: uuid.UUID, max_events: int) -> _Parsed:
    document = _document(body)
    events = document.get("events")
    if not isinstance(events, list):
        raise Invalid("validation_error", "events: a list of run and span events is required")
    try:
        Batch.model_validate({**document, "events": []})  # the envelope; events one by one below
    except ValidationError as exc:
        raise Invalid("validation_error", _describe(exc)) from exc
    if len(events) > max_events:
        raise TooLarge(
            "too_many_events", f"{len(events)} events in one batch; the most is {max_events}"
        )
    # PostgreSQL cannot store NUL characters in text or JSONB; they are rare enough to look
    # for only when the body has one.
    sanitize = _NUL in body
    parsed = _Parsed()
    for index, item in enumerate(events):
        _judge(parsed, index, item, org_id, sanitize)
    return parsed


def _parse_run_upload(body: bytes, org_id: uuid.UUID, max_events: int) -> _Parsed:
    document = _document(body)
    spans = document.get("spans")
    if isinstance(spans, list) and len(spans) + 1 > max_events:
        raise TooLarge(
            "too_many_events", f"{len(spans) + 1} events in one upload; the most is {max_events}"
        )
    try:
        upload = RunUpload.model_validate(_without_nul(document) if _NUL in body else document)
        parsed = _Parsed(
            runs=[_run_row(upload.run, org_id)],
            spans=[_span_row(span, org_id) for span in upload.spans],
        )
    except ValidationError as exc:
        raise Invalid("validation_error", _describe(exc)) from exc
    except _UNSTORABLE as exc:
        raise Invalid("validation_error", str(exc)) from exc
    stray = next((i for i, span in enumerate(upload.spans) if span.run_id != upload.run.id), None)
    if stray is not None:
        raise Invalid("validation_error", f"spans.{stray}.run_id: not the id of the uploaded run")
    return parsed


def _document(body: bytes) -> dict[str, Any]:
    """The body as a JSON object of a schema version this hub reads."""
    try:
        document = decode_json(body)
    except msgspec.DecodeError as exc:
        raise Invalid("malformed_json", f"The body is not valid JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise Invalid("validation_error", "The body must be a JSON object.")
    version = document.get("schema_version", SCHEMA_VERSION)
    if not _supported(version):
        raise Invalid(
            "unsupported_schema_version",
            f"schema_version {version!r} is not supported; this hub reads {SCHEMA_VERSION}",
        )
    return document


_UNSTORABLE = (ValueError, OverflowError, RecursionError, msgspec.EncodeError)
"""What building a row raises for a valid event the database cannot store as it is."""


def _judge(parsed: _Parsed, index: int, item: Any, org_id: uuid.UUID, sanitize: bool) -> None:
    """Add ``item`` to ``parsed`` as a row, or as a rejection saying why not."""
    try:
        reason = _add_row(parsed, item, org_id, sanitize)
    except ValidationError as exc:
        reason = "validation_error", _describe(exc, tagged=True)
    except _UNSTORABLE as exc:
        reason = "validation_error", str(exc)
    if reason is not None:
        code, detail = reason
        event_id = _uuid_or_none(item.get("id")) if isinstance(item, dict) else None
        parsed.rejections.append(ItemRejection(index=index, id=event_id, code=code, detail=detail))


def _add_row(
    parsed: _Parsed, item: Any, org_id: uuid.UUID, sanitize: bool
) -> tuple[str, str] | None:
    """Validate ``item`` and add its row; or say why it cannot be stored (or raise why)."""
    if not isinstance(item, dict):
        return "validation_error", "not a JSON object"
    version = item.get("schema_version", SCHEMA_VERSION)
    if not _supported(version):
        return "unsupported_schema_version", f"schema_version {version!r} is not supported"
    event = _EVENT.validate_python(_without_nul(item) if sanitize else item)
    if isinstance(event, RunEvent):
        parsed.runs.append(_run_row(event, org_id))
    else:
        parsed.spans.append(_span_row(event, org_id))
    return None


def _run_row(event: RunEvent, org_id: uuid.UUID) -> Row:
    return {
        "org_id": org_id,
        "id": event.id,
        "agent": event.agent,
        "name": event.name,
        "environment": event.environment,
        "status": event.status,
        "started_at": _utc(event.started_at),
        "ended_at": _utc(event.ended_at),
        "tags": _json(event.tags),
        "metadata": _json(event.metadata),
        "input": _json(event.input),
        "output": _json(event.output),
        "error": _json(event.error),
        "duration_ms": _duration_ms(event.started_at, event.ended_at),
        "span_count": _bounded(event.span_count, _INT32, "span_count"),
        "error_count": _bounded(event.error_count, _INT32, "error_count"),
        "input_tokens": _bounded(event.input_tokens, _INT64, "input_tokens"),
        "output_tokens": _bounded(event.output_tokens, _INT64, "output_tokens"),
    }


def _span_row(event: SpanEvent, org_id: uuid.UUID) -> Row:
    llm = event.llm
    return {
        "org_id": org_id,
        "id": event.id,
        "run_id": event.run_id,
        "parent_id": event.parent_id,
        "kind": event.kind,
        "name": event.name,
        "status": event.status,
        "started_at": _utc(event.started_at),
        "ended_at": _utc(event.ended_at),
        "tags": _json(event.tags),
        "attributes": _json(event.attributes),
        "input": _json(event.input),
        "output": _json(event.output),
        "error": _json(event.error),
        "events": _json(event.events),
        "blocked_by": _blocked_by(event),
        "model": llm.model if llm else None,
        "provider": llm.provider if llm else None,
        "input_tokens": _bounded(llm.input_tokens, _INT64, "llm.input_tokens") if llm else None,
        "output_tokens": _bounded(llm.output_tokens, _INT64, "llm.output_tokens") if llm else None,
        "cached_input_tokens": _bounded(llm.cached_input_tokens, _INT64, "llm.cached_input_tokens")
        if llm
        else None,
        "cache_write_tokens": _bounded(llm.cache_write_tokens, _INT64, "llm.cache_write_tokens")
        if llm
        else None,
        "reasoning_tokens": _bounded(llm.reasoning_tokens, _INT64, "llm.reasoning_tokens")
        if llm
        else None,
        "sdk_cost": _money(llm.cost, "llm.cost") if llm else None,
        # Set by pricing (services/costs/prices.py) before the rows are stored.
        "cost": None,
        "cost_match": None,
        "pricing_version": None,
        "priced_model": None,
    }


def _duration_ms(started_at: dt.datetime, ended_at: dt.datetime | None) -> float | None:
    if ended_at is None:
        return None
    return round((to_utc(ended_at) - to_utc(started_at)).total_seconds() * 1000, 3)


def _blocked_by(event: SpanEvent) -> str | None:
    """The stage whose deny decision refused a blocked span (None: not blocked, or no stage
    said so)."""
    if event.status != "blocked":
        return None
    for point in event.events:
        if point.name == DECISION_EVENT and point.attributes.get("outcome") == "deny":
            stage = point.attributes.get("stage")
            return str(stage)[:16] if stage else None
    return None


def _json(value: Any) -> str | None:
    """JSON text for a JSON column; ``None`` stays SQL NULL (not the JSON ``null``)."""
    if value is None:
        return None
    if isinstance(value, BaseModel):
        value = value.model_dump()
    elif isinstance(value, list) and value and isinstance(value[0], BaseModel):
        value = [item.model_dump() for item in value]
    return msgspec.json.encode(value).decode()


def _utc(moment: dt.datetime | None) -> dt.datetime | None:
    """``moment`` in UTC (naive means UTC): SQLite stores times without their offset."""
    if moment is None:
        return None
    try:
        return to_utc(moment)
    except OverflowError as exc:
        raise ValueError(f"{moment.isoformat()} is out of range in UTC") from exc


def _bounded(value: int | None, limit: int, field: str) -> int | None:
    if value is not None and value > limit:
        raise ValueError(f"{field}: {value} is more than the hub stores ({limit})")
    return value


_MAX_MONEY = Decimal(10) ** 10  # what Numeric(20, 10) holds


def _money(value: Decimal | None, field: str) -> Decimal | None:
    if value is not None and value >= _MAX_MONEY:
        raise ValueError(f"{field}: {value} is more than the hub stores")
    return value


def _without_nul(value: Any) -> Any:
    """``value`` with each NUL character replaced by U+FFFD."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {_without_nul(key): _without_nul(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_without_nul(item) for item in value]
    return value


def _supported(version: Any) -> bool:
    return version == SCHEMA_VERSION and not isinstance(version, bool)  # JSON true == 1


def _uuid_or_none(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _describe(exc: ValidationError, *, tagged: bool = False, limit: int = 3) -> str:
    """``field: message`` for the first errors; ``tagged`` drops the union tag from paths."""
    parts = []
    for error in exc.errors(include_url=False)[:limit]:
        location = error["loc"][1:] if tagged and len(error["loc"]) > 1 else error["loc"]
        path = ".".join(str(part) for part in location)
        parts.append(f"{path}: {error['msg']}" if path else error["msg"])
    more = exc.error_count() - limit
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


# -- storing --------------------------------------------------------------------------------------


async def _store(
    session: AsyncSession,
    org_id: uuid.UUID,
    parsed: _Parsed,
    derived: DerivedWork | None,
    pricing: bool,
) -> IngestResult:
    runs, run_steps = _fold(parsed.runs)
    spans, span_steps = _fold(parsed.spans)
    accepted = 0
    if runs or spans:
        try:
            if pricing and any(is_call(row) for row in spans):
                # In the transaction: an acknowledged span has its cost (run totals: below on
                # SQLite, as derived work on PostgreSQL, see services/costs/totals.py).
                price_span_rows(await load_price_book(session, org_id), spans)
            changed_runs = await upsert_newest(session, _table(Run), runs)
            changed_spans = await upsert_newest(session, _table(Span), spans)
            await index_for_search(
                session,
                org_id,
                runs=runs,
                changed_runs=changed_runs,
                spans=spans,
                changed_spans=changed_spans,
            )
            # Last: every batch of an agent updates its row, so its lock is held the least time.
            await _register_agents(session, org_id, runs)
            calls = {row["run_id"] for row in spans if row["id"] in changed_spans and is_call(row)}
            owed = changed_runs | calls
            if pricing and owed:
                owed = await _total_held_runs(session, org_id, changed_runs, owed)
            notice = None
            if derived is not None and (changed_runs or changed_spans):
                # In the same transaction: the change and what it owes commit together.
                span_runs = {row["run_id"] for row in spans if row["id"] in changed_spans}
                payload = _notice(
                    org_id,
                    runs=changed_runs,
                    spans=changed_spans,
                    calls=calls,
                    span_runs=span_runs,
                    owed=owed,
                )
                notice = await derived.record(session, EVENTS_COMMITTED, payload)
            await session.commit()
        except OperationalError as exc:
            logger.warning("ingest: the database refused a write: %s", exc)
            raise Unavailable(
                "database_unavailable",
                "The database could not take the events; retry.",
                headers={"Retry-After": "1"},
            ) from exc
        accepted = sum(run_steps[key] for key in changed_runs)
        accepted += sum(span_steps[key] for key in changed_spans)
        if derived is not None and notice is not None:  # the notice only if derived: for mypy
            await _hand_over(derived, notice)
    valid = len(parsed.runs) + len(parsed.spans)
    return IngestResult(
        accepted=accepted,
        duplicates=valid - accepted,
        rejected=len(parsed.rejections),
        errors=parsed.rejections,
    )


async def _total_held_runs(
    session: AsyncSession, org_id: uuid.UUID, held: set[uuid.UUID], owed: set[uuid.UUID]
) -> set[uuid.UUID]:
    """Total the runs of ``owed`` this transaction may total itself; the ones left to derived
    work (:mod:`agentops_server.services.costs.totals`).

    SQLite has one writer: a sum made here cannot miss a concurrent span, so every run is
    totalled. On PostgreSQL, the runs whose rows this transaction wrote (``held``: locked by
    their upsert, in id order) are summed here, in a statement after the spans' upsert, which
    sees every span committed by then; a concurrent request's spans of the same run commit
    later, and their own commit's task totals the run again (it must lock the run first, so it
    sums after this commit). The runs of calls whose rows were not written here are left to
    derived work: locking them here would take run locks after span locks, out of order."""
    if _dialect(session) == "sqlite":
        await total_runs(session, org_id, owed, locked=True)
        return set()
    mine = owed & held
    if mine:
        await total_runs(session, org_id, mine, locked=True)
    return owed - mine


def _notice(
    org_id: uuid.UUID,
    *,
    runs: set[uuid.UUID],
    spans: set[uuid.UUID],
    calls: set[uuid.UUID],
    span_runs: set[uuid.UUID],
    owed: set[uuid.UUID],
) -> dict[str, Any]:
    """The payload of :data:`EVENTS_COMMITTED` for what a commit changed."""
    return {
        "org_id": str(org_id),
        "run_ids": sorted(str(run_id) for run_id in runs),
        "span_ids": sorted(str(span_id) for span_id in spans),
        "call_run_ids": sorted(str(run_id) for run_id in calls),
        "span_run_ids": sorted(str(run_id) for run_id in span_runs),
        "owed_run_ids": sorted(str(run_id) for run_id in owed),
        "committed_at": dt.datetime.now(dt.UTC).isoformat(),
    }


async def _hand_over(derived: DerivedWork, notice: Notice) -> None:
    """Hand the committed notice to derived work; the events are committed whatever happens to
    it (a durable backend recorded it with them), so a failure is logged, never answered."""
    try:
        await derived.dispatch(notice)
    except Exception:
        logger.exception("ingest: the events-committed notice was not handed over")


def _fold(rows: list[Row]) -> tuple[list[Row], Counter[uuid.UUID]]:
    """The newest row of each id, sorted by id, and how many rows of each id were steps forward.

    The steps count the events that changed the row as the batch is read in order; when the
    upsert changes the stored row they are the accepted events, the others are duplicates.
    """
    newest: dict[uuid.UUID, Row] = {}
    steps: Counter[uuid.UUID] = Counter()
    for row in rows:
        held = newest.get(row["id"])
        if held is None or _supersedes(row, held):
            newest[row["id"]] = row
            steps[row["id"]] += 1
    return [newest[key] for key in sorted(newest)], steps


def _supersedes(new: Row, old: Row) -> bool:
    """The merge rule, for events of one batch; :func:`~agentops_server.db.upsert.upsert_newest`
    applies the same rule in SQL."""
    if new["status"] == "running":
        return False
    if old["status"] == "running":
        return True
    new_end, old_end = new["ended_at"], old["ended_at"]
    return new_end is not None and old_end is not None and new_end > old_end


def _dialect(session: AsyncSession) -> str:
    return session.get_bind().dialect.name


def _table(model: type[Base]) -> Table:
    table = model.__table__
    assert isinstance(table, Table)
    return table


async def _register_agents(session: AsyncSession, org_id: uuid.UUID, runs: list[Row]) -> None:
    """Add agents seen for the first time; widen ``first_seen_at``/``last_seen_at`` of others
    (registry fields are left as they are)."""
    seen: dict[str, tuple[dt.datetime, dt.datetime]] = {}
    for run in runs:
        first = run["started_at"]
        last = max(first, run["ended_at"] or first)
        if run["agent"] in seen:
            known_first, known_last = seen[run["agent"]]
            first, last = min(first, known_first), max(last, known_last)
        seen[run["agent"]] = (first, last)
    if not seen:
        return
    table = _table(Agent)
    rows = [
        {
            "org_id": org_id,
            "id": uuid.uuid4(),
            "name": name,
            "first_seen_at": first,
            "last_seen_at": last,
        }
        for name, (first, last) in sorted(seen.items())
    ]
    statement = dialect_insert(session, table)
    excluded = statement.excluded
    # An agent made through the registry has no times until its first run arrives.
    earlier = or_(table.c.first_seen_at.is_(None), excluded.first_seen_at < table.c.first_seen_at)
    later = or_(table.c.last_seen_at.is_(None), excluded.last_seen_at > table.c.last_seen_at)
    statement = statement.on_conflict_do_update(
        index_elements=[table.c.org_id, table.c.name],
        set_={
            "first_seen_at": case((earlier, excluded.first_seen_at), else_=table.c.first_seen_at),
            "last_seen_at": case((later, excluded.last_seen_at), else_=table.c.last_seen_at),
        },
        where=or_(earlier, later),
    )
    await session.execute(statement, rows)
