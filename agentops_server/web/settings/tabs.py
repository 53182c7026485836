"""What every settings page shares: the tabs of the settings area (only those the caller's
role may read) and rendering a page with a refusal of the services shown on it."""

from __future__ import annotations

import uuid
from typing import Any

from litestar import Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from agentops_server.refusals import Invalid, Refused
from agentops_server.security.permissions import Permission
from agentops_server.security.principal import Principal
from agentops_server.web.pages import page

__all__ = ["TABS", "render", "settle", "uuid_field"]

TABS: tuple[tuple[str, str, Permission], ...] = (
    ("/settings", "Org", Permission.SETTINGS_READ),
    ("/settings/members", "Members", Permission.MEMBERS_READ),
    ("/settings/teams", "Teams", Permission.TEAMS_READ),
    ("/settings/api-keys", "API keys", Permission.API_KEYS_READ),
    ("/settings/webhooks", "Webhooks", Permission.WEBHOOKS_READ),
    ("/settings/pricing", "Pricing", Permission.PRICING_READ),
    ("/settings/audit", "Audit log", Permission.AUDIT_READ),
)
"""The settings area's tabs: path, label, and the permission its page needs."""


async def settle(db_session: AsyncSession, refusal: Refused | None) -> None:
    """Forget what a refused change left in the session before the page reads again."""
    if refusal is not None:
        await db_session.rollback()


async def render(
    request: Request[Principal, Principal, Any],
    db_session: AsyncSession,
    template: str,
    refusal: Refused | None = None,
    **context: Any,
) -> Response[Any]:
    """The settings page ``template`` with its tabs; answered with the refusal's status (and
    its code and detail shown) when there is one."""
    principal = request.auth
    tabs = [(path, label) for path, label, needed in TABS if principal.can(needed)]
    current = max((path for path, _ in tabs if _under(request.url.path, path)), key=len, default="")
    response = await page(
        request, db_session, template, tabs=tabs, current_tab=current, error=refusal, **context
    )
    response.status_code = refusal.status if refusal else 200
    return response


def uuid_field(value: str, what: str) -> uuid.UUID:
    """A form's id field; 400 ``invalid_form`` when it is not a UUID."""
    try:
        return uuid.UUID(value)
    except ValueError:
        raise Invalid("invalid_form", f"Choose a {what}.") from None


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + "/")
