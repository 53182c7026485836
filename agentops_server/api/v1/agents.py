"""``/api/v1/agents``: an org's agents, with first and last seen times and run counts."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from litestar import Controller, Request, get
from litestar.di import NamedDependency
from litestar.params import Parameter
from sqlalchemy.ext.asyncio import AsyncSession

from agentops_server.auth.guards import requires
from agentops_server.auth.permissions import Permission
from agentops_server.auth.principal import Principal
from agentops_server.errors import Problem
from agentops_server.services import agents
from agentops_server.services.agents import AgentList, AgentSummary

__all__ = ["AgentController"]


class AgentController(Controller):
    """Reading agents (the ``read`` scope)."""

    path = "/agents"
    tags = ("agents",)
    guards = (requires(Permission.AGENTS_READ),)

    @get("/")
    async def list_agents(
        self, request: Request[Principal, Principal, Any], db_session: NamedDependency[AsyncSession]
    ) -> AgentList:
        """Every agent of the org, by name."""
        return await agents.list_agents(db_session, request.auth.org_id)

    @get("/{agent_id:str}")
    async def get_agent(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        agent_id: Annotated[str, Parameter(description="The agent's id (a UUID).")],
    ) -> AgentSummary:
        """One agent of the org."""
        try:
            return await agents.get_agent(db_session, request.auth.org_id, uuid.UUID(agent_id))
        except (ValueError, agents.AgentNotFound) as exc:
            raise Problem(404, "agent_not_found", f"This org has no agent {agent_id!r}.") from exc
