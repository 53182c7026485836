"""``/api/v1/members``: the org's members, their roles, removing them, and leaving the org."""

from __future__ import annotations

import uuid
from typing import Any

import msgspec
from litestar import Controller, Request, delete, get, patch
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody
from sqlalchemy.ext.asyncio import AsyncSession

from agentops_server.api.problems import JSON_BODY_LIMIT, problems
from agentops_server.api.v1.actors import actor_of
from agentops_server.auth.guards import requires
from agentops_server.refusals import Conflict, Forbidden
from agentops_server.security.permissions import Permission
from agentops_server.security.principal import Principal
from agentops_server.services.identity import members
from agentops_server.services.identity.members import Member, MemberList
from agentops_server.values import Text

__all__ = ["MemberController"]

_RULES = (
    "403 `role_escalation` when the caller may not give the new role or change someone of the "
    "current one (an admin can neither make, demote nor remove an owner); 409 `last_owner` for "
    "the org's last owner; 404 `member_not_found` for anyone not in this org."
)


class RoleChange(msgspec.Struct, forbid_unknown_fields=True):
    """The member's new role: owner, admin, team_lead, member or viewer."""

    role: Text


class MemberController(Controller):
    """Members of the caller's org."""

    path = "/members"
    tags = ("members",)
    request_max_body_size = JSON_BODY_LIMIT

    @get("/", guards=[requires(Permission.MEMBERS_READ)], summary="The org's members")
    async def list_members(
        self, request: Request[Principal, Principal, Any], db_session: NamedDependency[AsyncSession]
    ) -> MemberList:
        """Every member: id, email, name, role, teams and when they joined."""
        return await members.list_members(db_session, request.auth.org_id)

    @get("/{user_id:uuid}", guards=[requires(Permission.MEMBERS_READ)], summary="One member")
    async def get_member(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        user_id: FromPath[uuid.UUID],
    ) -> Member:
        """One member of the org."""
        return await members.get_member(db_session, request.auth.org_id, user_id)

    @patch(
        "/{user_id:uuid}",
        guards=[requires(Permission.MEMBERS_WRITE)],
        summary="Change a member's role",
        description=f"Audited as `member.role_changed`. Errors: 400 `invalid_role`; {_RULES}",
        responses=problems(
            Forbidden("role_escalation", "a role above the caller's"),
            Conflict("last_owner", "the org's last owner"),
            Conflict("member_changed", "the role changed meanwhile; retry"),
        ),
    )
    async def change_role(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        user_id: FromPath[uuid.UUID],
        data: JSONBody[RoleChange],
    ) -> Member:
        """Give the member another role."""
        return await members.change_role(
            db_session, request.auth, actor_of(request), user_id, data.role
        )

    @delete(
        "/{user_id:uuid}",
        guards=[requires(Permission.MEMBERS_WRITE)],
        summary="Remove a member",
        description=(
            "Removes the member from the org and its teams and ends their sessions in it "
            f"(their account stays). Audited as `member.removed`. Errors: {_RULES}"
        ),
        responses=problems(
            Forbidden("role_escalation", "a member above the caller's role"),
            Conflict("last_owner", "the org's last owner"),
            Conflict("member_changed", "the role changed meanwhile; retry"),
        ),
    )
    async def remove_member(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        user_id: FromPath[uuid.UUID],
    ) -> None:
        """Remove the member."""
        await members.remove_member(db_session, request.auth, actor_of(request), user_id)

    @delete(
        "/me",
        guards=[requires(Permission.ACCOUNT)],
        summary="Leave the org",
        description=(
            "The signed-in person leaves the org; their sessions in it end. Audited as "
            "`member.left`. 409 `last_owner` for the org's last owner."
        ),
        responses=problems(
            Conflict("last_owner", "the org's last owner cannot leave"),
            Conflict("member_changed", "the role changed meanwhile; retry"),
        ),
    )
    async def leave(
        self, request: Request[Principal, Principal, Any], db_session: NamedDependency[AsyncSession]
    ) -> None:
        """Leave the caller's org."""
        await members.leave(db_session, request.auth, actor_of(request))
