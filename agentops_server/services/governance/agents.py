"""Reading agents: the org's agents, when each was first and last seen, and how many runs it has.

An agent is registered the first time one of its runs arrives; its runs name it (``runs.agent``),
so the run count is counted over the index ``(org_id, agent, started_at)``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from agentops_server.db.models import Agent, Run
from agentops_server.refusals import NotFound

__all__ = ["AgentList", "AgentSummary", "get_agent", "list_agents"]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class AgentSummary:
    """An agent: its name, when its runs were first and last seen, how many runs it has."""

    id: uuid.UUID
    name: str
    first_seen_at: dt.datetime
    last_seen_at: dt.datetime
    run_count: int


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class AgentList:
    """Every agent of the org, by name."""

    items: list[AgentSummary]


async def list_agents(session: AsyncSession, org_id: uuid.UUID) -> AgentList:
    """The org's agents, ordered by name."""
    counts = (
        select(Run.agent, func.count().label("runs"))
        .where(Run.org_id == org_id)
        .group_by(Run.agent)
        .subquery()
    )
    rows = await session.execute(
        select(Agent, func.coalesce(counts.c.runs, 0))
        .outerjoin(counts, counts.c.agent == Agent.name)
        .where(Agent.org_id == org_id)
        .order_by(Agent.name)
    )
    return AgentList(items=[_summary(agent, run_count) for agent, run_count in rows])


async def get_agent(session: AsyncSession, org_id: uuid.UUID, agent_id: uuid.UUID) -> AgentSummary:
    """The org's agent ``agent_id``; ``agent_not_found`` if it has none."""
    agent = await session.get(Agent, (org_id, agent_id))
    if agent is None:
        raise NotFound("agent_not_found", f"This org has no agent {str(agent_id)!r}.")
    run_count = await session.scalar(
        select(func.count()).select_from(Run).where(Run.org_id == org_id, Run.agent == agent.name)
    )
    return _summary(agent, run_count or 0)


def _summary(agent: Agent, run_count: int) -> AgentSummary:
    return AgentSummary(
        id=agent.id,
        name=agent.name,
        first_seen_at=agent.first_seen_at,
        last_seen_at=agent.last_seen_at,
        run_count=run_count,
    )
