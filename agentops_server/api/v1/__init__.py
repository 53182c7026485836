"""Version 1 of the API, under ``/api/v1``: one controller module per resource."""

from __future__ import annotations

from litestar import Router
from litestar.types import ControllerRouterHandler

from agentops_server.api.v1.agents import AgentController
from agentops_server.api.v1.auth import AuthController
from agentops_server.api.v1.ingest import IngestController
from agentops_server.api.v1.oauth import OAuthController
from agentops_server.api.v1.runs import RunController

__all__ = ["api_router"]


def api_router() -> Router:
    """Every ``/api/v1`` route; each requires an API key (see ``agentops_server.auth``)."""
    handlers: list[ControllerRouterHandler] = [
        RunController,
        AgentController,
        IngestController,
        OAuthController,
        AuthController,
    ]
    return Router(path="/api/v1", route_handlers=handlers)
