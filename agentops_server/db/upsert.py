"""Upserts in one statement per table, on SQLite and PostgreSQL alike, the dialect chosen once.

:func:`upsert_newest` stores rows that carry a ``status`` and an ``ended_at`` (runs, spans) so
that the newest state of each ``(org_id, id)`` wins (docs/decisions/0005-ingest-upserts.md): a
final state replaces ``running``, a final state with a later ``ended_at`` replaces an earlier
one, and nothing else changes the stored row. The database applies the rule in the statement
itself (``ON CONFLICT ... DO UPDATE ... WHERE``), so concurrent writers cannot interleave a read
and a write.

- PostgreSQL: ``INSERT ... SELECT FROM jsonb_to_recordset(:rows)``, one round trip and one
  parameter whatever the number of rows (encoded in C by msgspec, decoded in C by PostgreSQL).
- SQLite: a multi-row insert.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import msgspec
from sqlalchemy import (
    JSON,
    ColumnClause,
    ColumnElement,
    Table,
    Text,
    and_,
    bindparam,
    cast,
    func,
    or_,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession

__all__ = ["Row", "dialect_insert", "upsert_newest"]

Row = dict[str, Any]
"""Column values by name; JSON columns hold JSON text already (``None`` is SQL NULL)."""

Insert = postgresql.Insert | sqlite.Insert


def dialect_insert(session: AsyncSession, table: Table) -> Insert:
    """``INSERT INTO table`` in the dialect of ``session``'s database (for ``ON CONFLICT``)."""
    return _DIALECTS[_dialect(session)][0](table)


async def upsert_newest(session: AsyncSession, table: Table, rows: list[Row]) -> set[uuid.UUID]:
    """Insert ``rows`` into ``table``, or update the stored rows they supersede; the ids that
    changed. Every row has the same columns, ``org_id`` and ``id`` among them."""
    if not rows:
        return set()
    return await _DIALECTS[_dialect(session)][1](session, table, rows)


def _newer(table: Table, excluded: Any) -> ColumnElement[bool]:
    """The merge rule in SQL: the incoming row (``excluded``) supersedes the stored one."""
    return and_(
        excluded.status != "running",
        # A NULL end time on either side compares as NULL: not newer.
        or_(table.c.status == "running", excluded.ended_at > table.c.ended_at),
    )


def _newest_wins(table: Table, insert: Insert, names: Sequence[str], key: Sequence[str]) -> Any:
    """``insert`` that updates a stored row only with a newer one, returning the changed ids;
    ``key`` names the columns of the stored unique key the rows conflict on."""
    excluded = insert.excluded
    return insert.on_conflict_do_update(
        index_elements=[table.c[name] for name in key],
        set_={name: excluded[name] for name in names if name not in key},
        where=_newer(table, excluded),
    ).returning(table.c.id)


async def _upsert_postgresql(
    session: AsyncSession, table: Table, rows: list[Row]
) -> set[uuid.UUID]:
    """``INSERT INTO table SELECT * FROM jsonb_to_recordset(all rows as one JSON parameter)``."""
    names = list(rows[0])
    columns = [table.c[name] for name in names]
    json_columns = {column.name for column in columns if _is_json(column)}
    document = msgspec.json.encode(
        [
            {
                name: msgspec.Raw(value) if name in json_columns and value is not None else value
                for name, value in row.items()
            }
            for row in rows
        ]
    )
    source = (
        func.jsonb_to_recordset(cast(bindparam("rows", document.decode(), type_=Text), JSONB))
        .table_valued(
            *[ColumnClause(c.name, JSONB if c.name in json_columns else c.type) for c in columns]
        )
        .render_derived(with_types=True)
    )
    picked = select(*[source.c[column.name] for column in columns])
    insert = postgresql.insert(table).from_select(names, picked)
    # The whole primary key: for spans it holds started_at, the partition key (migration 0012),
    # which every event of a span carries unchanged (docs/decisions/0036-span-partitions.md).
    key = [column.name for column in table.primary_key.columns]
    result = await session.execute(_newest_wins(table, insert, names, key))
    return set(result.scalars())


async def _upsert_sqlite(session: AsyncSession, table: Table, rows: list[Row]) -> set[uuid.UUID]:
    """A multi-row ``INSERT``; JSON columns bind their text as it is."""
    names = list(rows[0])
    values = {
        name: bindparam(name, type_=Text() if _is_json(table.c[name]) else table.c[name].type)
        for name in names
    }
    insert = sqlite.insert(table).values(values)
    # (org_id, id): the stored key of runs and spans alike (spans are not partitioned here).
    result = await session.execute(_newest_wins(table, insert, names, ("org_id", "id")), rows)
    return set(result.scalars())


Upsert = Callable[[AsyncSession, Table, list[Row]], Awaitable[set[uuid.UUID]]]

_DIALECTS: dict[str, tuple[Callable[[Table], Insert], Upsert]] = {
    "postgresql": (postgresql.insert, _upsert_postgresql),
    "sqlite": (sqlite.insert, _upsert_sqlite),
}
"""Each database's insert and upsert: the one place the dialect is chosen."""


def _dialect(session: AsyncSession) -> str:
    return session.get_bind().dialect.name


def _is_json(column: Any) -> bool:
    return isinstance(column.type, JSON)
