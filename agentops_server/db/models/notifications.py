"""Notifications: in-app notifications per member, outgoing webhooks per org and their
deliveries."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import (
    Boolean,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    Uuid,
    func,
)
from sqlalchemy.orm import Mapped, mapped_column

from agentops_server.db.models.base import Base, Moment

__all__ = ["Notification", "Webhook", "WebhookDelivery"]


class Notification(Base):
    """Something a member of the org should know (a control changed), shown in the app until
    read, and mailed once (``emailed_at``)."""

    __tablename__ = "notifications"

    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("orgs.id"), primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    kind: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(String(4000))
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(Moment, server_default=func.now())
    read_at: Mapped[dt.datetime | None] = mapped_column(Moment)
    emailed_at: Mapped[dt.datetime | None] = mapped_column(Moment)

    __table_args__ = (
        # A member who leaves the org takes their notifications along.
        ForeignKeyConstraint(
            ["org_id", "user_id"], ["memberships.org_id", "memberships.user_id"], ondelete="CASCADE"
        ),
        Index(None, "org_id", "user_id", "created_at", "id"),
        Index(None, "org_id", "created_at"),  # the org's latest: its stream's version
    )


class Webhook(Base):
    """An HTTPS (or HTTP) endpoint of the org's that receives the events it subscribed to.

    ``secret`` signs each delivery, so the hub must be able to read it: it is stored encrypted
    with a key derived from ``AGENTOPS_SECRET_KEY`` (Fernet), never in clear, never a hash.
    """

    __tablename__ = "webhooks"

    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("orgs.id"), primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    url: Mapped[str] = mapped_column(String(2048))
    events: Mapped[list[Any]] = mapped_column(default=list)
    secret: Mapped[str] = mapped_column(String(512))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_by: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    created_at: Mapped[dt.datetime] = mapped_column(Moment, server_default=func.now())
    updated_at: Mapped[dt.datetime | None] = mapped_column(Moment)


class WebhookDelivery(Base):
    """One event sent (or being sent) to one webhook: ``pending`` until it is ``delivered`` or,
    after its last attempt, ``failed``."""

    __tablename__ = "webhook_deliveries"

    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("orgs.id"), primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    webhook_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    event: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column()
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(1000))
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column(Moment)
    delivered_at: Mapped[dt.datetime | None] = mapped_column(Moment)
    created_at: Mapped[dt.datetime] = mapped_column(Moment, server_default=func.now())

    __table_args__ = (
        ForeignKeyConstraint(
            ["org_id", "webhook_id"], ["webhooks.org_id", "webhooks.id"], ondelete="CASCADE"
        ),
        Index(None, "org_id", "webhook_id", "created_at", "id"),
    )
