"""``/api/v1/teams``: teams inside the org and who belongs to them."""

from __future__ import annotations

import uuid
from typing import Any

import msgspec
from litestar import Controller, Request, delete, get, patch, post, put
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody
from sqlalchemy.ext.asyncio import AsyncSession

from agentops_server.api.problems import JSON_BODY_LIMIT, problems
from agentops_server.api.v1.actors import actor_of
from agentops_server.auth.guards import requires
from agentops_server.backends.derived_work import DerivedWork
from agentops_server.refusals import Conflict, Forbidden
from agentops_server.security.permissions import Permission
from agentops_server.security.principal import Principal
from agentops_server.services.identity import teams
from agentops_server.services.identity.teams import TeamDetail, TeamList
from agentops_server.values import Name

__all__ = ["TeamController"]

_LEADS = "Team leads may change only the teams they belong to (403 `not_your_team`)."
_ADMINS = "Owners and admins only: team leads get 403 `admin_required`."


class TeamName(msgspec.Struct, forbid_unknown_fields=True):
    """A team's name: 1 to 200 characters, unique in the org."""

    name: Name


class TeamController(Controller):
    """Teams of the caller's org."""

    path = "/teams"
    tags = ("teams",)
    request_max_body_size = JSON_BODY_LIMIT

    @get("/", guards=[requires(Permission.TEAMS_READ)], summary="The org's teams")
    async def list_teams(
        self, request: Request[Principal, Principal, Any], db_session: NamedDependency[AsyncSession]
    ) -> TeamList:
        """Every team, by name, with its number of members."""
        return await teams.list_teams(db_session, request.auth.org_id)

    @post(
        "/",
        guards=[requires(Permission.TEAMS_WRITE)],
        summary="Create a team",
        description=(
            f"{_ADMINS} Audited as `team.created`. Errors: 400 `invalid_name`; "
            "409 `team_name_taken`."
        ),
        responses=problems(
            Forbidden("admin_required", "a team lead makes no teams"),
            Conflict("team_name_taken", "another team of the org has the name"),
        ),
    )
    async def create_team(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        data: JSONBody[TeamName],
    ) -> TeamDetail:
        """Create a team."""
        return await teams.create_team(db_session, request.auth, actor_of(request), data.name)

    @get("/{team_id:uuid}", guards=[requires(Permission.TEAMS_READ)], summary="One team")
    async def get_team(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        team_id: FromPath[uuid.UUID],
    ) -> TeamDetail:
        """A team with its members (404 `team_not_found`)."""
        return await teams.get_team(db_session, request.auth.org_id, team_id)

    @patch(
        "/{team_id:uuid}",
        guards=[requires(Permission.TEAMS_WRITE)],
        summary="Rename a team",
        description=(
            f"{_LEADS} Audited as `team.renamed`. Errors: 400 `invalid_name`; 404 "
            "`team_not_found`; 409 `team_name_taken`."
        ),
        responses=problems(
            Forbidden("not_your_team", "below admin, only one's own teams"),
            Conflict("team_name_taken", "another team of the org has the name"),
        ),
    )
    async def rename_team(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        team_id: FromPath[uuid.UUID],
        data: JSONBody[TeamName],
    ) -> TeamDetail:
        """Rename the team."""
        return await teams.rename_team(
            db_session, request.auth, actor_of(request), team_id, data.name
        )

    @delete(
        "/{team_id:uuid}",
        guards=[requires(Permission.TEAMS_WRITE)],
        summary="Delete a team",
        description=(
            f"{_ADMINS} Its members stay in the org; its agents and pending invitations belong "
            "to no team any more. Audited as `team.deleted`. 404 `team_not_found`."
        ),
        responses=problems(Forbidden("admin_required", "a team lead deletes no teams")),
    )
    async def delete_team(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        derived_work: NamedDependency[DerivedWork],
        team_id: FromPath[uuid.UUID],
    ) -> None:
        """Delete the team."""
        await teams.delete_team(db_session, request.auth, actor_of(request), team_id, derived_work)

    @put(
        "/{team_id:uuid}/members/{user_id:uuid}",
        guards=[requires(Permission.TEAMS_WRITE)],
        summary="Add a member to a team",
        description=(
            f"{_LEADS} Already in the team: nothing changes. Audited as `team.member_added`. "
            "Errors: 404 `team_not_found`, `member_not_found`."
        ),
        responses=problems(Forbidden("not_your_team", "below admin, only one's own teams")),
    )
    async def add_member(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        team_id: FromPath[uuid.UUID],
        user_id: FromPath[uuid.UUID],
    ) -> TeamDetail:
        """Put an org member in the team."""
        return await teams.add_team_member(
            db_session, request.auth, actor_of(request), team_id, user_id
        )

    @delete(
        "/{team_id:uuid}/members/{user_id:uuid}",
        guards=[requires(Permission.TEAMS_WRITE)],
        summary="Remove a member from a team",
        description=(
            f"{_LEADS} They stay in the org; not in the team: nothing changes. Audited as "
            "`team.member_removed`. 404 `team_not_found`."
        ),
        responses=problems(Forbidden("not_your_team", "below admin, only one's own teams")),
    )
    async def remove_member(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        team_id: FromPath[uuid.UUID],
        user_id: FromPath[uuid.UUID],
    ) -> None:
        """Take a member out of the team."""
        await teams.remove_team_member(
            db_session, request.auth, actor_of(request), team_id, user_id
        )
