"""The audit log."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import (
    ForeignKey,
    Index,
    String,
    Uuid,
)
from sqlalchemy.orm import Mapped, mapped_column

from agentops_server.db.models.base import Base, Moment

__all__ = ["AuditEvent"]


class AuditEvent(Base):
    """One entry of an org's audit log: who did what to what, before and after. Append-only."""

    __tablename__ = "audit_log"

    # CASCADE: deleting an org takes its log with it (the only delete the triggers allow).
    org_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("orgs.id", ondelete="CASCADE"), primary_key=True
    )
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    at: Mapped[dt.datetime] = mapped_column(Moment)
    actor_type: Mapped[str] = mapped_column(String(16))  # user, api_key, system
    actor_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    action: Mapped[str] = mapped_column(String(64))  # e.g. member.role_changed
    target_type: Mapped[str] = mapped_column(String(32))
    target_id: Mapped[str | None] = mapped_column(String(128))
    before: Mapped[dict[str, Any] | None] = mapped_column()
    after: Mapped[dict[str, Any] | None] = mapped_column()
    ip: Mapped[str | None] = mapped_column(String(64))
    request_id: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (
        Index(None, "org_id", "at", "id"),
        Index(None, "org_id", "action", "at"),
        Index(None, "org_id", "actor_id", "at"),
    )
