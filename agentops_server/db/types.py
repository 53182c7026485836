"""Column types that behave the same on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import DateTime
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

__all__ = ["UtcDateTime", "to_utc"]


def to_utc(moment: dt.datetime) -> dt.datetime:
    """``moment`` as an aware UTC datetime; a naive one is taken to be UTC already."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC)


class UtcDateTime(TypeDecorator[dt.datetime]):
    """Aware UTC datetimes in and out: SQLite keeps no offset, so it stores and returns UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> Any:
        """Store every moment in UTC."""
        return None if value is None else to_utc(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        """Hand back aware UTC datetimes, whatever the database returned."""
        return None if value is None else to_utc(value)
