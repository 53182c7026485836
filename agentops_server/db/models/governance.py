"""The agent registry and what governs agents: agents, controls, each org's control version."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import BigInteger, Float, ForeignKey, Index, Integer, String, Uuid, text
from sqlalchemy.orm import Mapped, mapped_column

from agentops_server.db.models.base import Base, Moment

__all__ = ["Agent", "Control", "ControlVersion"]


class Agent(Base):
    """An agent of the registry: registered the first time one of its runs arrives, or made
    through the API; archived, never deleted (its runs still name it)."""

    __tablename__ = "agents"

    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("orgs.id"), primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(256))
    description: Mapped[str] = mapped_column(String(2000), default="", server_default="")
    tags: Mapped[list[Any]] = mapped_column(default=list, server_default=text("'[]'"))
    environments: Mapped[list[Any]] = mapped_column(default=list, server_default=text("'[]'"))
    """The environments it may run in (prod, staging, test, dev); empty: every one."""
    team_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    owner_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    """The user who answers for it (a member of the org when set)."""
    metadata_: Mapped[dict[str, Any]] = mapped_column(
        "metadata", default=dict, server_default=text("'{}'")
    )
    first_seen_at: Mapped[dt.datetime | None] = mapped_column(Moment)
    """When its first run started (None: made through the API, no run seen yet)."""
    last_seen_at: Mapped[dt.datetime | None] = mapped_column(Moment)
    updated_at: Mapped[dt.datetime | None] = mapped_column(Moment)
    """When the registry entry was last edited (None: never)."""
    archived_at: Mapped[dt.datetime | None] = mapped_column(Moment)

    __table_args__ = (Index(None, "org_id", "name", unique=True),)


class Control(Base):
    """A control: a state set at a scope of the org (one control per scope), with the reason,
    who set it, and until when. ``scope_value`` is empty for the ``org`` scope."""

    __tablename__ = "controls"

    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("orgs.id"), primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    scope_kind: Mapped[str] = mapped_column(String(16))
    scope_value: Mapped[str] = mapped_column(String(256))
    state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(1024))
    actor: Mapped[str] = mapped_column(String(1024))
    version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(Moment)
    updated_at: Mapped[dt.datetime] = mapped_column(Moment)
    expires_at: Mapped[dt.datetime | None] = mapped_column(Moment)
    pause_timeout: Mapped[float] = mapped_column(Float, default=0.0)

    __table_args__ = (Index(None, "org_id", "scope_kind", "scope_value", unique=True),)


class ControlVersion(Base):
    """An org's control version: bumped in the transaction of every change to a control or to
    what the SDK reads of an agent's profile. It is the ETag of ``GET /api/v1/controls``, and
    what a hub process watches to learn of changes made elsewhere (the CLI, another process)."""

    __tablename__ = "control_versions"

    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("orgs.id"), primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger)
