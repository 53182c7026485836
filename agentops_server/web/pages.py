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
from agentops_server.services.notifications import inbox

__all__ = ["NAVIGATION", "NOTICES", "done", "page"]

NAVIGATION: tuple[tuple[str, str, Permission], ...] = (
    ("/dashboard", "Dashboard", Permission.ANALYTICS_READ),
    ("/controls", "Emergency controls", Permission.CONTROLS_READ),
    ("/agents", "Agents", Permission.AGENTS_READ),
    ("/approvals", "Approvals", Permission.APPROVALS_READ),
    ("/runs", "Runs", Permission.RUNS_READ),
    ("/costs", "Costs", Permission.ANALYTICS_READ),
    ("/reports", "Reports", Permission.ANALYTICS_READ),
    ("/budgets", "Budgets", Permission.BUDGETS_READ),
    ("/policies", "Policies", Permission.POLICIES_READ),
    ("/settings", "Settings", Permission.SETTINGS_READ),
)
"""The shell's navigation: path, label, and the permission its page needs."""

NOTICES = {
    "control_set": "The control is set. Connected SDKs have been told.",
    "control_cleared": "The control is cleared.",
    "agents_controlled": "The selected agents' controls are set.",
    "approval_decided": "The decision is recorded; the waiting agent hears it at once.",
    "org_switched": "You switched org.",
    "org_updated": "The org's profile is saved.",
    "logo_uploaded": "The logo is uploaded.",
    "logo_removed": "The logo is removed.",
    "role_changed": "The member's role is changed.",
    "member_removed": "The member is removed from the org; their sessions in it are ended.",
    "invitation_sent": "The invitation is sent by email.",
    "invitation_resent": "The invitation is sent again; its earlier link no longer works.",
    "invitation_revoked": "The invitation is revoked; its link no longer works.",
    "team_created": "The team is created.",
    "team_renamed": "The team is renamed.",
    "team_deleted": "The team is deleted; its members stay in the org.",
    "team_member_added": "The member is added to the team.",
    "team_member_removed": "The member is taken out of the team.",
    "api_key_revoked": "The API key is revoked: it no longer works.",
    "webhook_updated": "The webhook is saved.",
    "webhook_deleted": "The webhook is deleted.",
    "webhook_tested": "A test event is queued: follow it in the deliveries below.",
    "price_created": "The price is added; the org's SDKs get it with their budgets.",
    "price_updated": "The price is changed; calls from now on are priced at it.",
    "price_deleted": "The price is deleted; the catalog's price applies again.",
    "password_reset": "Your password is changed: sign in with it.",
    "password_changed": "Your password is changed; your other sessions are signed out.",
    "mfa_disabled": "Two-factor authentication is off.",
    "session_revoked": "The session is signed out.",
    "notifications_read": "Marked read.",
    "invitation_accepted": "You joined the org.",
    "budget_created": "The budget is created. Connected SDKs have been told.",
    "budget_changed": "The budget is changed. Connected SDKs have been told.",
    "budget_deleted": "The budget is deleted; its spend and alerts stay as history.",
    "policy_saved": "The policy version is saved.",
    "policy_activated": "The policy version is active. Connected SDKs have been told.",
    "policy_rolled_back": "Rolled back: the old version is saved again and active.",
    "policy_deactivated": "No policy set is active now: SDKs fall back to their local file.",
    "approvals_decided": "The decisions are recorded; the waiting agents hear them at once.",
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
            "navigation": _navigation(principal),
            "current_path": request.url.path,
            "notice": NOTICES.get(request.query_params.get("done", "")),
            "can": lambda permission: principal.can(Permission(permission)),
            "unread_notifications": await inbox.unread_count(
                db_session, principal.org_id, principal.user_id
            ),
            **context,
        },
    )


def _navigation(principal: Principal) -> list[tuple[str, str]]:
    """The shell's links the caller may follow. "Settings" leads to the first tab of the
    settings area the caller may read (a viewer reads the pricing tab only), if there is one."""
    from agentops_server.web.settings.tabs import TABS  # here: the tabs' module imports this one

    links = []
    for path, label, needed in NAVIGATION:
        if path == "/settings":
            readable = [tab for tab, _, tab_needs in TABS if principal.can(tab_needs)]
            links += [(readable[0], label)] if readable else []
        elif principal.can(needed):
            links.append((path, label))
    return links


def done(path: str, notice: str) -> Redirect:
    """Back to ``path`` after a form, showing the notice ``notice``."""
    assert notice in NOTICES
    return Redirect(f"{path}{'&' if '?' in path else '?'}done={notice}", status_code=303)
