"""The org's agents by name: what a page needs to offer them in a list and link to each (one
small query on the registry, none on runs)."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from agentops_server.db.models import Agent

__all__ = ["agent_ids"]


async def agent_ids(session: AsyncSession, org_id: uuid.UUID) -> dict[str, uuid.UUID]:
    """The id of each of the org's agents (archived ones included), by name, names in order."""
    rows = await session.execute(
        select(Agent.name, Agent.id).where(Agent.org_id == org_id).order_by(Agent.name)
    )
    return {row.name: row.id for row in rows}
