"""What every page of the app shell renders with: who is signed in, their orgs, what they may do.

:func:`page` builds the template response of a signed-in page; a template decides what to show
with ``can("controls:write")``, which asks the caller's permissions from the matrix
(:mod:`agentops_server.security.permissions`): hiding a button is a courtesy, the route's guard
is the check. :func:`done` redirects after a form with one of the fixed :data:`NOTICES`.
"""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.response import Redirect, Template
from sqlalchemy.ext.asyncio import AsyncSession

from agentops_server.security.permissions import Permission
from agentops_server.security.principal import Principal
from agentops_server.services.identity import accounts

__all__ = ["NAVIGATION", "NOTICES", "done", "page"]

NAVIGATION: tuple[tuple[str, str, Permission], ...] = (
    ("/dashboard", "Dashboard", Permission.ANALYTICS_READ),
    ("/controls", "Emergency controls", Permission.CONTROLS_READ),
    ("/agents", "Agents", Permission.AGENTS_READ),
    ("/approvals", "Approvals", Permission.APPROVALS_READ),
    ("/costs", "Costs", Permission.ANALYTICS_READ),
    ("/reports", "Reports", Permission.ANALYTICS_READ),
)
"""The shell's navigation: path, label, and the permission its page needs."""

NOTICES = {
    "control_set": "The control is set. Connected SDKs have been told.",
    "control_cleared": "The control is cleared.",
    "agents_controlled": "The selected agents' controls are set.",
    "approval_decided": "The decision is recorded; the waiting agent hears it at once.",
    "org_switched": "You switched org.",
}
"""The messages a page shows after a form (by key, so a link cannot make a page say more)."""


async def page(
    request: Request[Principal, Principal, Any],
    db_session: AsyncSession,
    template: str,
    **context: Any,
) -> Template:
    """The page ``template`` in the app shell, for the signed-in caller."""
    principal = request.auth
    assert principal.user_id is not None, "pages are for people"
    account = await accounts.account(
        db_session, principal.user_id, principal.org_id, principal.session_id
    )
    return Template(
        template_name=template,
        context={
            "account": account,
            "navigation": [
                (path, label) for path, label, needed in NAVIGATION if principal.can(needed)
            ],
            "current_path": request.url.path,
            "notice": NOTICES.get(request.query_params.get("done", "")),
            "can": lambda permission: principal.can(Permission(permission)),
            **context,
        },
    )


def done(path: str, notice: str) -> Redirect:
    """Back to ``path`` after a form, showing the notice ``notice``."""
    assert notice in NOTICES
    return Redirect(f"{path}?done={notice}", status_code=303)
