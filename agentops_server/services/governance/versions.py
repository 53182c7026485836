"""Each org's control version: what ``GET /api/v1/controls``'s ETag and a hub's watch read.

:func:`bump_control_version` runs in the transaction of every change that an SDK's
:class:`~agentops_sdk.contract.controls.ControlSet` carries (a control; an agent's team, tags,
environments or archived flag), so the new version commits with the change, or not at all.
Readers take the version *before* the rows it stands for: a set read that way is never older
than its version, so an SDK that holds a version holds at least that state.
"""

from __future__ import annotations

import uuid

from sqlalchemy import Table, select
from sqlalchemy.ext.asyncio import AsyncSession

from agentops_server.db.models import ControlVersion
from agentops_server.db.upsert import dialect_insert

__all__ = ["bump_control_version", "control_version"]


async def control_version(session: AsyncSession, org_id: uuid.UUID) -> int:
    """The org's control version (0: nothing was ever changed)."""
    version = await session.scalar(
        select(ControlVersion.version).where(ControlVersion.org_id == org_id)
    )
    return int(version or 0)


async def bump_control_version(session: AsyncSession, org_id: uuid.UUID) -> int:
    """Add one to the org's control version in the current transaction; the new version.

    One statement (``INSERT ... ON CONFLICT DO UPDATE``), so concurrent changes each get their
    own version and none is lost.
    """
    table = ControlVersion.__table__
    assert isinstance(table, Table)
    insert = dialect_insert(session, table).values(org_id=org_id, version=1)
    bumped = insert.on_conflict_do_update(
        index_elements=[table.c.org_id], set_={"version": table.c.version + 1}
    ).returning(table.c.version)
    return int((await session.execute(bumped)).scalar_one())
