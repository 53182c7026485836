"""``/api/v1/agents``: the agent registry: list with filters, create, read, edit, archive."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from litestar import Controller, Request, delete, get, patch, post
from litestar.di import NamedDependency
from litestar.params import JSONBody, PathParameter, QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession

from agentops_server.api.problems import JSON_BODY_LIMIT, problems
from agentops_server.api.v1.actors import actor_of
from agentops_server.auth.guards import requires
from agentops_server.backends.derived_work import DerivedWork
from agentops_server.refusals import Conflict, Forbidden, Invalid, NotFound
from agentops_server.security.permissions import Permission
from agentops_server.security.principal import Principal
from agentops_server.services.governance import agents
from agentops_server.services.governance.agents import (
    AgentChanges,
    AgentFilter,
    AgentList,
    AgentStatus,
    AgentSummary,
    Environment,
    NewAgent,
)
from agentops_server.services.governance.controls import ControlsChanged
from agentops_server.services.governance.operators import operator_of
from agentops_server.values import Text, Timestamp

__all__ = ["AgentController"]

AgentId = Annotated[str, PathParameter(description="The agent's id (a UUID).")]

NOT_YOUR_TEAM = Forbidden(
    "not_your_team", "below admin, only agents of one's own teams or of no team"
)
LINKS_NOT_FOUND = (
    NotFound("team_not_found", "the team is not this org's"),
    NotFound("member_not_found", "the owner is not a member of this org"),
)
INVALID_PROFILE = (
    Invalid("invalid_agent_name", "a name of 1 to 256 characters, no outer space"),
    Invalid("invalid_description", "over 2,000 characters"),
    Invalid("invalid_tag", "a tag of 1 to 256 characters"),
)
AGENT_NOT_FOUND = NotFound("agent_not_found", "no such agent in this org")


class AgentController(Controller):
    """The org's agents: read (the ``read`` scope), create, edit and archive (``agents:write``).
    Every change is audited; a change of what SDKs read (team, tags, environments, archived)
    is pushed to them."""

    path = "/agents"
    tags = ("agents",)
    request_max_body_size = JSON_BODY_LIMIT

    @get("/", guards=[requires(Permission.AGENTS_READ)])
    async def list_agents(
        self,
        *,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        tag: Annotated[Text | None, QueryParameter(description="Agents with this tag.")] = None,
        team_id: Annotated[
            uuid.UUID | None, QueryParameter(description="Agents of this team.")
        ] = None,
        environment: Annotated[
            Environment | None,
            QueryParameter(description="Agents that may run in this environment."),
        ] = None,
        status: Annotated[
            AgentStatus | None,
            QueryParameter(description="By status; `archived` lists the archived agents."),
        ] = None,
        last_seen_after: Annotated[
            Timestamp | None, QueryParameter(description="ISO 8601; last seen at or after it.")
        ] = None,
        last_seen_before: Annotated[
            Timestamp | None, QueryParameter(description="ISO 8601; last seen strictly before.")
        ] = None,
    ) -> AgentList:
        """The org's agents (archived ones only with `status=archived`), by name, each with
        its status (`active`, `paused`, `killed`, `archived`), the control deciding it, its
        run count and its runs from environments it is not enabled for."""
        where = AgentFilter(
            tag=tag,
            team_id=team_id,
            environment=environment,
            status=status,
            last_seen_after=last_seen_after,
            last_seen_before=last_seen_before,
        )
        return await agents.list_agents(db_session, request.auth.org_id, where)

    @post(
        "/",
        guards=[requires(Permission.AGENTS_WRITE)],
        summary="Register an agent",
        responses=problems(
            *INVALID_PROFILE,
            NOT_YOUR_TEAM,
            *LINKS_NOT_FOUND,
            Conflict("agent_name_taken", "the org already has an agent of this name"),
        ),
    )
    async def create_agent(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        controls_changed: NamedDependency[ControlsChanged],
        data: JSONBody[NewAgent],
    ) -> AgentSummary:
        """Add an agent to the registry before its first run (audited `agent.created`)."""
        operator = await operator_of(db_session, request.auth, actor_of(request))
        created = await agents.create_agent(db_session, operator, data)
        await controls_changed(operator.org_id)
        return created

    @get(
        "/{agent_id:str}",
        guards=[requires(Permission.AGENTS_READ)],
        responses=problems(AGENT_NOT_FOUND),
    )
    async def get_agent(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        agent_id: AgentId,
    ) -> AgentSummary:
        """One agent of the org, archived or not."""
        return await agents.get_agent(db_session, request.auth.org_id, _uuid_of(agent_id))

    @patch(
        "/{agent_id:str}",
        guards=[requires(Permission.AGENTS_WRITE)],
        summary="Edit an agent",
        description=(
            "Changes the fields given: description, tags, environments, `team_id` (null: no "
            "team), `owner_id` (null: none), metadata, `archived` (false restores it). Below "
            "admin, a person edits only agents of their own teams or of no team, and gives "
            "agents only to those (403 `not_your_team`). Audited as `agent.updated`, with what "
            "changed before and after."
        ),
        responses=problems(AGENT_NOT_FOUND, *INVALID_PROFILE, NOT_YOUR_TEAM, *LINKS_NOT_FOUND),
    )
    async def update_agent(
        self,
        *,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        controls_changed: NamedDependency[ControlsChanged],
        derived_work: NamedDependency[DerivedWork],
        agent_id: AgentId,
        data: JSONBody[AgentChanges],
    ) -> AgentSummary:
        """Edit the agent's profile."""
        operator = await operator_of(db_session, request.auth, actor_of(request))
        updated = await agents.update_agent(
            db_session, operator, _uuid_of(agent_id), data, derived_work
        )
        await controls_changed(operator.org_id)
        return updated

    @delete(
        "/{agent_id:str}",
        guards=[requires(Permission.AGENTS_WRITE)],
        summary="Archive an agent",
        description=(
            "Archives the agent (audited `agent.archived`): it is listed with "
            "`status=archived`, its runs stay. `PATCH` with `archived: false` restores it."
        ),
        responses=problems(AGENT_NOT_FOUND, NOT_YOUR_TEAM),
    )
    async def archive_agent(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        controls_changed: NamedDependency[ControlsChanged],
        agent_id: AgentId,
    ) -> None:
        """Archive the agent."""
        operator = await operator_of(db_session, request.auth, actor_of(request))
        await agents.archive_agent(db_session, operator, _uuid_of(agent_id))
        await controls_changed(operator.org_id)


def _uuid_of(agent_id: str) -> uuid.UUID:
    """The agent's id; an id that is no UUID names no agent."""
    try:
        return uuid.UUID(agent_id)
    except ValueError:
        raise NotFound("agent_not_found", f"This org has no agent {agent_id!r}.") from None
