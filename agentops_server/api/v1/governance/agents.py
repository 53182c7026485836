"""``/api/v1/agents``: an org's agents, with first and last seen times and run counts, and the
team each belongs to."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, get, patch
from litestar.di import NamedDependency
from litestar.params import JSONBody, PathParameter
from sqlalchemy.ext.asyncio import AsyncSession

from agentops_server.api.problems import JSON_BODY_LIMIT, problems
from agentops_server.api.v1.actors import actor_of
from agentops_server.auth.guards import requires
from agentops_server.refusals import Forbidden, NotFound
from agentops_server.security.permissions import Permission
from agentops_server.security.principal import Principal
from agentops_server.services.governance import agents
from agentops_server.services.governance.agents import AgentList, AgentSummary
from agentops_server.services.identity import teams
from agentops_server.services.identity.teams import AgentTeam

__all__ = ["AgentController"]

AgentId = Annotated[str, PathParameter(description="The agent's id (a UUID).")]


class AgentTeamChange(msgspec.Struct, forbid_unknown_fields=True):
    """The team the agent belongs to (null: no team)."""

    team_id: uuid.UUID | None


class AgentController(Controller):
    """Reading agents (the ``read`` scope) and giving them to teams."""

    path = "/agents"
    tags = ("agents",)
    request_max_body_size = JSON_BODY_LIMIT

    @get("/", guards=[requires(Permission.AGENTS_READ)])
    async def list_agents(
        self, request: Request[Principal, Principal, Any], db_session: NamedDependency[AsyncSession]
    ) -> AgentList:
        """Every agent of the org, by name."""
        return await agents.list_agents(db_session, request.auth.org_id)

    @get("/{agent_id:str}", guards=[requires(Permission.AGENTS_READ)])
    async def get_agent(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        agent_id: AgentId,
    ) -> AgentSummary:
        """One agent of the org."""
        return await agents.get_agent(db_session, request.auth.org_id, _uuid_of(agent_id))

    @patch(
        "/{agent_id:str}",
        guards=[requires(Permission.AGENTS_WRITE)],
        summary="Give an agent to a team",
        description=(
            "Sets `team_id` (null: no team). Below admin, a person moves agents only between "
            "their own teams and no team (403 `not_your_team`). Audited as "
            "`agent.team_changed`. Errors: 404 `agent_not_found`, `team_not_found`."
        ),
        responses=problems(Forbidden("not_your_team", "below admin, only between one's own teams")),
    )
    async def change_team(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        agent_id: AgentId,
        data: JSONBody[AgentTeamChange],
    ) -> AgentTeam:
        """Give the agent to a team, or to none."""
        return await teams.assign_agent(
            db_session, request.auth, actor_of(request), _uuid_of(agent_id), data.team_id
        )


def _uuid_of(agent_id: str) -> uuid.UUID:
    """The agent's id; an id that is no UUID names no agent."""
    try:
        return uuid.UUID(agent_id)
    except ValueError:
        raise _agent_not_found(agent_id) from None


def _agent_not_found(agent_id: str) -> NotFound:
    return NotFound("agent_not_found", f"This org has no agent {agent_id!r}.")
