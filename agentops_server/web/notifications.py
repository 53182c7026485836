"""``/notifications``: the signed-in person's notifications, and the shell's bell.

The page lists them (newest first, a page at a time, or only the unread), marks one or all read:
the services of ``/api/v1/notifications`` under the same permission (``account:self``). The
bell in the shell (``templates/shell.html``) shows the unread count with every page;
``static/bell.js`` keeps it live: on each new version of the stream's ``notifications`` topic
(``GET /live``) it fetches this page and takes the count from it.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import PathParameter
from sqlalchemy.ext.asyncio import AsyncSession

from agentops_server.api.v1.actors import user_id_of
from agentops_server.auth.guards import requires
from agentops_server.refusals import Refused
from agentops_server.security.permissions import Permission
from agentops_server.security.principal import Principal
from agentops_server.services.notifications import inbox
from agentops_server.web.pages import done, page

__all__ = ["NotificationPages"]

PATH = "/notifications"
PAGE_SIZE = 50
_OWN = [requires(Permission.ACCOUNT)]


class NotificationPages(Controller):
    """The person's own notifications in the org they are signed in to."""

    @get(PATH, guards=_OWN)
    async def notifications_page(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
    ) -> Response[Any]:
        """A page of notifications (``?unread=1``: only the unread; ``?cursor=``: the next)."""
        query = request.query_params
        unread_only = query.get("unread") == "1"
        refusal = None
        try:
            found = await inbox.list_notifications(
                db_session,
                request.auth.org_id,
                user_id_of(request.auth),
                unread_only=unread_only,
                limit=PAGE_SIZE,
                cursor=query.get("cursor") or None,
            )
        except Refused as exc:
            refusal, found = exc, inbox.NotificationPage(items=[], next_cursor=None)
        response = await page(
            request,
            db_session,
            "notifications.html",
            notifications=found.items,
            next_cursor=found.next_cursor,
            unread_only=unread_only,
            error=refusal,
        )
        response.status_code = refusal.status if refusal else 200
        return response

    @post(PATH + "/{notification_id:uuid}/read", guards=_OWN)
    async def mark_read(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        notification_id: Annotated[uuid.UUID, PathParameter()],
    ) -> Response[Any]:
        """Mark one read (again: nothing changes)."""
        await inbox.mark_read(
            db_session, request.auth.org_id, user_id_of(request.auth), notification_id
        )
        return done(PATH, "notifications_read")

    @post(PATH + "/read-all", guards=_OWN)
    async def mark_all_read(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
    ) -> Response[Any]:
        """Mark every unread one read."""
        await inbox.mark_all_read(db_session, request.auth.org_id, user_id_of(request.auth))
        return done(PATH, "notifications_read")
