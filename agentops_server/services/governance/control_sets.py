"""An org's controls and agent profiles as the SDK reads them: the
:class:`~agentops_sdk.contract.controls.ControlSet` the hub serves and pushes.

The wire schema is the SDK's (``agentops_sdk.contract.controls``); this module only reads rows
into it. The version is read first (:mod:`~agentops_server.services.governance.versions`).
"""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from agentops_sdk.contract.controls import AgentProfile, Control, ControlScope, ControlSet
from agentops_server.backends.live import StreamTopic
from agentops_server.db.models import Agent, Team
from agentops_server.db.models import Control as ControlRow
from agentops_server.services.governance.versions import control_version

__all__ = [
    "CONTROLS",
    "CONTROLS_TOPIC",
    "control_of",
    "current_etag",
    "load_control_set",
    "load_controls",
    "profile_of",
    "team_names",
]


async def load_control_set(session: AsyncSession, org_id: uuid.UUID) -> ControlSet:
    """The org's controls (every one, live or not: the SDK judges expiry by its clock), the
    profile of each of its agents, and its control version."""
    version = await control_version(session, org_id)
    controls = await load_controls(session, org_id)
    names = await team_names(session, org_id)
    agents = await session.scalars(select(Agent).where(Agent.org_id == org_id).order_by(Agent.name))
    return ControlSet(
        org_id=org_id,
        version=version,
        controls=tuple(controls),
        agents=tuple(profile_of(agent, names) for agent in agents),
        generated_at=dt.datetime.now(dt.UTC),
    )


async def controls_snapshot(session: AsyncSession, org_id: uuid.UUID) -> tuple[int, str]:
    """The ``controls`` topic of the org's stream: its control version and set, as JSON."""
    controls = await load_control_set(session, org_id)
    return controls.version, controls.model_dump_json()


CONTROLS = "controls"
CONTROLS_TOPIC = StreamTopic(CONTROLS, snapshot=controls_snapshot, version=control_version)
"""The org's controls on its live stream (``GET /api/v1/stream``), pushed after each change
and found by the version watch when the CLI or another process made it."""


async def current_etag(session: AsyncSession, org_id: uuid.UUID) -> str:
    """The ETag of the org's control set as it stands, read from its version alone (an
    unchanged poll costs one small query)."""
    version = await control_version(session, org_id)
    return ControlSet(org_id=org_id, version=version, generated_at=dt.datetime.now(dt.UTC)).etag


async def load_controls(session: AsyncSession, org_id: uuid.UUID) -> list[Control]:
    """The org's controls, oldest first."""
    rows = await session.scalars(
        select(ControlRow)
        .where(ControlRow.org_id == org_id)
        .order_by(ControlRow.created_at, ControlRow.id)
    )
    return [control_of(row) for row in rows]


async def team_names(session: AsyncSession, org_id: uuid.UUID) -> dict[uuid.UUID, str]:
    """The name of each of the org's teams, by id."""
    rows = await session.execute(select(Team.id, Team.name).where(Team.org_id == org_id))
    return {team_id: name for team_id, name in rows}  # noqa: C416 (Rows, not pairs)


def control_of(row: ControlRow) -> Control:
    """A stored control as the SDK reads it."""
    return Control(
        id=row.id,
        scope=ControlScope(kind=row.scope_kind, value=row.scope_value or None),  # type: ignore[arg-type]
        state=row.state,  # type: ignore[arg-type]
        reason=row.reason,
        actor=row.actor,
        version=row.version,
        created_at=row.created_at,
        updated_at=row.updated_at,
        expires_at=row.expires_at,
        pause_timeout=row.pause_timeout,
    )


def profile_of(agent: Agent, teams: dict[uuid.UUID, str]) -> AgentProfile:
    """What the SDK reads of a registered agent."""
    return AgentProfile(
        name=agent.name,
        team=teams.get(agent.team_id) if agent.team_id else None,
        tags=tuple(agent.tags),
        environments=tuple(agent.environments),
        archived=agent.archived_at is not None,
    )
