"""The agent registry and what governs agents: agents, their profiles."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import ForeignKey, Index, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from agentops_server.db.models.base import Base, Moment

__all__ = ["Agent"]


class Agent(Base):
    """An agent, registered the first time one of its runs arrives."""

    __tablename__ = "agents"

    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("orgs.id"), primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(256))
    team_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    first_seen_at: Mapped[dt.datetime] = mapped_column(Moment)
    last_seen_at: Mapped[dt.datetime] = mapped_column(Moment)

    __table_args__ = (Index(None, "org_id", "name", unique=True),)
