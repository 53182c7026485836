"""Claiming a row: one conditional ``UPDATE``, so that of concurrent requests exactly one wins.

Reading a row, checking it and then writing it races: two requests (two uses of one refresh
token, an accept and a revoke of one invitation) can both pass the check. Instead the write
itself carries the check::

    if not await claim(session, token, RefreshToken.used_at.is_(None), used_at=now):
        ...  # someone else used it first

The database applies the update to one row or none, whatever runs concurrently.
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import ColumnElement, CursorResult, inspect, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

__all__ = ["claim"]


async def claim(
    session: AsyncSession, row: object, *conditions: ColumnElement[bool], **values: Any
) -> bool:
    """Write ``values`` to the loaded ``row`` in one statement that applies only while
    ``conditions`` still hold in the database; whether it did (not committed). When it did,
    ``row`` shows the new values."""
    state = inspect(row)
    assert state.identity is not None, "only a row read from the database can be claimed"
    key = [
        column == value
        for column, value in zip(state.mapper.primary_key, state.identity, strict=True)
    ]
    result = cast(
        "CursorResult[Any]",
        await session.execute(
            update(state.mapper.class_)
            .where(*key, *conditions)
            .values(**values)
            .execution_options(synchronize_session=False)
        ),
    )
    if result.rowcount != 1:
        return False
    for name, value in values.items():
        set_committed_value(row, name, value)
    return True
