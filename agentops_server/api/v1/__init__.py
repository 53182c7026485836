"""Version 1 of the API, under ``/api/v1``: one controller module per resource."""

from __future__ import annotations

from litestar import Router
from litestar.datastructures import CacheControlHeader, State
from litestar.di import Provide
from litestar.types import ControllerRouterHandler

from agentops_server.api.problems import REFUSALS
from agentops_server.api.v1.audit import AuditController
from agentops_server.api.v1.identity.api_keys import ApiKeyController
from agentops_server.api.v1.identity.auth import AuthController
from agentops_server.api.v1.identity.invitations import InvitationController
from agentops_server.api.v1.identity.members import MemberController
from agentops_server.api.v1.identity.oauth import OAuthController
from agentops_server.api.v1.identity.orgs import OrgController, OrgsController
from agentops_server.api.v1.identity.teams import TeamController
from agentops_server.api.v1.telemetry.agents import AgentController
from agentops_server.api.v1.telemetry.ingest import IngestController
from agentops_server.api.v1.telemetry.runs import RunController
from agentops_server.backends.rate_limit import DEPENDENCIES as RATE_LIMITS
from agentops_server.settings import Settings

__all__ = ["api_router"]


def api_router() -> Router:
    """Every ``/api/v1`` route (each guarded, or public: see ``agentops_server.auth.guards``).

    Handlers may ask for ``settings: NamedDependency[Settings]``, ``throttle`` and
    ``auth_failures`` (:mod:`agentops_server.backends.rate_limit`), and every service
    :class:`~agentops_server.refusals.Refused` raised here is a problem+json answer.
    Every answer is ``Cache-Control: no-store``: many carry tokens or secrets shown once (sign-in,
    refresh, second factor, new and rotated keys, recovery codes), and the others an org's data;
    a route whose answer may be kept says so itself.
    """
    handlers: list[ControllerRouterHandler] = [
        RunController,
        AgentController,
        IngestController,
        OAuthController,
        AuthController,
        OrgController,
        OrgsController,
        MemberController,
        InvitationController,
        TeamController,
        ApiKeyController,
        AuditController,
    ]
    return Router(
        path="/api/v1",
        route_handlers=handlers,
        dependencies={"settings": Provide(_settings, sync_to_thread=False), **RATE_LIMITS},
        exception_handlers=REFUSALS,
        cache_control=CacheControlHeader(no_store=True),
    )


def _settings(state: State) -> Settings:
    settings: Settings = state.settings
    return settings
