"""Members of an org: list them, change their role, remove them, or leave.

Two rules guard every change (``docs/permissions.md``):

- **No escalation.** The caller must be allowed to give the new role *and* to change someone of
  the current role (:func:`~agentops_server.security.permissions.can_assign`): an admin can neither
  make an owner nor demote or remove one (``role_escalation``). An API key acts as an admin.
- **An org always keeps an owner.** The last owner can be neither demoted nor removed, nor leave
  (``last_owner``). The check cannot be raced: on PostgreSQL the change first locks every owner
  row of the org (``SELECT … FOR UPDATE``), so two owners demoting each other at once are
  serialised and the second sees that only one owner is left; and on both databases the change
  itself is one conditional statement that only applies while another owner exists.

Removing a member (or leaving) also ends that person's sessions in the org, and suspends the API
keys they created; a new role caps them (docs/decisions/0015). Each change is audited in the
transaction that makes it, and so is what it does to each of those keys.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from typing import Any, cast

from sqlalchemy import CursorResult, Delete, Update, delete, exists, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from agentops_server.db.models import Membership, Team, TeamMember, User
from agentops_server.refusals import Conflict, Forbidden, Invalid, NotFound
from agentops_server.security.permissions import Role, can_assign
from agentops_server.security.principal import Principal
from agentops_server.services import audit
from agentops_server.services.audit import Actor
from agentops_server.services.identity.api_keys import follow_creator
from agentops_server.services.identity.sessions import revoke_user_sessions

__all__ = [
    "Member",
    "MemberList",
    "TeamRef",
    "acting_role",
    "change_role",
    "check_assignable",
    "get_member",
    "leave",
    "list_members",
    "parse_role",
    "remove_member",
]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class TeamRef:
    """A team, as named in lists."""

    id: uuid.UUID
    name: str


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Member:
    """A person in the org: who they are, their role, their teams, when they joined."""

    user_id: uuid.UUID
    email: str
    name: str
    role: Role
    teams: list[TeamRef]
    joined_at: dt.datetime


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class MemberList:
    """Every member of the org, by email."""

    items: list[Member]


def parse_role(value: str) -> Role:
    """``value`` as a :class:`Role`; ``invalid_role`` if it names none."""
    try:
        return Role(value)
    except ValueError:
        names = ", ".join(role.value for role in Role)
        raise Invalid("invalid_role", f"A role is one of {names}.") from None


def acting_role(principal: Principal) -> Role:
    """The role whose assignment rules bind ``principal``: a member's own; a key acts as an
    admin (no key may manage owners)."""
    return principal.role if principal.role is not None else Role.ADMIN


def check_assignable(principal: Principal, *roles: Role) -> None:
    """``role_escalation`` unless ``principal`` may give (or change someone of) each role."""
    actor_role = acting_role(principal)
    for role in roles:
        if not can_assign(actor_role, role):
            raise Forbidden(
                "role_escalation",
                f"As {actor_role.value} you cannot give the {role.value} role, nor change "
                f"someone who has it.",
            )


async def list_members(session: AsyncSession, org_id: uuid.UUID) -> MemberList:
    """The org's members, ordered by email."""
    rows = await session.execute(_members(org_id).order_by(User.email))
    teams = await _teams_of(session, org_id)
    return MemberList(items=[_view(row, user, teams.get(user.id, [])) for row, user in rows])


async def get_member(session: AsyncSession, org_id: uuid.UUID, user_id: uuid.UUID) -> Member:
    """The org's member ``user_id``; ``member_not_found`` if there is none."""
    found = (
        await session.execute(
            _members(org_id)
            .where(Membership.user_id == user_id)
            .execution_options(populate_existing=True)
        )
    ).first()
    if found is None:
        raise _not_found()
    row, user = found
    teams = await _teams_of(session, org_id, user_id)
    return _view(row, user, teams.get(user_id, []))


async def change_role(
    session: AsyncSession, principal: Principal, actor: Actor, user_id: uuid.UUID, role: str
) -> Member:
    """Give the member ``user_id`` the role ``role``; audit; commit.

    Refusals: ``invalid_role``, ``member_not_found``, ``role_escalation``, ``last_owner``.
    """
    new = parse_role(role)
    current = await _role_of(session, principal.org_id, user_id)
    check_assignable(principal, new, current)
    if new is not current:
        await _apply(session, principal.org_id, user_id, current, new)
        await follow_creator(session, principal.org_id, actor, user_id, before=current, after=new)
        await audit.record(
            session,
            principal.org_id,
            actor,
            "member.role_changed",
            target_type="member",
            target_id=user_id,
            before={"role": current.value},
            after={"role": new.value},
        )
        await session.commit()
    return await get_member(session, principal.org_id, user_id)


async def remove_member(
    session: AsyncSession, principal: Principal, actor: Actor, user_id: uuid.UUID
) -> None:
    """Remove ``user_id`` from the org and end their sessions in it; audit; commit.

    Refusals: ``member_not_found``, ``role_escalation``, ``last_owner``.
    """
    current = await _role_of(session, principal.org_id, user_id)
    check_assignable(principal, current)
    await _remove(
        session,
        org_id=principal.org_id,
        user_id=user_id,
        current=current,
        actor=actor,
        action="member.removed",
    )


async def leave(session: AsyncSession, principal: Principal, actor: Actor) -> None:
    """The signed-in member leaves the org (``last_owner`` if they are its last owner)."""
    assert principal.user_id is not None, "only a person leaves an org"
    current = await _role_of(session, principal.org_id, principal.user_id)
    await _remove(
        session,
        org_id=principal.org_id,
        user_id=principal.user_id,
        current=current,
        actor=actor,
        action="member.left",
    )


async def _remove(
    session: AsyncSession,
    *,
    org_id: uuid.UUID,
    user_id: uuid.UUID,
    current: Role,
    actor: Actor,
    action: str,
) -> None:
    before = await get_member(session, org_id, user_id)
    await _apply(session, org_id, user_id, current, None)
    await revoke_user_sessions(session, org_id, user_id, reason=action)
    await follow_creator(session, org_id, actor, user_id, before=current, after=None)
    await audit.record(
        session,
        org_id,
        actor,
        action,
        target_type="member",
        target_id=user_id,
        before={"email": before.email, "role": current.value},
    )
    await session.commit()


async def _apply(
    session: AsyncSession,
    org_id: uuid.UUID,
    user_id: uuid.UUID,
    current: Role,
    new: Role | None,
) -> None:
    """Change the role of ``user_id`` from ``current`` to ``new`` (None: remove them), in one
    statement that applies only if their role is still ``current`` and, for an owner leaving
    ownership, another owner remains."""
    conditions = [
        Membership.org_id == org_id,
        Membership.user_id == user_id,
        Membership.role == current.value,
    ]
    if current is Role.OWNER and new is not Role.OWNER:
        owners = await session.scalars(
            select(Membership.user_id)
            .where(Membership.org_id == org_id, Membership.role == Role.OWNER.value)
            .with_for_update()  # PostgreSQL: concurrent owner changes wait here, then re-read
        )
        if set(owners) <= {user_id}:
            raise _last_owner()
        other = aliased(Membership)
        conditions.append(
            exists().where(
                other.org_id == org_id,
                other.role == Role.OWNER.value,
                other.user_id != user_id,
            )
        )
    statement: Update | Delete = (
        delete(Membership).where(*conditions)
        if new is None
        else update(Membership).where(*conditions).values(role=new.value)
    )
    result = cast(
        "CursorResult[Any]",
        await session.execute(statement.execution_options(synchronize_session=False)),
    )
    if result.rowcount == 1:
        return
    await session.rollback()
    now = await session.scalar(
        select(Membership.role).where(Membership.org_id == org_id, Membership.user_id == user_id)
    )
    if now is None:
        raise _not_found()
    if now != current.value:
        raise Conflict("member_changed", "The member's role changed meanwhile; reload and retry.")
    raise _last_owner()


async def _role_of(session: AsyncSession, org_id: uuid.UUID, user_id: uuid.UUID) -> Role:
    role = await session.scalar(
        select(Membership.role).where(Membership.org_id == org_id, Membership.user_id == user_id)
    )
    if role is None:
        raise _not_found()
    return Role(role)


def _members(org_id: uuid.UUID) -> Any:
    return (
        select(Membership, User)
        .join(User, User.id == Membership.user_id)
        .where(Membership.org_id == org_id)
    )


async def _teams_of(
    session: AsyncSession, org_id: uuid.UUID, user_id: uuid.UUID | None = None
) -> dict[uuid.UUID, list[TeamRef]]:
    query = (
        select(TeamMember.user_id, Team.id, Team.name)
        .join(Team, (Team.org_id == TeamMember.org_id) & (Team.id == TeamMember.team_id))
        .where(TeamMember.org_id == org_id)
        .order_by(Team.name)
    )
    if user_id is not None:
        query = query.where(TeamMember.user_id == user_id)
    teams: dict[uuid.UUID, list[TeamRef]] = {}
    for member, team_id, name in await session.execute(query):
        teams.setdefault(member, []).append(TeamRef(id=team_id, name=name))
    return teams


def _view(row: Membership, user: User, teams: list[TeamRef]) -> Member:
    return Member(
        user_id=user.id,
        email=user.email,
        name=user.name,
        role=Role(row.role),
        teams=teams,
        joined_at=row.created_at,
    )


def _not_found() -> NotFound:
    return NotFound("member_not_found", "This org has no such member.")


def _last_owner() -> Conflict:
    return Conflict(
        "last_owner",
        "This is the org's last owner: make someone else an owner first.",
    )
