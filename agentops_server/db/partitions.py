"""The daily partitions of ``spans`` on PostgreSQL: their names, bounds and the SQL that makes,
splits and drops them (docs/decisions/0036-span-partitions.md).

``spans`` is partitioned by ``RANGE (started_at)`` (migration 0012), one partition a UTC day
named ``spans_pYYYYMMDD``, and a default partition :data:`DEFAULT` that takes any row no day
partition covers, so no insert ever fails. Partitions get no grants of their own: the app role
reaches rows only through the parent, where the tenant policy applies (``db/rls.py``).

The migration and the upkeep (:mod:`agentops_server.services.telemetry.partitions`) share these
statements; they are plain SQL so both a migration's connection and an async engine run them.
On SQLite ``spans`` is one table and none of this applies.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Final

__all__ = [
    "DEFAULT",
    "PARENT",
    "attach_split_sql",
    "create_partition_sql",
    "day_of",
    "days_in_default_sql",
    "list_partitions_sql",
    "partition_name",
]

PARENT: Final = "spans"
DEFAULT: Final = "spans_default"
"""The default partition: rows of a day that has no partition yet."""
_DAY_PARTITION: Final = re.compile(r"^spans_p(\d{8})$")


def partition_name(day: dt.date) -> str:
    """``spans_pYYYYMMDD``: the partition of the UTC day ``day``."""
    return f"{PARENT}_p{day:%Y%m%d}"


def day_of(name: str) -> dt.date | None:
    """The UTC day a partition named by :func:`partition_name` holds (None for other names)."""
    match = _DAY_PARTITION.match(name)
    return dt.datetime.strptime(match.group(1), "%Y%m%d").date() if match else None


def create_partition_sql(day: dt.date) -> str:
    """Make the (empty) partition of ``day``, if it is not there; fails if the default
    partition holds rows of that day (split them out with :func:`attach_split_sql`)."""
    return (
        f"CREATE TABLE IF NOT EXISTS {partition_name(day)} PARTITION OF {PARENT} "
        f"FOR VALUES FROM ({_bound(day)}) TO ({_bound(day + dt.timedelta(days=1))})"
    )


def attach_split_sql(day: dt.date) -> list[str]:
    """Move the rows of ``day`` out of the default partition into a new partition of their
    own, in one transaction: a table like the parent takes the rows, they leave the default
    partition, and the table is attached (PostgreSQL then builds its indexes and checks the
    default partition holds no row of the day)."""
    name, lower, upper = (
        partition_name(day),
        _bound(day),
        _bound(day + dt.timedelta(days=1)),
    )
    in_day = f"started_at >= {lower} AND started_at < {upper}"
    return [
        f"LOCK TABLE {DEFAULT} IN SHARE ROW EXCLUSIVE MODE",
        f"CREATE TABLE {name} (LIKE {PARENT} INCLUDING DEFAULTS)",
        f"INSERT INTO {name} SELECT * FROM {DEFAULT} WHERE {in_day}",
        f"DELETE FROM {DEFAULT} WHERE {in_day}",
        f"ALTER TABLE {PARENT} ATTACH PARTITION {name} FOR VALUES FROM ({lower}) TO ({upper})",
    ]


def days_in_default_sql() -> str:
    """The UTC days (as dates) of the rows in the default partition."""
    return f"SELECT DISTINCT (started_at AT TIME ZONE 'UTC')::date FROM {DEFAULT} ORDER BY 1"


def list_partitions_sql() -> str:
    """The day tables of ``spans`` in the current schema, each with whether it is attached (a
    detached one was left by a drop that could not get its lock)."""
    return (
        "SELECT c.relname, c.relispartition FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = current_schema() AND c.relkind = 'r' "
        f"AND c.relname LIKE '{PARENT}\\_p%' "
        "ORDER BY c.relname"
    )


def _bound(day: dt.date) -> str:
    return f"'{day.isoformat()} 00:00:00+00'"
