"""Human approvals: each org's approval requests, and the revision its stream carries."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import BigInteger, Boolean, Float, ForeignKey, Index, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from agentops_server.db.models.base import Base, Moment

__all__ = ["ApprovalRequest", "ApprovalRevision"]


class ApprovalRequest(Base):
    """One request for a human's approval of one call (one per ``key``: run, call, arguments).

    The columns are :class:`agentops_sdk.contract.approvals.ApprovalRequest`'s fields, plus the
    rule's settings the hub acts on (``escalate_after``, ``allow_self_approval``) and who
    decided (``decided_by_id``: the reviewer's user id; ``decided_by`` their email or
    ``system``). ``state`` is the state last written: a ``pending`` row past ``expires_at``
    reads as ``expired`` (the service computes it, and writes it when it next touches the row).
    """

    __tablename__ = "approval_requests"

    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("orgs.id"), primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    key: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(32))
    agent: Mapped[str] = mapped_column(String(256))
    agent_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    """The registry's agent of that name when asked (None: not registered then)."""
    environment: Mapped[str] = mapped_column(String(256))
    run_id: Mapped[str] = mapped_column(String(256))
    span_id: Mapped[str] = mapped_column(String(256))
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(256))
    arguments: Mapped[dict[str, Any] | None] = mapped_column()
    arguments_sha256: Mapped[str] = mapped_column(String(64))
    arguments_valid: Mapped[bool] = mapped_column(Boolean)
    rule: Mapped[str] = mapped_column(String(256))
    policy_version: Mapped[str | None] = mapped_column(String(64))
    reason: Mapped[str | None] = mapped_column(String(1024))
    on_expiry: Mapped[str] = mapped_column(String(16))
    on_reject: Mapped[str] = mapped_column(String(16))
    escalate_after: Mapped[float | None] = mapped_column(Float)
    allow_self_approval: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[dt.datetime] = mapped_column(Moment)
    expires_at: Mapped[dt.datetime] = mapped_column(Moment)
    escalated_at: Mapped[dt.datetime | None] = mapped_column(Moment)
    decided_at: Mapped[dt.datetime | None] = mapped_column(Moment)
    decided_by: Mapped[str | None] = mapped_column(String(320))
    decided_by_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    comment: Mapped[str | None] = mapped_column(String(1024))
    edited_arguments: Mapped[dict[str, Any] | None] = mapped_column()
    claimed_at: Mapped[dt.datetime | None] = mapped_column(Moment)
    claimed_by: Mapped[str | None] = mapped_column(String(256))

    __table_args__ = (
        Index(None, "org_id", "key", unique=True),
        Index(None, "org_id", "created_at", "id"),  # the queue, newest first
        Index(None, "org_id", "state", "expires_at"),  # pending, and overdue
        Index(None, "org_id", "decided_at"),  # the stream's feed
    )


class ApprovalRevision(Base):
    """An org's approvals revision: bumped in the transaction of every decision or written
    expiry; with the count of requests overdue, the version of the org's ``approvals`` topic."""

    __tablename__ = "approval_revisions"

    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("orgs.id"), primary_key=True)
    revision: Mapped[int] = mapped_column(BigInteger)
