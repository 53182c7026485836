"""Keyset pagination, newest first, on a ``(moment, id)`` pair of columns.

A page is fetched with ``ORDER BY moment DESC, id DESC``; its cursor names the last row of the
page (URL-safe base64 of its moment and id, opaque to clients), and the next page starts
strictly after it. Rows written meanwhile never shift a page, so paging through never repeats
nor skips a row that was there. The index ``(org_id, moment, id)`` serves each page.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import uuid
from typing import TypeVar

from sqlalchemy import ColumnElement, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from agentops_server.db.types import to_utc
from agentops_server.refusals import Invalid
from agentops_server.values import Timestamp

__all__ = ["InvalidCursor", "decode_cursor", "encode_cursor", "newest_first"]

_Row = TypeVar("_Row")


class InvalidCursor(Invalid):
    """A page cursor this hub did not make (``validation_error``)."""

    def __init__(self, cursor: str) -> None:
        super().__init__("validation_error", f"not a cursor from this hub: {cursor!r}")


async def newest_first(
    session: AsyncSession,
    model: type[_Row],
    key: tuple[InstrumentedAttribute[dt.datetime], InstrumentedAttribute[uuid.UUID]],
    where: list[ColumnElement[bool]],
    *,
    limit: int,
    cursor: str | None,
) -> tuple[list[_Row], str | None]:
    """Up to ``limit`` rows of ``model`` matching ``where``, newest first by ``key`` (its
    moment and id columns), after ``cursor``; and the cursor of the next page (None: the end).

    Raises :class:`InvalidCursor` for a cursor this module did not make.
    """
    moment, row_id = key
    conditions = list(where)
    if cursor is not None:
        conditions.append(tuple_(moment, row_id) < decode_cursor(cursor))
    rows = list(
        await session.scalars(
            select(model).where(*conditions).order_by(moment.desc(), row_id.desc()).limit(limit + 1)
        )
    )
    page = rows[:limit]
    if len(rows) <= limit:
        return page, None
    last = page[-1]
    return page, encode_cursor(getattr(last, moment.key), getattr(last, row_id.key))


def encode_cursor(moment: dt.datetime, row_id: uuid.UUID) -> str:
    """The cursor of the page that starts after the row ``(moment, row_id)``."""
    raw = f"{to_utc(moment).isoformat()}|{row_id.hex}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[dt.datetime, uuid.UUID]:
    """The ``(moment, id)`` a cursor names; :class:`InvalidCursor` if this hub did not make it."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        moment, row_id = raw.split("|")
        return Timestamp.parse(moment), uuid.UUID(hex=row_id)
    except (binascii.Error, UnicodeDecodeError, ValueError, Invalid) as exc:
        raise InvalidCursor(cursor) from exc
