"""Version 1 of the API, under ``/api/v1``: one controller module per resource."""

from __future__ import annotations

from litestar import Router
from litestar.datastructures import CacheControlHeader
from litestar.types import ControllerRouterHandler

from agentops_server.api.v1.analytics import AnalyticsController, ReportController
from agentops_server.api.v1.audit import AuditController
from agentops_server.api.v1.budgets import BudgetController
from agentops_server.api.v1.costs import PricingController
from agentops_server.api.v1.governance.agents import AgentController
from agentops_server.api.v1.governance.approvals import ApprovalController
from agentops_server.api.v1.governance.controls import ControlController
from agentops_server.api.v1.governance.policies import PolicyController
from agentops_server.api.v1.identity.api_keys import ApiKeyController
from agentops_server.api.v1.identity.invitations import InvitationController
from agentops_server.api.v1.identity.me import AccountController
from agentops_server.api.v1.identity.members import MemberController
from agentops_server.api.v1.identity.oauth import OAuthController
from agentops_server.api.v1.identity.orgs import OrgController, OrgsController
from agentops_server.api.v1.identity.passwords import PasswordController
from agentops_server.api.v1.identity.second_factor import SecondFactorController
from agentops_server.api.v1.identity.sessions import SessionController
from agentops_server.api.v1.identity.sign_in import SignInController
from agentops_server.api.v1.identity.teams import TeamController
from agentops_server.api.v1.notifications.inbox import NotificationController
from agentops_server.api.v1.notifications.webhooks import WebhookController
from agentops_server.api.v1.stream import StreamController
from agentops_server.api.v1.telemetry.exports import ExportController
from agentops_server.api.v1.telemetry.ingest import IngestController
from agentops_server.api.v1.telemetry.runs import RunController
from agentops_server.backends.rate_limit import DEPENDENCIES as RATE_LIMITS

__all__ = ["api_router"]


def api_router() -> Router:
    """Every ``/api/v1`` route (each guarded, or public: see ``agentops_server.auth.guards``).

    Handlers may ask for the app's infrastructure (``settings``, ``engine``, ``mailer``,
    ``rate_limiter``, ``authenticator``, ``oauth_providers``, ``derived_work``, ``live``,
    ``controls_changed``, ``policies_changed``, ``approvals_changed``, ``budgets_changed``,
    ``stats_cache``: see :func:`agentops_server.app.create_app`) and for ``throttle``,
    ``auth_failures`` and ``ingest_quota`` (:mod:`agentops_server.backends.rate_limit`); every
    :class:`~agentops_server.refusals.Refused` raised here is a problem+json answer
    (:mod:`agentops_server.api.problems`).
    Every answer is ``Cache-Control: no-store``: many carry tokens or secrets shown once (sign-in,
    refresh, second factor, new and rotated keys, recovery codes), and the others an org's data;
    a route whose answer may be kept says so itself.
    """
    handlers: list[ControllerRouterHandler] = [
        RunController,
        ExportController,
        AgentController,
        ControlController,
        IngestController,
        OAuthController,
        SignInController,
        SessionController,
        PasswordController,
        SecondFactorController,
        AccountController,
        OrgController,
        OrgsController,
        MemberController,
        InvitationController,
        TeamController,
        ApiKeyController,
        AuditController,
        NotificationController,
        WebhookController,
        StreamController,
        PolicyController,
        ApprovalController,
        PricingController,
        BudgetController,
        AnalyticsController,
        ReportController,
    ]
    return Router(
        path="/api/v1",
        route_handlers=handlers,
        dependencies=RATE_LIMITS,
        cache_control=CacheControlHeader(no_store=True),
    )
