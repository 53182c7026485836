"""Streamed exports of runs and of what their LLM calls cost, as CSV or JSON Lines.

An export reads the rows the run explorer's filters select (:mod:`.run_filters`) through a
server-side cursor (``yield_per``: PostgreSQL's named cursor, SQLite's stepping statement), a
batch of :data:`BATCH` rows at a time, and yields each batch encoded as bytes while the next
is read; so the hub's memory holds one batch whatever the number of rows, and the first bytes
leave before the last row is read. The session is its own (the request's would close when the
handler returns, before the body is sent), acting as the org, so row-level security applies.

Runs come newest first; cost rows (one per LLM call of those runs) likewise by the call's start.
"""

from __future__ import annotations

import csv
import datetime as dt
import functools
import io
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from decimal import Decimal
from typing import Any, Literal

import msgspec
from sqlalchemy import Select, and_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from agentops_server.db.engine import open_session
from agentops_server.db.models import Run, Span
from agentops_server.db.tenancy import tenant
from agentops_server.services.telemetry.run_filters import RunFilter, run_conditions

__all__ = ["BATCH", "COST_COLUMNS", "RUN_COLUMNS", "ExportFormat", "ExportKind", "export"]

BATCH = 1000
"""Rows read from the database, and encoded, at a time."""

ExportKind = Literal["runs", "costs"]
ExportFormat = Literal["csv", "jsonl"]

RUN_COLUMNS: tuple[str, ...] = (
    "id",
    "agent",
    "name",
    "environment",
    "status",
    "started_at",
    "ended_at",
    "duration_ms",
    "tags",
    "error_type",
    "span_count",
    "error_count",
    "llm_calls",
    "unpriced_calls",
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "cost",
    "sdk_cost",
)
"""The columns of a runs export, in order (CSV header; JSON keys)."""

COST_COLUMNS: tuple[str, ...] = (
    "span_id",
    "run_id",
    "agent",
    "environment",
    "started_at",
    "model",
    "provider",
    "priced_model",
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "cost",
    "sdk_cost",
    "cost_match",
    "pricing_version",
)
"""The columns of a costs export: one row per LLM call of the selected runs."""


def export(
    engine: AsyncEngine,
    org_id: uuid.UUID,
    where: RunFilter,
    *,
    kind: ExportKind,
    fmt: ExportFormat,
) -> AsyncIterator[bytes]:
    """The org's ``kind`` rows matching ``where`` in ``fmt``, a batch of bytes at a time.

    The filter is checked now (``validation_error`` for a search with no word), so a refusal
    is answered before any byte is streamed; the rows are read as the bytes are taken.
    """
    conditions = run_conditions(engine.dialect.name, org_id, where)
    statement = _runs(conditions) if kind == "runs" else _costs(conditions)
    columns = RUN_COLUMNS if kind == "runs" else COST_COLUMNS
    if fmt == "csv":
        return _stream(engine, org_id, statement, _csv_batch, header=_csv_batch([columns]))
    return _stream(engine, org_id, statement, functools.partial(_jsonl_batch, columns))


async def _stream(
    engine: AsyncEngine,
    org_id: uuid.UUID,
    statement: Select[Any],
    encode: Callable[[Sequence[Any]], bytes],
    *,
    header: bytes = b"",
) -> AsyncIterator[bytes]:
    if header:
        yield header
    with tenant(org_id=org_id):
        async with open_session(engine) as session, session.begin():
            result = await session.stream(statement.execution_options(yield_per=BATCH))
            async for rows in result.partitions(BATCH):
                yield encode(rows)


def _runs(conditions: list[Any]) -> Select[Any]:
    columns: list[Any] = [
        Run.id,
        Run.agent,
        Run.name,
        Run.environment,
        Run.status,
        Run.started_at,
        Run.ended_at,
        Run.duration_ms,
        Run.tags,
        Run.error["type"].as_string().label("error_type"),
        Run.span_count,
        Run.error_count,
        Run.llm_calls,
        Run.unpriced_calls,
        Run.input_tokens,
        Run.output_tokens,
        Run.cached_input_tokens,
        Run.cache_write_tokens,
        Run.reasoning_tokens,
        Run.cost,
        Run.sdk_cost,
    ]
    return select(*columns).where(*conditions).order_by(Run.started_at.desc(), Run.id.desc())


def _costs(conditions: list[Any]) -> Select[Any]:
    columns: list[Any] = [
        Span.id.label("span_id"),
        Span.run_id,
        Run.agent,
        Run.environment,
        Span.started_at,
        Span.model,
        Span.provider,
        Span.priced_model,
        Span.input_tokens,
        Span.output_tokens,
        Span.cached_input_tokens,
        Span.cache_write_tokens,
        Span.reasoning_tokens,
        Span.cost,
        Span.sdk_cost,
        Span.cost_match,
        Span.pricing_version,
    ]
    return (
        select(*columns)
        .join(Run, and_(Run.org_id == Span.org_id, Run.id == Span.run_id))
        .where(*conditions, Span.org_id == Run.org_id, Span.cost_match.is_not(None))
        .order_by(Span.started_at.desc(), Span.id.desc())
    )


def _csv_batch(rows: Sequence[Any]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerows([_csv_value(value) for value in row] for row in rows)
    return out.getvalue().encode()


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, list | dict):
        return msgspec.json.encode(value).decode()
    return value


def _jsonl_batch(columns: Sequence[str], rows: Sequence[Any]) -> bytes:
    lines = [_JSON.encode(dict(zip(columns, row, strict=True))) for row in rows]
    return b"\n".join(lines) + b"\n" if lines else b""


def _json_value(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    raise NotImplementedError(type(value))


_JSON = msgspec.json.Encoder(enc_hook=_json_value, decimal_format="string")
