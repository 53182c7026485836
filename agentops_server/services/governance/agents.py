"""The agent registry: an org's agents, registered on first sight by ingest or made here, edited,
archived (never deleted: their runs still name them).

An agent's profile is its name, description, tags, the environments it may run in (prod,
staging, test, dev; none listed: every one), its team, its owner (a member) and free metadata.
Its team, tags, environments and archived flag reach the SDKs in the control set, so changing
them bumps the org's control version in the same transaction.

**Status.** ``archived`` for an archived agent; otherwise the effective control state
(:func:`agentops_sdk.contract.controls.effective_control`: killed > paused > active, expired
controls left out) of a call of the agent, in the environment where it is least restricted
among those it may run in; ``control`` is the control that decides it. A kill of ``prod``
makes an agent enabled for prod only ``killed``, and leaves an agent that may also run in
``dev`` ``active``.

**Runs outside its environments.** ``runs_outside_environments`` counts the agent's runs
reported from an environment it is not enabled for: ingest stores them (acknowledged means
committed), the registry shows them, and a control on that environment can refuse them.

Below admin, a person edits only agents of their own teams or of no team, and gives agents only
to those (``not_your_team``). Every change is audited in its transaction.

**Moving team.** An agent's runs count in the analytics under its team: a change of team (here,
or the team deleted) owes the notice :data:`AGENTS_MOVED`, recorded in the change's transaction,
whose task rolls up the agents' runs again so that they count under the new team.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Annotated, Any, Final, Literal, get_args

import msgspec
from sqlalchemy import ColumnElement, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from agentops_sdk.contract.controls import Control, effective_control, strictness
from agentops_server.backends.derived_work import DerivedWork, Notice
from agentops_server.db.models import Agent, Membership, Run, Team
from agentops_server.refusals import Conflict, Invalid, NotFound
from agentops_server.services import audit
from agentops_server.services.governance.control_sets import load_controls, profile_of, team_names
from agentops_server.services.governance.operators import Operator
from agentops_server.services.governance.versions import bump_control_version
from agentops_server.values import Text, Timestamp

__all__ = [
    "AGENTS_MOVED",
    "ENVIRONMENTS",
    "AgentChanges",
    "AgentFilter",
    "AgentList",
    "AgentStatus",
    "AgentSummary",
    "ControlRef",
    "Environment",
    "NewAgent",
    "archive_agent",
    "create_agent",
    "get_agent",
    "list_agents",
    "record_moved",
    "update_agent",
]

AGENTS_MOVED: Final = "governance.agents_moved"
"""Agents changed team (or left theirs): ``{"org_id", "agents": [name, ...]}``."""

Environment = Literal["prod", "staging", "test", "dev"]
ENVIRONMENTS: Final[tuple[Environment, ...]] = get_args(Environment)
AgentStatus = Literal["active", "paused", "killed", "archived"]
MAX_NAME = 256
MAX_DESCRIPTION = 2000

Tags = Annotated[list[Text], msgspec.Meta(max_length=64)]
Environments = Annotated[list[Environment], msgspec.Meta(max_length=4)]


class NewAgent(msgspec.Struct, forbid_unknown_fields=True):
    """An agent to add to the registry (its SDK reports it under ``name``)."""

    name: Text
    description: Text = Text("")
    tags: Tags = msgspec.field(default_factory=list)
    environments: Environments = msgspec.field(default_factory=list)
    team_id: uuid.UUID | None = None
    owner_id: uuid.UUID | None = None
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)


class AgentChanges(msgspec.Struct, forbid_unknown_fields=True):
    """A change to an agent's profile: only the fields given change (``team_id`` or
    ``owner_id`` null: none; ``archived`` false restores an archived agent). The name is
    what its SDK reports, so it does not change."""

    description: Text | msgspec.UnsetType = msgspec.UNSET
    tags: Tags | msgspec.UnsetType = msgspec.UNSET
    environments: Environments | msgspec.UnsetType = msgspec.UNSET
    team_id: uuid.UUID | msgspec.UnsetType | None = msgspec.UNSET
    owner_id: uuid.UUID | msgspec.UnsetType | None = msgspec.UNSET
    metadata: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET
    archived: bool | msgspec.UnsetType = msgspec.UNSET


class AgentFilter(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Which agents to list (or to control in bulk). ``environment``: agents that may run
    there; ``status``: by effective status (``archived`` lists the archived agents, which are
    otherwise left out); last seen in the half-open range ``after <= last_seen_at < before``."""

    tag: Text | None = None
    team_id: uuid.UUID | None = None
    environment: Environment | None = None
    status: AgentStatus | None = None
    last_seen_after: Timestamp | None = None
    last_seen_before: Timestamp | None = None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ControlRef:
    """The control that decides an agent's status."""

    id: uuid.UUID
    scope_kind: str
    scope_value: str | None
    state: str
    reason: str
    expires_at: dt.datetime | None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class AgentSummary:
    """An agent of the registry, its status and its runs."""

    id: uuid.UUID
    name: str
    description: str
    tags: list[str]
    environments: list[str]
    team_id: uuid.UUID | None
    team: str | None
    owner_id: uuid.UUID | None
    metadata: dict[str, Any]
    status: AgentStatus
    control: ControlRef | None
    first_seen_at: dt.datetime | None
    last_seen_at: dt.datetime | None
    updated_at: dt.datetime | None
    archived_at: dt.datetime | None
    run_count: int
    runs_outside_environments: int
    """Runs reported from an environment the agent is not enabled for."""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class AgentList:
    """The org's agents matching a filter, by name."""

    items: list[AgentSummary]


async def list_agents(
    session: AsyncSession, org_id: uuid.UUID, where: AgentFilter | None = None
) -> AgentList:
    """The org's agents matching ``where``, ordered by name."""
    where = where or AgentFilter()
    agents = await _find_agents(session, org_id, where)
    return AgentList(items=await _summaries(session, org_id, agents, where.status))


async def get_agent(session: AsyncSession, org_id: uuid.UUID, agent_id: uuid.UUID) -> AgentSummary:
    """The org's agent ``agent_id``, archived or not; ``agent_not_found`` if it has none."""
    agent = await _agent(session, org_id, agent_id)
    [summary] = await _summaries(session, org_id, [agent], None)
    return summary


async def create_agent(session: AsyncSession, operator: Operator, new: NewAgent) -> AgentSummary:
    """Add an agent to the registry; audit; bump the control version; commit.

    Refusals: ``agent_name_taken``, ``team_not_found``, ``member_not_found`` (the owner),
    ``not_your_team``.
    """
    org_id = operator.org_id
    _check_texts(new.name, new.description, new.tags)
    operator.check_teams([new.team_id], "agents", no_team=True)
    await _check_links(session, org_id, new.team_id, new.owner_id)
    agent = Agent(
        org_id=org_id,
        id=uuid.uuid4(),
        name=new.name,
        description=new.description,
        tags=_unique(new.tags),
        environments=_unique(new.environments),
        team_id=new.team_id,
        owner_id=new.owner_id,
        metadata_=new.metadata,
        updated_at=dt.datetime.now(dt.UTC),
    )
    if await session.scalar(select(Agent.id).where(Agent.org_id == org_id, Agent.name == new.name)):
        raise _name_taken(new.name)
    session.add(agent)
    await audit.record(
        session,
        org_id,
        operator.audit,
        "agent.created",
        target_type="agent",
        target_id=agent.id,
        after=_snapshot(agent),
    )
    await bump_control_version(session, org_id)
    try:
        await session.commit()
    except IntegrityError:  # the same name, registered concurrently (by ingest, say)
        await session.rollback()
        raise _name_taken(new.name) from None
    return await get_agent(session, org_id, agent.id)


async def update_agent(
    session: AsyncSession,
    operator: Operator,
    agent_id: uuid.UUID,
    changes: AgentChanges,
    derived: DerivedWork | None = None,
) -> AgentSummary:
    """Apply ``changes`` to the agent; audit what changed (``agent.updated``); bump the control
    version if the SDKs' profile changed; commit; a change of team hands :data:`AGENTS_MOVED` to
    ``derived``.

    Refusals: ``agent_not_found``, ``team_not_found``, ``member_not_found``, ``not_your_team``.
    """
    org_id = operator.org_id
    agent = await _agent(session, org_id, agent_id)
    wanted = {
        field: value
        for field, value in msgspec.structs.asdict(changes).items()
        if value is not msgspec.UNSET
    }
    _check_texts(agent.name, wanted.get("description", ""), wanted.get("tags", []))
    team_id = wanted.get("team_id", agent.team_id)
    operator.check_teams([agent.team_id, team_id], "agents", no_team=True)
    await _check_links(session, org_id, wanted.get("team_id"), wanted.get("owner_id"))
    before = _snapshot(agent)
    now = dt.datetime.now(dt.UTC)
    for field, value in wanted.items():
        if field == "archived":
            agent.archived_at = (agent.archived_at or now) if value else None
        elif field in {"tags", "environments"}:
            setattr(agent, field, _unique(value))
        else:
            setattr(agent, "metadata_" if field == "metadata" else field, value)
    after = _snapshot(agent)
    changed = [field for field in after if after[field] != before[field]]
    if changed:
        agent.updated_at = now
        await audit.record(
            session,
            org_id,
            operator.audit,
            "agent.updated",
            target_type="agent",
            target_id=agent.id,
            before={field: before[field] for field in changed},
            after={field: after[field] for field in changed},
        )
        if set(changed) & _PROFILE_FIELDS:
            await bump_control_version(session, org_id)
        moved = None
        if "team_id" in changed and derived is not None:
            moved = await record_moved(session, derived, org_id, [agent.name])
        await session.commit()
        if moved is not None and derived is not None:
            await derived.dispatch(moved)
    return await get_agent(session, org_id, agent_id)


async def record_moved(
    session: AsyncSession, derived: DerivedWork, org_id: uuid.UUID, names: Sequence[str]
) -> Notice:
    """Record in ``session``'s transaction that the agents ``names`` changed team: the
    :data:`AGENTS_MOVED` notice to dispatch after the commit."""
    return await derived.record(
        session, AGENTS_MOVED, {"org_id": str(org_id), "agents": sorted(names)}
    )


async def archive_agent(session: AsyncSession, operator: Operator, agent_id: uuid.UUID) -> None:
    """Archive the agent (already archived: nothing changes); audit; bump the control version;
    commit.

    Refusals: ``agent_not_found``, ``not_your_team``.
    """
    agent = await _agent(session, operator.org_id, agent_id)
    operator.check_teams([agent.team_id], "agents", no_team=True)
    if agent.archived_at is not None:
        return
    agent.archived_at = agent.updated_at = dt.datetime.now(dt.UTC)
    await audit.record(
        session,
        operator.org_id,
        operator.audit,
        "agent.archived",
        target_type="agent",
        target_id=agent.id,
        before={"archived": False},
        after={"archived": True},
    )
    await bump_control_version(session, operator.org_id)
    await session.commit()


# -- helpers ---------------------------------------------------------------------------------------

_PROFILE_FIELDS = frozenset({"team_id", "tags", "environments", "archived"})
"""What of an agent the SDKs read (in the control set's profiles)."""


async def _find_agents(session: AsyncSession, org_id: uuid.UUID, where: AgentFilter) -> list[Agent]:
    """The org's agent rows matching ``where`` but its status, by name."""
    conditions: list[ColumnElement[bool]] = [Agent.org_id == org_id]
    if where.team_id is not None:
        conditions.append(Agent.team_id == where.team_id)
    if where.last_seen_after is not None:
        conditions.append(Agent.last_seen_at >= where.last_seen_after)
    if where.last_seen_before is not None:
        conditions.append(Agent.last_seen_at < where.last_seen_before)
    archived = Agent.archived_at.is_not(None)
    conditions.append(archived if where.status == "archived" else ~archived)
    rows = await session.scalars(select(Agent).where(*conditions).order_by(Agent.name))
    return [
        agent
        for agent in rows
        if (where.tag is None or where.tag in agent.tags)
        and (where.environment is None or _enabled(agent, where.environment))
    ]


async def _summaries(
    session: AsyncSession,
    org_id: uuid.UUID,
    agents: list[Agent],
    status: AgentStatus | None,
) -> list[AgentSummary]:
    """The summaries of ``agents`` (of status ``status``, if given)."""
    if not agents:
        return []
    teams = await team_names(session, org_id)
    controls = await load_controls(session, org_id)
    runs = await _run_counts(session, org_id, [agent.name for agent in agents])
    now = dt.datetime.now(dt.UTC)
    found = []
    for agent in agents:
        state, control = _status(agent, controls, teams, now)
        if status is not None and state != status:
            continue
        counts = runs.get(agent.name, collections.Counter())
        found.append(
            AgentSummary(
                id=agent.id,
                name=agent.name,
                description=agent.description,
                tags=list(agent.tags),
                environments=list(agent.environments),
                team_id=agent.team_id,
                team=teams.get(agent.team_id) if agent.team_id else None,
                owner_id=agent.owner_id,
                metadata=dict(agent.metadata_),
                status=state,
                control=control,
                first_seen_at=agent.first_seen_at,
                last_seen_at=agent.last_seen_at,
                updated_at=agent.updated_at,
                archived_at=agent.archived_at,
                run_count=sum(counts.values()),
                runs_outside_environments=sum(
                    n for env, n in counts.items() if not _enabled(agent, env)
                ),
            )
        )
    return found


def _status(
    agent: Agent, controls: list[Control], teams: dict[uuid.UUID, str], now: dt.datetime
) -> tuple[AgentStatus, ControlRef | None]:
    """The agent's status and the control deciding it (see the module's docstring)."""
    if agent.archived_at is not None:
        return "archived", None
    profile = profile_of(agent, teams)
    least: Control | None = None
    for environment in agent.environments or ENVIRONMENTS:
        control = effective_control(
            controls,
            agent=agent.name,
            environment=environment,
            tags=(),
            run_id=None,
            profile=profile,
            now=now,
        )
        if control is None:
            return "active", None
        if least is None or strictness(control.state) < strictness(least.state):
            least = control
    assert least is not None
    ref = ControlRef(
        id=least.id,
        scope_kind=least.scope.kind,
        scope_value=least.scope.value,
        state=least.state,
        reason=least.reason,
        expires_at=least.expires_at,
    )
    return least.state, ref


async def _run_counts(
    session: AsyncSession, org_id: uuid.UUID, names: list[str]
) -> dict[str, collections.Counter[str]]:
    """How many runs each agent of ``names`` has, by environment."""
    rows = await session.execute(
        select(Run.agent, Run.environment, func.count())
        .where(Run.org_id == org_id, Run.agent.in_(names))
        .group_by(Run.agent, Run.environment)
    )
    counts: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for name, environment, number in rows:
        counts[name][environment] = number
    return counts


def _enabled(agent: Agent, environment: str) -> bool:
    return not agent.environments or environment in agent.environments


async def _agent(session: AsyncSession, org_id: uuid.UUID, agent_id: uuid.UUID) -> Agent:
    agent = await session.get(Agent, (org_id, agent_id))
    if agent is None:
        raise NotFound("agent_not_found", f"This org has no agent {str(agent_id)!r}.")
    return agent


async def _check_links(
    session: AsyncSession,
    org_id: uuid.UUID,
    team_id: uuid.UUID | None,
    owner_id: uuid.UUID | None,
) -> None:
    """``team_not_found`` or ``member_not_found`` for a team or owner the org does not have."""
    if team_id is not None and await session.get(Team, (org_id, team_id)) is None:
        raise NotFound("team_not_found", "This org has no such team.")
    if owner_id is not None and await session.get(Membership, (org_id, owner_id)) is None:
        raise NotFound("member_not_found", "The owner must be a member of this org.")


def _check_texts(name: str, description: str, tags: Sequence[str]) -> None:
    """``invalid_agent_name``, ``invalid_description`` or ``invalid_tag`` for a value out of
    bounds (a name or tag has 1 to 256 characters, a description at most 2,000)."""
    if not 1 <= len(name) <= MAX_NAME or name != name.strip():
        raise Invalid(
            "invalid_agent_name", "An agent's name has 1 to 256 characters, no outer space."
        )
    if len(description) > MAX_DESCRIPTION:
        raise Invalid("invalid_description", "A description has at most 2,000 characters.")
    if any(not 1 <= len(tag) <= MAX_NAME for tag in tags):
        raise Invalid("invalid_tag", "A tag has 1 to 256 characters.")


def _snapshot(agent: Agent) -> dict[str, Any]:
    return {
        "name": agent.name,
        "description": agent.description,
        "tags": list(agent.tags),
        "environments": list(agent.environments),
        "team_id": None if agent.team_id is None else str(agent.team_id),
        "owner_id": None if agent.owner_id is None else str(agent.owner_id),
        "metadata": dict(agent.metadata_),
        "archived": agent.archived_at is not None,
    }


def _unique(values: list[Any]) -> list[Any]:
    """``values`` without repeats, in their order."""
    return list(dict.fromkeys(values))


def _name_taken(name: str) -> Conflict:
    return Conflict("agent_name_taken", f"This org already has an agent named {name!r}.")
