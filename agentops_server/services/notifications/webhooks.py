"""The org's outgoing webhooks: create (the signing secret shown once), list, read, change,
delete, their recent deliveries, and a test event.

Owners and admins manage them (``webhooks:read``, ``webhooks:write``). A webhook names the
events it receives (:data:`WEBHOOK_EVENTS`); its URL is checked when it is set
(:func:`~agentops_server.services.notifications.addresses.check_webhook_url`) and its resolved
address again at every delivery. The secret is sealed with the hub's secret key, never shown
again after creation. Every change is audited with the URL's host only: a URL's path or query
may itself be a credential (chat services' incoming-webhook URLs are).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from agentops_server.backends.derived_work import DerivedWork
from agentops_server.db.models import Webhook, WebhookDelivery
from agentops_server.refusals import Invalid, NotFound
from agentops_server.security.principal import Principal
from agentops_server.services import audit
from agentops_server.services.audit import Actor
from agentops_server.services.notifications.addresses import check_webhook_url
from agentops_server.services.notifications.delivery import (
    DELIVER_WEBHOOK,
    delivery_notice,
    event_envelope,
    new_delivery,
    seal_secret,
)
from agentops_server.services.notifications.signing import new_webhook_secret
from agentops_server.settings import Settings

__all__ = [
    "RECENT_DELIVERIES",
    "TEST_EVENT",
    "WEBHOOK_EVENTS",
    "CreatedWebhook",
    "DeliveryList",
    "DeliveryView",
    "WebhookList",
    "WebhookView",
    "create_webhook",
    "delete_webhook",
    "get_webhook",
    "list_deliveries",
    "list_webhooks",
    "send_test_event",
    "update_webhook",
]

WEBHOOK_EVENTS = frozenset(
    {
        "control.changed",
        "approval.requested",
        "approval.escalated",
        "approval.decided",
        "budget.alert",
        "budget.changed",
    }
)
"""The events a webhook may subscribe to."""
TEST_EVENT = "webhook.test"
"""What ``send_test_event`` sends, whatever the webhook subscribed to."""
RECENT_DELIVERIES = 50


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class WebhookView:
    """A webhook as listed: never its secret."""

    id: uuid.UUID
    url: str
    events: list[str]
    enabled: bool
    created_by: uuid.UUID | None
    created_at: dt.datetime
    updated_at: dt.datetime | None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class CreatedWebhook(WebhookView):
    """A webhook just made: ``secret`` signs its deliveries, shown this once."""

    secret: str


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class WebhookList:
    """The org's webhooks, newest first."""

    items: list[WebhookView]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryView:
    """One event sent to a webhook, and how its attempts went."""

    id: uuid.UUID
    webhook_id: uuid.UUID
    event: str
    status: str
    """``pending`` (an attempt is due at ``next_attempt_at``), ``delivered`` or ``failed``."""
    attempts: int
    last_status_code: int | None
    last_error: str | None
    next_attempt_at: dt.datetime | None
    delivered_at: dt.datetime | None
    created_at: dt.datetime
    payload: dict[str, Any]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryList:
    """A webhook's most recent deliveries, newest first."""

    items: list[DeliveryView]


async def list_webhooks(session: AsyncSession, org_id: uuid.UUID) -> WebhookList:
    """The org's webhooks, newest first."""
    found = await session.scalars(
        select(Webhook).where(Webhook.org_id == org_id).order_by(Webhook.created_at.desc())
    )
    return WebhookList(items=[_view(row) for row in found])


async def get_webhook(
    session: AsyncSession, org_id: uuid.UUID, webhook_id: uuid.UUID
) -> WebhookView:
    """One webhook (``webhook_not_found``)."""
    return _view(await _webhook(session, org_id, webhook_id))


async def create_webhook(
    session: AsyncSession,
    settings: Settings,
    principal: Principal,
    actor: Actor,
    *,
    url: str,
    events: Iterable[str],
    enabled: bool = True,
) -> CreatedWebhook:
    """Make a webhook with a new secret; audit ``webhook.created``; commit.

    Refusals: ``invalid_webhook_url``, ``webhook_url_refused``, ``unknown_event``,
    ``no_events``.
    """
    secret = new_webhook_secret()
    row = Webhook(
        org_id=principal.org_id,
        id=uuid.uuid4(),
        url=check_webhook_url(url, allow_private=settings.webhooks_allow_private),
        events=_events(events),
        secret=seal_secret(settings, secret),
        enabled=enabled,
        created_by=principal.actor_id,
        created_at=dt.datetime.now(dt.UTC),
    )
    session.add(row)
    await audit.record(
        session,
        row.org_id,
        actor,
        "webhook.created",
        target_type="webhook",
        target_id=row.id,
        after=_audited(row),
    )
    await session.commit()
    return CreatedWebhook(**dataclasses.asdict(_view(row)), secret=secret)


async def update_webhook(
    session: AsyncSession,
    settings: Settings,
    principal: Principal,
    actor: Actor,
    webhook_id: uuid.UUID,
    *,
    url: str | None = None,
    events: Iterable[str] | None = None,
    enabled: bool | None = None,
) -> WebhookView:
    """Change what is given; audit ``webhook.updated`` if anything changed; commit.

    Refusals: those of :func:`create_webhook`, and ``webhook_not_found``.
    """
    row = await _webhook(session, principal.org_id, webhook_id)
    before = _audited(row)
    if url is not None:
        row.url = check_webhook_url(url, allow_private=settings.webhooks_allow_private)
    if events is not None:
        row.events = _events(events)
    if enabled is not None:
        row.enabled = enabled
    if _audited(row) != before:
        row.updated_at = dt.datetime.now(dt.UTC)
        await audit.record(
            session,
            row.org_id,
            actor,
            "webhook.updated",
            target_type="webhook",
            target_id=row.id,
            before=before,
            after=_audited(row),
        )
        await session.commit()
    return _view(row)


async def delete_webhook(
    session: AsyncSession, principal: Principal, actor: Actor, webhook_id: uuid.UUID
) -> None:
    """Delete the webhook and its deliveries (pending ones are not sent); audit
    ``webhook.deleted``; commit. Refusal: ``webhook_not_found``."""
    row = await _webhook(session, principal.org_id, webhook_id)
    await audit.record(
        session,
        row.org_id,
        actor,
        "webhook.deleted",
        target_type="webhook",
        target_id=row.id,
        before=_audited(row),
    )
    await session.delete(row)
    await session.commit()


async def list_deliveries(
    session: AsyncSession, org_id: uuid.UUID, webhook_id: uuid.UUID
) -> DeliveryList:
    """The webhook's :data:`RECENT_DELIVERIES` most recent deliveries (``webhook_not_found``)."""
    await _webhook(session, org_id, webhook_id)
    found = await session.scalars(
        select(WebhookDelivery)
        .where(WebhookDelivery.org_id == org_id, WebhookDelivery.webhook_id == webhook_id)
        .order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id.desc())
        .limit(RECENT_DELIVERIES)
    )
    return DeliveryList(items=[delivery_view(row) for row in found])


async def send_test_event(
    session: AsyncSession,
    derived_work: DerivedWork,
    principal: Principal,
    actor: Actor,
    webhook_id: uuid.UUID,
) -> DeliveryView:
    """Queue a :data:`TEST_EVENT` delivery to the webhook (enabled or not: disabled ones fail
    it); audit ``webhook.tested``; commit. Refusal: ``webhook_not_found``."""
    row = await _webhook(session, principal.org_id, webhook_id)
    event_id = uuid.uuid4()
    data = {"webhook_id": str(row.id), "message": "A test event from AgentOps Hub."}
    delivery = new_delivery(
        row, event_id, TEST_EVENT, event_envelope(event_id, TEST_EVENT, row.org_id, data)
    )
    session.add(delivery)
    await audit.record(
        session,
        row.org_id,
        actor,
        "webhook.tested",
        target_type="webhook",
        target_id=row.id,
        after={"delivery_id": str(delivery.id)},
    )
    await session.commit()
    await derived_work.enqueue(DELIVER_WEBHOOK, delivery_notice(delivery))
    return delivery_view(delivery)


def delivery_view(row: WebhookDelivery) -> DeliveryView:
    """``row`` as the API shows it."""
    return DeliveryView(
        id=row.id,
        webhook_id=row.webhook_id,
        event=row.event,
        status=row.status,
        attempts=row.attempts,
        last_status_code=row.last_status_code,
        last_error=row.last_error,
        next_attempt_at=row.next_attempt_at,
        delivered_at=row.delivered_at,
        created_at=row.created_at,
        payload=row.payload,
    )


async def _webhook(session: AsyncSession, org_id: uuid.UUID, webhook_id: uuid.UUID) -> Webhook:
    row = await session.scalar(
        select(Webhook).where(Webhook.org_id == org_id, Webhook.id == webhook_id)
    )
    if row is None:
        raise NotFound("webhook_not_found", "The org has no such webhook.")
    return row


def _events(events: Iterable[str]) -> list[str]:
    chosen = sorted(set(events))
    if not chosen:
        raise Invalid("no_events", "Name at least one event the webhook receives.")
    unknown = [event for event in chosen if event not in WEBHOOK_EVENTS]
    if unknown:
        raise Invalid(
            "unknown_event",
            f"Unknown events: {', '.join(unknown[:5])}; "
            f"known: {', '.join(sorted(WEBHOOK_EVENTS))}.",
        )
    return chosen


def _view(row: Webhook) -> WebhookView:
    return WebhookView(
        id=row.id,
        url=row.url,
        events=list(row.events),
        enabled=row.enabled,
        created_by=row.created_by,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _audited(row: Webhook) -> dict[str, Any]:
    return {"host": urlsplit(row.url).hostname, "events": list(row.events), "enabled": row.enabled}
