"""The derived-work outbox: a durable record of the tasks committed changes still owe.

A change that owes derived work writes one :class:`~agentops_server.db.models.PendingWork` row
per task registered for its notice, in its own transaction (:func:`write`): the change and the
record of its work commit together or not at all. The queue's job for a row carries the row's id
as its key; the row is deleted when the task has run, and marked failed (with the error) when the
task failed its last attempt. A row neither done nor failed after a grace period is work the
queue never got (it was down when the change committed) or lost: the worker's sweep
(:meth:`Outbox.due`) hands it over again. Tasks are therefore run at least once, and must be
idempotent.

:class:`Outbox` is the record as the processes that run derived work see it (workers, the CLI,
the hub's queue): every org's rows, through the database's connecting user, never the app's
restricted role (which may only insert).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import and_, delete, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from agentops_server.db.engine import create_async_db_engine
from agentops_server.db.models import PendingWork

__all__ = ["DeadLetter", "Outbox", "WorkItem", "new_items", "task_key", "write"]


@dataclasses.dataclass(frozen=True, slots=True)
class WorkItem:
    """One task owed for one notice: an outbox row, and the queue job that runs it."""

    id: uuid.UUID
    notice: str
    task: str
    payload: Mapping[str, Any]
    not_before: dt.datetime | None = None
    """When the task is due (None: at once)."""


@dataclasses.dataclass(frozen=True, slots=True)
class DeadLetter:
    """A task that failed its last attempt: its row stays until it is retried."""

    item: WorkItem
    error: str
    failed_at: dt.datetime


def task_key(task: Callable[..., Any]) -> str:
    """The name a task is known by in the outbox and the queue: ``module:qualified.name``, the
    same in every process that registers it from the same code."""
    return f"{task.__module__}:{task.__qualname__}"


def new_items(
    notice: str,
    tasks: Iterable[str],
    payload: Mapping[str, Any],
    not_before: dt.datetime | None = None,
) -> list[WorkItem]:
    """One new item for each task (by key) registered for ``notice``, due at ``not_before``."""
    return [WorkItem(uuid.uuid4(), notice, task, payload, not_before) for task in tasks]


async def write(session: AsyncSession, items: Sequence[WorkItem]) -> None:
    """Add the rows of ``items`` in ``session``'s transaction (it commits them with its change)."""
    if items:
        await session.execute(insert(PendingWork), _rows(items))


class Outbox:
    """The outbox of the database at ``database_url``, across every org."""

    def __init__(self, database_url: str) -> None:
        self._engine = create_async_db_engine(database_url, pool_size=2)

    async def add(self, items: Sequence[WorkItem]) -> None:
        """Record ``items`` in a transaction of their own (work no transaction wrote)."""
        if items:
            async with self._engine.begin() as connection:
                await connection.execute(insert(PendingWork), _rows(items))

    async def done(self, item_id: uuid.UUID) -> None:
        """The task of ``item_id`` has run: forget it."""
        async with self._engine.begin() as connection:
            await connection.execute(delete(PendingWork).where(PendingWork.id == item_id))

    async def failed(self, item_id: uuid.UUID, error: str) -> None:
        """The task of ``item_id`` failed its last attempt: keep it as a dead letter."""
        async with self._engine.begin() as connection:
            await connection.execute(
                update(PendingWork)
                .where(PendingWork.id == item_id)
                .values(failed_at=dt.datetime.now(dt.UTC), error=error)
            )

    async def due(self, grace: float, *, limit: int = 1000) -> list[WorkItem]:
        """Items neither done nor failed, recorded more than ``grace`` seconds ago and due by
        now, oldest first: work to hand over again."""
        now = dt.datetime.now(dt.UTC)
        cutoff = now - dt.timedelta(seconds=grace)
        query = (
            select(PendingWork)
            .where(
                PendingWork.failed_at.is_(None),
                PendingWork.created_at <= cutoff,
                or_(PendingWork.not_before.is_(None), PendingWork.not_before <= now),
            )
            .order_by(PendingWork.created_at)
            .limit(limit)
        )
        async with self._engine.connect() as connection:
            return [_item(row) for row in await connection.execute(query)]

    async def dead_letters(self) -> list[DeadLetter]:
        """Every task that failed its last attempt, oldest first."""
        query = (
            select(PendingWork)
            .where(PendingWork.failed_at.is_not(None))
            .order_by(PendingWork.failed_at)
        )
        async with self._engine.connect() as connection:
            return [
                DeadLetter(_item(row), row.error or "", row.failed_at)
                for row in await connection.execute(query)
            ]

    async def revive(self, ids: Sequence[uuid.UUID] | None) -> list[WorkItem]:
        """Make the dead letters ``ids`` (``None``: every one) pending again; the revived."""
        condition: ColumnElement[bool] = PendingWork.failed_at.is_not(None)
        if ids is not None:
            condition = and_(condition, PendingWork.id.in_(ids))
        statement = (
            update(PendingWork)
            .where(condition)
            .values(failed_at=None, error=None)
            .returning(
                PendingWork.id,
                PendingWork.notice,
                PendingWork.task,
                PendingWork.payload,
                PendingWork.not_before,
            )
        )
        async with self._engine.begin() as connection:
            return [_item(row) for row in await connection.execute(statement)]

    async def close(self) -> None:
        """Release the database connections."""
        await self._engine.dispose()


def _rows(items: Sequence[WorkItem]) -> list[dict[str, Any]]:
    now = dt.datetime.now(dt.UTC)
    return [
        {
            "id": item.id,
            "notice": item.notice,
            "task": item.task,
            "payload": dict(item.payload),
            "created_at": now,
            "not_before": item.not_before,
        }
        for item in items
    ]


def _item(row: Any) -> WorkItem:
    return WorkItem(row.id, row.notice, row.task, row.payload, row.not_before)
