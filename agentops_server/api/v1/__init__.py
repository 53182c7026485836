"""Version 1 of the API, under ``/api/v1``: one controller module per resource."""

from __future__ import annotations

from litestar import Router
from litestar.types import ControllerRouterHandler

from agentops_server.api.v1.agents import AgentController
from agentops_server.api.v1.api_keys import ApiKeyController
from agentops_server.api.v1.audit import AuditController
from agentops_server.api.v1.auth import AuthController
from agentops_server.api.v1.ingest import IngestController
from agentops_server.api.v1.invitations import InvitationController
from agentops_server.api.v1.members import MemberController
from agentops_server.api.v1.oauth import OAuthController
from agentops_server.api.v1.orgs import OrgController, OrgsController
from agentops_server.api.v1.runs import RunController
from agentops_server.api.v1.teams import TeamController

__all__ = ["api_router"]


def api_router() -> Router:
    """Every ``/api/v1`` route; each requires an API key (see ``agentops_server.auth``)."""
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
    return Router(path="/api/v1", route_handlers=handlers)
