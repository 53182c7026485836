"""Policies: each org's immutable policy versions, and which one its SDKs enforce."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, Uuid, func
from sqlalchemy.orm import Mapped, mapped_column

from agentops_server.db.models.base import Base, Moment

__all__ = ["PolicyState", "PolicyVersion"]


class PolicyVersion(Base):
    """One saved version of the org's policy set: never changed once written.

    ``document`` is the set as written (its ``version`` stamped with ``number``), ``tests`` the
    table tests saved with it; ``rolled_back_from`` names the version a rollback copied."""

    __tablename__ = "policy_versions"

    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("orgs.id"), primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    number: Mapped[int] = mapped_column(Integer)
    document: Mapped[dict[str, Any]] = mapped_column()
    tests: Mapped[list[Any]] = mapped_column(default=list)
    comment: Mapped[str | None] = mapped_column(String(1000))
    author_type: Mapped[str] = mapped_column(String(16))
    author_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    rolled_back_from: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(Moment, server_default=func.now())

    __table_args__ = (Index(None, "org_id", "number", unique=True),)


class PolicyState(Base):
    """The org's policy head: the last version number given, the active version, and the
    revision (bumped whenever the active set changes: the ETag and the stream's version)."""

    __tablename__ = "policy_states"

    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("orgs.id"), primary_key=True)
    latest_number: Mapped[int] = mapped_column(Integer, default=0)
    active_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    revision: Mapped[int] = mapped_column(Integer, default=0)
    activated_at: Mapped[dt.datetime | None] = mapped_column(Moment)
