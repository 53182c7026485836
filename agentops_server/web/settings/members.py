"""The members page: the org's members and their roles, and the invitations to it.

Each action is the service ``/api/v1/members`` and ``/api/v1/invitations`` call:
:func:`~agentops_server.services.identity.members.change_role`, ``remove_member``,
:func:`~agentops_server.services.identity.invitations.create_invitation`,
``resend_invitation`` and ``revoke_invitation``, with their rules (no escalation, the last
owner stays) and their audit entries.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import PathParameter
from sqlalchemy.ext.asyncio import AsyncSession

from agentops_server.api.v1.actors import actor_of
from agentops_server.auth.guards import requires
from agentops_server.backends.mailer import Mailer
from agentops_server.refusals import Refused
from agentops_server.security.permissions import Permission, Role, can_assign
from agentops_server.security.principal import Principal
from agentops_server.services.identity import invitations, members, teams
from agentops_server.services.identity.invitations import NewInvitation, Outbox
from agentops_server.services.identity.members import acting_role
from agentops_server.settings import Settings
from agentops_server.web.forms import fields_of, validated
from agentops_server.web.pages import done
from agentops_server.web.settings.tabs import render, settle

__all__ = ["MemberPages"]

PATH = "/settings/members"
INVITATIONS = "/settings/invitations"


def _outbox(mailer: NamedDependency[Mailer], settings: NamedDependency[Settings]) -> Outbox:
    return Outbox(mailer, settings.public_url)


class MemberPages(Controller):
    """``/settings/members``: read with ``members:read``, change with ``members:write``."""

    dependencies = {"outbox": Provide(_outbox, sync_to_thread=False)}  # noqa: RUF012

    @get(PATH, guards=[requires(Permission.MEMBERS_READ)])
    async def members_page(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
    ) -> Response[Any]:
        """The members and the pending invitations."""
        return await _render(request, db_session)

    @post(PATH + "/{user_id:uuid}/role", guards=[requires(Permission.MEMBERS_WRITE)])
    async def change_role(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        user_id: Annotated[uuid.UUID, PathParameter()],
    ) -> Response[Any]:
        """Give the member another role; audited as ``member.role_changed``."""
        role = (await fields_of(request)).get("role", "")
        try:
            await members.change_role(db_session, request.auth, actor_of(request), user_id, role)
        except Refused as exc:
            return await _render(request, db_session, exc)
        return done(PATH, "role_changed")

    @post(PATH + "/{user_id:uuid}/remove", guards=[requires(Permission.MEMBERS_WRITE)])
    async def remove_member(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        user_id: Annotated[uuid.UUID, PathParameter()],
    ) -> Response[Any]:
        """Remove the member from the org; audited as ``member.removed``."""
        try:
            await members.remove_member(db_session, request.auth, actor_of(request), user_id)
        except Refused as exc:
            return await _render(request, db_session, exc)
        return done(PATH, "member_removed")

    @post(INVITATIONS, guards=[requires(Permission.MEMBERS_WRITE)])
    async def invite(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        outbox: NamedDependency[Outbox],
    ) -> Response[Any]:
        """Invite someone by email with a role (and into a team); the link goes by email."""
        fields = await fields_of(request)
        try:
            wanted = validated(
                NewInvitation,
                {
                    "email": fields.get("email", "").strip(),
                    "role": fields.get("role", ""),
                    "team_id": fields.get("team_id") or None,
                },
            )
            await invitations.create_invitation(
                db_session, request.auth, actor_of(request), wanted, outbox
            )
        except Refused as exc:
            return await _render(request, db_session, exc)
        return done(PATH, "invitation_sent")

    @post(INVITATIONS + "/{invitation_id:uuid}/resend", guards=[requires(Permission.MEMBERS_WRITE)])
    async def resend(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        outbox: NamedDependency[Outbox],
        invitation_id: Annotated[uuid.UUID, PathParameter()],
    ) -> Response[Any]:
        """Email a fresh link (the old one stops working)."""
        try:
            await invitations.resend_invitation(
                db_session, request.auth, actor_of(request), invitation_id, outbox
            )
        except Refused as exc:
            return await _render(request, db_session, exc)
        return done(PATH, "invitation_resent")

    @post(INVITATIONS + "/{invitation_id:uuid}/revoke", guards=[requires(Permission.MEMBERS_WRITE)])
    async def revoke(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        invitation_id: Annotated[uuid.UUID, PathParameter()],
    ) -> Response[Any]:
        """Revoke the invitation: its link stops working."""
        try:
            await invitations.revoke_invitation(
                db_session, request.auth, actor_of(request), invitation_id
            )
        except Refused as exc:
            return await _render(request, db_session, exc)
        return done(PATH, "invitation_revoked")


async def _render(
    request: Request[Principal, Principal, Any],
    db_session: AsyncSession,
    refusal: Refused | None = None,
) -> Response[Any]:
    await settle(db_session, refusal)
    org_id = request.auth.org_id
    mine = acting_role(request.auth)
    team_list = await teams.list_teams(db_session, org_id)
    return await render(
        request,
        db_session,
        "settings/members.html",
        refusal,
        members=(await members.list_members(db_session, org_id)).items,
        invitations=(await invitations.list_invitations(db_session, org_id)).items,
        team_names={team.id: team.name for team in team_list.items},
        teams=team_list.items,
        roles=[role.value for role in Role],
        assignable=[role.value for role in Role if can_assign(mine, role)],
        me=request.auth.user_id,
    )
