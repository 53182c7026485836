"""AgentOps Hub server: the companion hub, a Litestar app. ``create_app(settings)`` builds it."""

from agentops_server.app import create_app
from agentops_server.settings import Settings

__all__ = ["Settings", "create_app"]
