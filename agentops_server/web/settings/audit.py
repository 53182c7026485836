"""The audit log page: the org's entries, newest first, with the filters of ``GET
/api/v1/audit`` and its cursor pagination (:func:`~agentops_server.services.audit.
list_entries`)."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlencode

from litestar import Controller, Request, Response, get
from litestar.di import NamedDependency
from sqlalchemy.ext.asyncio import AsyncSession

from agentops_server.auth.guards import requires
from agentops_server.refusals import Invalid, Refused
from agentops_server.security.permissions import Permission
from agentops_server.security.principal import Principal
from agentops_server.services import audit
from agentops_server.services.audit import AuditFilter, AuditPage
from agentops_server.services.identity import members
from agentops_server.values import Timestamp
from agentops_server.web.settings.tabs import render

__all__ = ["AuditPages"]

PATH = "/settings/audit"
FILTERS = ("action", "actor_id", "target_type", "target_id", "since", "until")
PAGE_SIZE = 50


class AuditPages(Controller):
    """``/settings/audit``: ``audit:read`` (owners, admins)."""

    @get(PATH, guards=[requires(Permission.AUDIT_READ)])
    async def audit_page(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
    ) -> Response[Any]:
        """One page of the entries matching the filters of the query string."""
        chosen = {key: request.query_params.get(key, "").strip() for key in FILTERS}
        refusal: Refused | None = None
        found = AuditPage(items=[], next_cursor=None)
        try:
            found = await audit.list_entries(
                db_session,
                request.auth.org_id,
                _filter(chosen),
                limit=PAGE_SIZE,
                cursor=request.query_params.get("cursor") or None,
            )
        except Refused as exc:
            refusal = exc
        given = {key: value for key, value in chosen.items() if value}
        people = (
            (await members.list_members(db_session, request.auth.org_id)).items
            if request.auth.can(Permission.MEMBERS_READ)
            else []
        )
        return await render(
            request,
            db_session,
            "settings/audit.html",
            refusal,
            entries=found.items,
            emails={person.user_id: person.email for person in people},
            chosen=chosen,
            next_page=(
                f"{PATH}?{urlencode({**given, 'cursor': found.next_cursor})}"
                if found.next_cursor
                else None
            ),
            first_page=f"{PATH}?{urlencode(given)}" if request.query_params.get("cursor") else None,
        )


def _filter(chosen: dict[str, str]) -> AuditFilter:
    return AuditFilter(
        action=chosen["action"] or None,
        actor_id=_uuid(chosen["actor_id"]),
        target_type=chosen["target_type"] or None,
        target_id=chosen["target_id"] or None,
        since=_moment(chosen["since"]),
        until=_moment(chosen["until"]),
    )


def _moment(value: str) -> Timestamp | None:
    """A filter's time: ISO 8601, or a browser's ``datetime-local`` (minutes, no seconds), UTC."""
    if not value:
        return None
    return Timestamp.parse(value + ":00" if len(value) == len("2026-01-31T12:00") else value)


def _uuid(value: str) -> uuid.UUID | None:
    if not value:
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        raise Invalid("invalid_form", "The actor is an id (a UUID).") from None
