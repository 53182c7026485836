"""A member's in-app notifications: list, unread count, mark read.

Notifications are per member of an org: a person sees, in the org they are signed in to, only
their own. Each is made once by :mod:`~agentops_server.services.notifications.announcements`
(its id derives from the change it tells of and the person, so a task run twice makes none
twice) and stays until the member leaves the org.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import uuid
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from agentops_server.backends.live import StreamTopic
from agentops_server.db.models import Notification
from agentops_server.refusals import NotFound
from agentops_server.services.pagination import newest_first

__all__ = [
    "MAX_PAGE_SIZE",
    "NOTIFICATIONS",
    "NOTIFICATIONS_TOPIC",
    "NotificationPage",
    "NotificationView",
    "list_notifications",
    "mark_all_read",
    "mark_read",
    "unread_count",
    "view_of",
]

MAX_PAGE_SIZE = 200


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class NotificationView:
    """A notification as its member sees it."""

    id: uuid.UUID
    kind: str
    """What happened: ``control.changed``, ``approval.requested``, ``approval.escalated``,
    ``approval.decided`` (later: ``budget.threshold``)."""
    title: str
    body: str
    data: dict[str, Any]
    created_at: dt.datetime
    read_at: dt.datetime | None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class NotificationPage:
    """One page, newest first; pass ``next_cursor`` back for the next (None: the end)."""

    items: list[NotificationView]
    next_cursor: str | None


async def list_notifications(
    session: AsyncSession,
    org_id: uuid.UUID,
    user_id: uuid.UUID,
    *,
    unread_only: bool = False,
    limit: int = 50,
    cursor: str | None = None,
) -> NotificationPage:
    """The member's notifications, newest first, ``limit`` (1 to 200) at a time."""
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise ValueError(f"limit must be between 1 and {MAX_PAGE_SIZE}, got {limit}")
    where = [Notification.org_id == org_id, Notification.user_id == user_id]
    if unread_only:
        where.append(Notification.read_at.is_(None))
    rows, next_cursor = await newest_first(
        session,
        Notification,
        (Notification.created_at, Notification.id),
        where,
        limit=limit,
        cursor=cursor,
    )
    return NotificationPage(items=[view_of(row) for row in rows], next_cursor=next_cursor)


async def unread_count(session: AsyncSession, org_id: uuid.UUID, user_id: uuid.UUID) -> int:
    """How many of the member's notifications are unread."""
    found = await session.scalar(
        select(func.count())
        .select_from(Notification)
        .where(
            Notification.org_id == org_id,
            Notification.user_id == user_id,
            Notification.read_at.is_(None),
        )
    )
    return int(found or 0)


async def mark_read(
    session: AsyncSession, org_id: uuid.UUID, user_id: uuid.UUID, notification_id: uuid.UUID
) -> NotificationView:
    """Mark one of the member's notifications read (again: no change); commit.

    Refusal: ``notification_not_found`` (another person's, another org's, or none).
    """
    row = await session.scalar(
        select(Notification).where(
            Notification.org_id == org_id,
            Notification.user_id == user_id,
            Notification.id == notification_id,
        )
    )
    if row is None:
        raise NotFound("notification_not_found", "You have no such notification.")
    if row.read_at is None:
        row.read_at = dt.datetime.now(dt.UTC)
        await session.commit()
    return view_of(row)


async def mark_all_read(session: AsyncSession, org_id: uuid.UUID, user_id: uuid.UUID) -> int:
    """Mark every unread notification of the member read; commit; how many were unread."""
    result = await session.execute(
        update(Notification)
        .where(
            Notification.org_id == org_id,
            Notification.user_id == user_id,
            Notification.read_at.is_(None),
        )
        .values(read_at=dt.datetime.now(dt.UTC))
        .execution_options(synchronize_session=False)
    )
    await session.commit()
    return int(getattr(result, "rowcount", 0) or 0)


def view_of(row: Notification) -> NotificationView:
    """``row`` as its member sees it."""
    return NotificationView(
        id=row.id,
        kind=row.kind,
        title=row.title,
        body=row.body,
        data=row.data,
        created_at=row.created_at,
        read_at=row.read_at,
    )


async def notifications_version(session: AsyncSession, org_id: uuid.UUID) -> int:
    """When the org's newest notification was made, in microseconds (0: none yet)."""
    latest = await session.scalar(
        select(func.max(Notification.created_at)).where(Notification.org_id == org_id)
    )
    return 0 if latest is None else int(latest.timestamp() * 1_000_000)


async def notifications_snapshot(session: AsyncSession, org_id: uuid.UUID) -> tuple[int, str]:
    """The stream's ``notifications`` event: a nudge that says only that the org's members
    may have new notifications (the stream is the org's, a notification one member's: each
    client fetches its own unread count and list)."""
    version = await notifications_version(session, org_id)
    return version, json.dumps({"latest": version})


NOTIFICATIONS = "notifications"
NOTIFICATIONS_TOPIC = StreamTopic(
    NOTIFICATIONS, snapshot=notifications_snapshot, version=notifications_version
)
"""New notifications on the org's live stream: found by every hub process's version watch, so
those a worker process made reach the streams within a watch interval."""
