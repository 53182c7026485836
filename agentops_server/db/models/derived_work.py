"""The derived-work outbox: what committed changes still owe to derived work."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import Index, String, Text, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from agentops_server.db.models.base import Base, Moment

__all__ = ["PendingWork"]


class PendingWork(Base):
    """One task owed for one notice, written in the transaction of the change it follows.

    The row is deleted when its task has run; a task that failed its last attempt keeps its row
    with ``failed_at`` and ``error`` (the dead letters, ``agentops-hub jobs failed``). A row
    with neither, older than a grace period, is a job the queue lost or never got: the worker's
    sweep hands it over again.

    Not a tenant table (no ``org_id`` column; the payload names the org): the worker reads every
    org's rows as one system process. The app's role may only insert rows, never read them
    (see migration 0004), so a request cannot see another org's notices.
    """

    __tablename__ = "derived_work"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    notice: Mapped[str] = mapped_column(String(100))
    task: Mapped[str] = mapped_column(String(300))
    payload: Mapped[dict[str, Any]] = mapped_column()
    created_at: Mapped[dt.datetime] = mapped_column(Moment)
    not_before: Mapped[dt.datetime | None] = mapped_column(Moment)
    """When the task is due (a delayed notice, such as an approval's escalation); None: now."""
    failed_at: Mapped[dt.datetime | None] = mapped_column(Moment)
    error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index(None, "failed_at", "created_at"),)
