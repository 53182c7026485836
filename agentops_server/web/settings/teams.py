"""The teams page: the org's teams with their members; create, rename and delete a team, add
and remove its members.

Each action is the service ``/api/v1/teams`` calls (:mod:`agentops_server.services.identity.
teams`): team leads change only their own teams, and only owners and admins create or delete
one, as the service decides.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import PathParameter
from sqlalchemy.ext.asyncio import AsyncSession

from agentops_server.api.v1.actors import actor_of
from agentops_server.auth.guards import requires
from agentops_server.backends.derived_work import DerivedWork
from agentops_server.refusals import Refused
from agentops_server.security.permissions import Permission
from agentops_server.security.principal import Principal
from agentops_server.services.identity import members, teams
from agentops_server.values import Name
from agentops_server.web.forms import fields_of
from agentops_server.web.pages import done
from agentops_server.web.settings.tabs import render, settle, uuid_field

__all__ = ["TeamPages"]

PATH = "/settings/teams"
TEAM = PATH + "/{team_id:uuid}"
TeamId = Annotated[uuid.UUID, PathParameter()]


class TeamPages(Controller):
    """``/settings/teams``: read with ``teams:read``, change with ``teams:write``."""

    @get(PATH, guards=[requires(Permission.TEAMS_READ)])
    async def teams_page(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
    ) -> Response[Any]:
        """Every team with its members."""
        return await _render(request, db_session)

    @post(PATH, guards=[requires(Permission.TEAMS_WRITE)])
    async def create_team(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
    ) -> Response[Any]:
        """Create a team; audited as ``team.created``."""
        try:
            name = Name((await fields_of(request)).get("name", ""))
            await teams.create_team(db_session, request.auth, actor_of(request), name)
        except Refused as exc:
            return await _render(request, db_session, exc)
        return done(PATH, "team_created")

    @post(TEAM + "/rename", guards=[requires(Permission.TEAMS_WRITE)])
    async def rename_team(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        team_id: TeamId,
    ) -> Response[Any]:
        """Rename the team; audited as ``team.renamed``."""
        try:
            name = Name((await fields_of(request)).get("name", ""))
            await teams.rename_team(db_session, request.auth, actor_of(request), team_id, name)
        except Refused as exc:
            return await _render(request, db_session, exc)
        return done(PATH, "team_renamed")

    @post(TEAM + "/delete", guards=[requires(Permission.TEAMS_WRITE)])
    async def delete_team(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        derived_work: NamedDependency[DerivedWork],
        team_id: TeamId,
    ) -> Response[Any]:
        """Delete the team (its members stay in the org); audited as ``team.deleted``."""
        try:
            await teams.delete_team(
                db_session, request.auth, actor_of(request), team_id, derived_work
            )
        except Refused as exc:
            return await _render(request, db_session, exc)
        return done(PATH, "team_deleted")

    @post(TEAM + "/members", guards=[requires(Permission.TEAMS_WRITE)])
    async def add_member(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        team_id: TeamId,
    ) -> Response[Any]:
        """Put an org member in the team; audited as ``team.member_added``."""
        try:
            user_id = uuid_field((await fields_of(request)).get("user_id", ""), "member")
            await teams.add_team_member(
                db_session, request.auth, actor_of(request), team_id, user_id
            )
        except Refused as exc:
            return await _render(request, db_session, exc)
        return done(PATH, "team_member_added")

    @post(TEAM + "/members/{user_id:uuid}/remove", guards=[requires(Permission.TEAMS_WRITE)])
    async def remove_member(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        team_id: TeamId,
        user_id: Annotated[uuid.UUID, PathParameter()],
    ) -> Response[Any]:
        """Take a member out of the team (they stay in the org)."""
        try:
            await teams.remove_team_member(
                db_session, request.auth, actor_of(request), team_id, user_id
            )
        except Refused as exc:
            return await _render(request, db_session, exc)
        return done(PATH, "team_member_removed")


async def _render(
    request: Request[Principal, Principal, Any],
    db_session: AsyncSession,
    refusal: Refused | None = None,
) -> Response[Any]:
    await settle(db_session, refusal)
    org_id = request.auth.org_id
    listed = (await teams.list_teams(db_session, org_id)).items
    people = (
        (await members.list_members(db_session, org_id)).items
        if request.auth.can(Permission.MEMBERS_READ)
        else []
    )
    return await render(
        request,
        db_session,
        "settings/teams.html",
        refusal,
        teams=[await teams.get_team(db_session, org_id, team.id) for team in listed],
        people=people,
    )
