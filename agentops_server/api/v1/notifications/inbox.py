"""``/api/v1/notifications``: the signed-in member's notifications: list, unread count, mark
read."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession

from agentops_server.api.v1.actors import user_id_of
from agentops_server.auth.guards import requires
from agentops_server.security.permissions import Permission
from agentops_server.security.principal import Principal
from agentops_server.services.notifications import inbox
from agentops_server.services.notifications.inbox import NotificationPage, NotificationView
from agentops_server.values import Text

__all__ = ["NotificationController"]

_OWN = [requires(Permission.ACCOUNT)]
"""Notifications are a person's own: ``account:self``, which no API key has."""


class UnreadCount(msgspec.Struct):
    """How many of the member's notifications are unread."""

    unread: int


class Marked(msgspec.Struct):
    """How many notifications were marked read."""

    marked: int


class NotificationController(Controller):
    """The caller's own notifications in the org they are signed in to."""

    path = "/notifications"
    tags = ("notifications",)

    @get(
        "/",
        guards=_OWN,
        summary="Your notifications",
        description=(
            "Newest first; pass `next_cursor` back as `cursor` for the next page; `unread=true` "
            "lists only the unread. Kinds: `control.changed`, `approval.requested`, "
            "`approval.escalated`, `approval.decided` (see docs/notifications.md)."
        ),
    )
    async def list_notifications(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        unread: Annotated[bool, QueryParameter(description="Only unread ones.")] = False,
        limit: Annotated[int, QueryParameter(ge=1, le=inbox.MAX_PAGE_SIZE)] = 50,
        cursor: Annotated[
            Text | None, QueryParameter(description="`next_cursor` of the previous page.")
        ] = None,
    ) -> NotificationPage:
        """A page of the caller's notifications."""
        return await inbox.list_notifications(
            db_session,
            request.auth.org_id,
            user_id_of(request.auth),
            unread_only=unread,
            limit=limit,
            cursor=cursor,
        )

    @get("/unread-count", guards=_OWN, summary="How many of your notifications are unread")
    async def unread_count(
        self, request: Request[Principal, Principal, Any], db_session: NamedDependency[AsyncSession]
    ) -> UnreadCount:
        """The caller's unread count."""
        count = await inbox.unread_count(db_session, request.auth.org_id, user_id_of(request.auth))
        return UnreadCount(unread=count)

    @post(
        "/{notification_id:uuid}/read",
        guards=_OWN,
        status_code=200,
        summary="Mark a notification read",
        description="Marking it again changes nothing. 404 `notification_not_found`.",
    )
    async def mark_read(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        notification_id: FromPath[uuid.UUID],
    ) -> NotificationView:
        """Mark one read."""
        return await inbox.mark_read(
            db_session, request.auth.org_id, user_id_of(request.auth), notification_id
        )

    @post("/read-all", guards=_OWN, status_code=200, summary="Mark all your notifications read")
    async def mark_all_read(
        self, request: Request[Principal, Principal, Any], db_session: NamedDependency[AsyncSession]
    ) -> Marked:
        """Mark every unread one read."""
        marked = await inbox.mark_all_read(
            db_session, request.auth.org_id, user_id_of(request.auth)
        )
        return Marked(marked=marked)
