"""Teams inside an org: members belong to teams, and so can agents (and, later, budgets).

Owners, admins and admin keys manage every team. Team leads act within their teams: they rename
the teams they belong to and add or remove their members, but cannot touch another team
(``not_your_team``), nor create or delete teams (``admin_required``): which teams exist is the
org's structure, an admin's decision. (Agents join teams through the registry:
:mod:`agentops_server.services.governance.agents`.)

Team names are unique in an org (``team_name_taken``). Each change is audited in the
transaction that makes it; renaming or deleting a team changes the agent profiles SDKs match
team controls against, so it bumps the org's control version too (and a rename moves the
team's controls along).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from agentops_server.backends.derived_work import DerivedWork
from agentops_server.db.models import Agent, Invitation, Membership, Team, TeamMember, User
from agentops_server.refusals import Conflict, Forbidden, NotFound
from agentops_server.security.permissions import Role
from agentops_server.security.principal import Principal
from agentops_server.services import audit
from agentops_server.services.audit import Actor
from agentops_server.services.governance.agents import record_moved
from agentops_server.services.governance.controls import (
    follow_team_deletion,
    follow_team_rename,
)
from agentops_server.services.governance.versions import bump_control_version
from agentops_server.values import clean_name

__all__ = [
    "TeamDetail",
    "TeamList",
    "TeamPerson",
    "TeamSummary",
    "add_team_member",
    "create_team",
    "delete_team",
    "get_team",
    "list_teams",
    "remove_team_member",
    "rename_team",
    "team_exists",
]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class TeamSummary:
    """A team as listed."""

    id: uuid.UUID
    name: str
    created_at: dt.datetime
    member_count: int


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class TeamList:
    """Every team of the org, by name."""

    items: list[TeamSummary]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class TeamPerson:
    """A member of a team."""

    user_id: uuid.UUID
    email: str
    name: str
    role: Role


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class TeamDetail:
    """A team with its members, by email."""

    id: uuid.UUID
    name: str
    created_at: dt.datetime
    members: list[TeamPerson]


async def list_teams(session: AsyncSession, org_id: uuid.UUID) -> TeamList:
    """The org's teams, by name, with how many members each has."""
    counts = (
        select(TeamMember.team_id, func.count().label("members"))
        .where(TeamMember.org_id == org_id)
        .group_by(TeamMember.team_id)
        .subquery()
    )
    rows = await session.execute(
        select(Team, func.coalesce(counts.c.members, 0))
        .outerjoin(counts, counts.c.team_id == Team.id)
        .where(Team.org_id == org_id)
        .order_by(Team.name)
    )
    return TeamList(
        items=[
            TeamSummary(id=team.id, name=team.name, created_at=team.created_at, member_count=count)
            for team, count in rows
        ]
    )


async def get_team(session: AsyncSession, org_id: uuid.UUID, team_id: uuid.UUID) -> TeamDetail:
    """The org's team ``team_id`` with its members; ``team_not_found`` if there is none."""
    team = await _team(session, org_id, team_id)
    people = await session.execute(
        select(User, Membership.role)
        .join(Membership, Membership.user_id == User.id)
        .join(
            TeamMember,
            (TeamMember.org_id == Membership.org_id) & (TeamMember.user_id == Membership.user_id),
        )
        .where(TeamMember.org_id == org_id, TeamMember.team_id == team_id)
        .order_by(User.email)
    )
    return TeamDetail(
        id=team.id,
        name=team.name,
        created_at=team.created_at,
        members=[
            TeamPerson(user_id=user.id, email=user.email, name=user.name, role=Role(role))
            for user, role in people
        ],
    )


async def team_exists(session: AsyncSession, org_id: uuid.UUID, team_id: uuid.UUID) -> bool:
    """Whether the org has the team ``team_id``."""
    return await session.get(Team, (org_id, team_id)) is not None


async def create_team(
    session: AsyncSession, principal: Principal, actor: Actor, name: str
) -> TeamDetail:
    """Create a team; audit; commit.

    Refusals: ``admin_required`` (team leads), ``invalid_name``, ``team_name_taken``.
    """
    _check_admin(principal, "create")
    team = Team(
        org_id=principal.org_id,
        id=uuid.uuid4(),
        name=await _free_name(session, principal.org_id, name),
        created_at=dt.datetime.now(dt.UTC),
    )
    session.add(team)
    await audit.record(
        session,
        principal.org_id,
        actor,
        "team.created",
        target_type="team",
        target_id=team.id,
        after={"name": team.name},
    )
    await _commit_unless_name_taken(session)
    return await get_team(session, principal.org_id, team.id)


async def rename_team(
    session: AsyncSession, principal: Principal, actor: Actor, team_id: uuid.UUID, name: str
) -> TeamDetail:
    """Rename a team; audit; commit.

    Refusals: ``team_not_found``, ``not_your_team``, ``invalid_name``, ``team_name_taken``.
    """
    team = await _writable_team(session, principal, team_id)
    new_name = clean_name(name, what="team")
    if new_name != team.name:
        before = team.name
        team.name = await _free_name(session, principal.org_id, new_name)
        await audit.record(
            session,
            principal.org_id,
            actor,
            "team.renamed",
            target_type="team",
            target_id=team.id,
            before={"name": before},
            after={"name": team.name},
        )
        await follow_team_rename(session, principal.org_id, before, team.name)
        await _commit_unless_name_taken(session)
    return await get_team(session, principal.org_id, team_id)


async def delete_team(
    session: AsyncSession,
    principal: Principal,
    actor: Actor,
    team_id: uuid.UUID,
    derived: DerivedWork | None = None,
) -> None:
    """Delete a team: its members stay in the org, its agents and pending invitations belong to
    no team any more, the controls on it are cleared; audit; commit; its agents having left it,
    hand :data:`~agentops_server.services.governance.agents.AGENTS_MOVED` to ``derived``.

    Refusals: ``admin_required`` (team leads), ``team_not_found``.
    """
    _check_admin(principal, "delete")
    before = await get_team(session, principal.org_id, team_id)
    org_id = principal.org_id
    agents = list(
        await session.scalars(
            select(Agent.name).where(Agent.org_id == org_id, Agent.team_id == team_id)
        )
    )
    for model in (Agent, Invitation):
        await session.execute(
            update(model)
            .where(model.org_id == org_id, model.team_id == team_id)
            .values(team_id=None)
            .execution_options(synchronize_session=False)
        )
    await session.execute(
        delete(TeamMember).where(TeamMember.org_id == org_id, TeamMember.team_id == team_id)
    )
    await session.execute(
        delete(Team)
        .where(Team.org_id == org_id, Team.id == team_id)
        .execution_options(synchronize_session=False)
    )
    await audit.record(
        session,
        org_id,
        actor,
        "team.deleted",
        target_type="team",
        target_id=team_id,
        before={"name": before.name, "members": [str(m.user_id) for m in before.members]},
    )
    await follow_team_deletion(session, org_id, actor, before.name)
    await bump_control_version(session, org_id)
    moved = None
    if agents and derived is not None:
        moved = await record_moved(session, derived, org_id, agents)
    await session.commit()
    if moved is not None and derived is not None:
        await derived.dispatch(moved)


async def add_team_member(
    session: AsyncSession,
    principal: Principal,
    actor: Actor,
    team_id: uuid.UUID,
    user_id: uuid.UUID,
) -> TeamDetail:
    """Put the org's member ``user_id`` in the team (already there: nothing changes); audit;
    commit.

    Refusals: ``team_not_found``, ``not_your_team``, ``member_not_found``.
    """
    await _writable_team(session, principal, team_id)
    org_id = principal.org_id
    if await session.get(Membership, (org_id, user_id)) is None:
        raise NotFound("member_not_found", "This org has no such member.")
    if await session.get(TeamMember, (org_id, team_id, user_id)) is None:
        session.add(TeamMember(org_id=org_id, team_id=team_id, user_id=user_id))
        await audit.record(
            session,
            org_id,
            actor,
            "team.member_added",
            target_type="team",
            target_id=team_id,
            after={"user_id": str(user_id)},
        )
        try:
            await session.commit()
        except IntegrityError:  # added concurrently, or the member left meanwhile
            await session.rollback()
            if await session.get(Membership, (org_id, user_id)) is None:
                raise NotFound("member_not_found", "This org has no such member.") from None
    return await get_team(session, org_id, team_id)


async def remove_team_member(
    session: AsyncSession,
    principal: Principal,
    actor: Actor,
    team_id: uuid.UUID,
    user_id: uuid.UUID,
) -> None:
    """Take ``user_id`` out of the team (they stay in the org; not in it: nothing changes);
    audit; commit.

    Refusals: ``team_not_found``, ``not_your_team``.
    """
    await _writable_team(session, principal, team_id)
    row = await session.get(TeamMember, (principal.org_id, team_id, user_id))
    if row is None:
        return
    await session.delete(row)
    await audit.record(
        session,
        principal.org_id,
        actor,
        "team.member_removed",
        target_type="team",
        target_id=team_id,
        before={"user_id": str(user_id)},
    )
    await session.commit()


def _within_teams(principal: Principal) -> bool:
    """Whether ``principal`` acts only within their teams: people ranking below admin."""
    return principal.role is not None and principal.role.rank > Role.ADMIN.rank


def _check_admin(principal: Principal, verb: str) -> None:
    if _within_teams(principal):
        raise Forbidden(
            "admin_required", f"Only owners and admins {verb} teams; you manage your own teams."
        )


async def _team(session: AsyncSession, org_id: uuid.UUID, team_id: uuid.UUID) -> Team:
    team = await session.get(Team, (org_id, team_id))
    if team is None:
        raise NotFound("team_not_found", "This org has no such team.")
    return team


async def _writable_team(session: AsyncSession, principal: Principal, team_id: uuid.UUID) -> Team:
    team = await _team(session, principal.org_id, team_id)
    if _within_teams(principal) and team_id not in principal.team_ids:
        raise Forbidden("not_your_team", "You may change only the teams you belong to.")
    return team


async def _free_name(session: AsyncSession, org_id: uuid.UUID, name: str) -> str:
    name = clean_name(name, what="team")
    taken = await session.scalar(
        select(func.count()).where(Team.org_id == org_id, Team.name == name)
    )
    if taken:
        raise _name_taken()
    return name


async def _commit_unless_name_taken(session: AsyncSession) -> None:
    try:
        await session.commit()
    except IntegrityError:  # the same name, created concurrently
        await session.rollback()
        raise _name_taken() from None


def _name_taken() -> Conflict:
    return Conflict("team_name_taken", "Another team of this org has this name.")
