"""``/api/v1/audit``: the org's audit log, filtered, newest first, a page at a time."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from litestar import Controller, Request, get
from litestar.di import NamedDependency
from litestar.params import QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession

from agentops_server.auth.guards import requires
from agentops_server.security.permissions import Permission
from agentops_server.security.principal import Principal
from agentops_server.services import audit
from agentops_server.services.audit import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, AuditPage
from agentops_server.values import Text, Timestamp

__all__ = ["AuditController"]


class AuditController(Controller):
    """Reading the audit log (owners, admins and admin keys)."""

    path = "/audit"
    tags = ("audit",)
    guards = (requires(Permission.AUDIT_READ),)

    @get(
        "/",
        summary="The org's audit log",
        description=(
            "Every admin, membership, key, role and settings action: who (`actor_type`, "
            "`actor_id`, `ip`, `request_id`), what (`action`, `target_type`, `target_id`), "
            "`before` and `after`, when (`at`). Newest first; pass `next_cursor` back as "
            "`cursor` for the next page. Errors: 400 `invalid_action`, `invalid_cursor`, "
            "`validation_error`."
        ),
    )
    async def list_entries(
        self,
        *,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        action: Annotated[
            Text | None,
            QueryParameter(
                description="An action (`member.role_changed`) or, ending in a dot, a prefix "
                "(`member.`)."
            ),
        ] = None,
        actor_id: Annotated[
            uuid.UUID | None, QueryParameter(description="Only what this user or key did.")
        ] = None,
        target_type: Annotated[
            Text | None,
            QueryParameter(
                description="`org`, `member`, `invitation`, `team`, `api_key`, `agent`…"
            ),
        ] = None,
        target_id: Annotated[
            Text | None,
            QueryParameter(description="Only entries about this target."),
        ] = None,
        since: Annotated[
            Timestamp | None, QueryParameter(description="ISO 8601; at or after (naive: UTC).")
        ] = None,
        until: Annotated[
            Timestamp | None,
            QueryParameter(description="ISO 8601; strictly before (naive: UTC)."),
        ] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=MAX_PAGE_SIZE)] = DEFAULT_PAGE_SIZE,
        cursor: Annotated[
            Text | None, QueryParameter(description="`next_cursor` of the previous page.")
        ] = None,
    ) -> AuditPage:
        """The org's audit entries matching the filters, newest first."""
        where = audit.AuditFilter(
            action=action,
            actor_id=actor_id,
            target_type=target_type,
            target_id=target_id,
            since=since,
            until=until,
        )
        return await audit.list_entries(
            db_session, request.auth.org_id, where, limit=limit, cursor=cursor
        )
