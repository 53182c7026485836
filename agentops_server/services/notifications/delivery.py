"""Delivering webhook events: one signed POST per attempt, retried with backoff through the
derived-work queue, every attempt recorded on its ``webhook_deliveries`` row.

A delivery is made ``pending`` with the event's payload (:func:`new_delivery`) and handed to
the queue as the task :data:`DELIVER_WEBHOOK` with the attempt it is due for
(:func:`delivery_notice`). The task (:class:`WebhookSender`) is idempotent: it acts only on a
pending delivery whose recorded attempts are one fewer than the notice's, so a notice run twice,
or a stale one, does nothing. A retry's notice is recorded with the failed attempt, scheduled
for the delivery's ``next_attempt_at`` (a delayed job: no worker waits for it); the task then
resolves the
webhook's host and refuses a private address (:mod:`.addresses`), connects to the very address
it checked, POSTs the JSON body with the ``AgentOps-Signature``, ``AgentOps-Event`` and
``AgentOps-Delivery`` headers, follows no redirect, and records the answer. A 2xx answer is
``delivered``; anything else is retried ``webhooks_attempts`` times in all, waiting
``webhooks_backoff`` seconds doubled after each failure (at most five minutes), then ``failed``.
A refused address, or a webhook deleted or disabled meanwhile, fails the delivery at once.

Receivers see each delivery at least once (a worker stopped between sending and recording
sends it again): the ``AgentOps-Delivery`` id is the same each time, to deduplicate by.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import time
import uuid
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx
from cryptography.fernet import InvalidToken
from sqlalchemy.ext.asyncio import AsyncEngine

from agentops_sdk import __version__
from agentops_server.backends.derived_work import DerivedWork, Notice
from agentops_server.db.engine import open_session
from agentops_server.db.models import Webhook, WebhookDelivery
from agentops_server.db.tenancy import tenant
from agentops_server.security.sealing import sealing_key
from agentops_server.services.notifications.addresses import RefusedAddress, resolve_destination
from agentops_server.services.notifications.signing import SIGNATURE_HEADER, signature
from agentops_server.services.row_claims import claim
from agentops_server.settings import Settings

__all__ = [
    "DELIVER_WEBHOOK",
    "DeliveryStatus",
    "WebhookSender",
    "delivery_notice",
    "event_envelope",
    "new_delivery",
    "open_secret",
    "seal_secret",
]

DELIVER_WEBHOOK = "notifications.webhook_delivery"
"""The derived-work task that makes one attempt at one delivery."""

DeliveryStatus = Literal["pending", "delivered", "failed"]

_MAX_BACKOFF = 300.0
_EARLY = 2.0
"""Seconds a notice may come before its attempt is due and still wait for it (a scheduled job
runs at whole seconds); earlier, it is scheduled again for the attempt's time."""
_MAX_ERROR = 1000
_SEALING_PURPOSE = "webhook-secrets"


def seal_secret(settings: Settings, secret: str) -> str:
    """``secret`` as stored: sealed with the hub's secret key (:mod:`~agentops_server.security.
    sealing`)."""
    return sealing_key(settings.secret_key, _SEALING_PURPOSE).encrypt(secret.encode()).decode()


def open_secret(settings: Settings, stored: str) -> str:
    """The signing secret a webhook row holds (``InvalidToken`` when sealed under another
    secret key)."""
    return sealing_key(settings.secret_key, _SEALING_PURPOSE).decrypt(stored.encode()).decode()


def event_envelope(
    event_id: uuid.UUID, event: str, org_id: uuid.UUID, data: Mapping[str, Any]
) -> dict[str, Any]:
    """The JSON body of every delivery: ``{"id", "type", "created_at", "org_id", "data"}``."""
    return {
        "id": str(event_id),
        "type": event,
        "created_at": dt.datetime.now(dt.UTC).isoformat(),
        "org_id": str(org_id),
        "data": dict(data),
    }


def new_delivery(
    webhook: Webhook, delivery_id: uuid.UUID, event: str, payload: dict[str, Any]
) -> WebhookDelivery:
    """A pending delivery of ``payload`` to ``webhook``, due now (not yet added)."""
    return WebhookDelivery(
        org_id=webhook.org_id,
        id=delivery_id,
        webhook_id=webhook.id,
        event=event,
        payload=payload,
        status="pending",
        attempts=0,
        created_at=dt.datetime.now(dt.UTC),
    )


def delivery_notice(delivery: WebhookDelivery) -> dict[str, Any]:
    """The payload of :data:`DELIVER_WEBHOOK` for the delivery's next attempt."""
    return {
        "org_id": str(delivery.org_id),
        "delivery_id": str(delivery.id),
        "attempt": delivery.attempts + 1,
    }


@dataclasses.dataclass(frozen=True, slots=True)
class _Outcome:
    delivered: bool
    status_code: int | None = None
    error: str | None = None
    final: bool = False
    """No retry can help (a refused address, a webhook gone)."""


@dataclasses.dataclass(frozen=True, slots=True)
class _Attempt:
    url: str
    secret: str
    event: str
    payload: dict[str, Any]
    wait: float
    due: dt.datetime | None


class WebhookSender:
    """The :data:`DELIVER_WEBHOOK` task: one attempt per notice (see the module docstring)."""

    def __init__(self, engine: AsyncEngine, settings: Settings, derived_work: DerivedWork) -> None:
        self._engine = engine
        self._settings = settings
        self._derived_work = derived_work

    async def __call__(self, notice: Mapping[str, Any]) -> None:
        """Make the attempt ``notice`` names, if it is still due; record it; queue the next."""
        org_id = uuid.UUID(str(notice["org_id"]))
        delivery_id = uuid.UUID(str(notice["delivery_id"]))
        attempt = int(notice["attempt"])
        with tenant(org_id=org_id):
            prepared = await self._prepare(org_id, delivery_id, attempt)
            if prepared is None:
                return
            if isinstance(prepared, _Outcome):
                outcome = prepared
            else:
                if prepared.wait > _EARLY:  # due later: come back then, hold no worker
                    await self._come_back(notice, prepared.due)
                    return
                await asyncio.sleep(prepared.wait)  # a scheduled job may start a second early
                outcome = await self._post(delivery_id, prepared)
            retry = await self._record(org_id, delivery_id, attempt, outcome)
        if retry is not None:
            await self._derived_work.dispatch(retry)

    async def _come_back(self, notice: Mapping[str, Any], due: dt.datetime | None) -> None:
        """Schedule ``notice`` again for ``due`` (it came early: a notice from before a retry
        was scheduled, or a queue that ran it ahead of time)."""
        async with open_session(self._engine) as session:
            later = await self._derived_work.record(
                session, DELIVER_WEBHOOK, dict(notice), not_before=due
            )
            await session.commit()
        await self._derived_work.dispatch(later)

    async def _prepare(
        self, org_id: uuid.UUID, delivery_id: uuid.UUID, attempt: int
    ) -> _Attempt | _Outcome | None:
        async with open_session(self._engine) as session:
            delivery = await session.get(WebhookDelivery, (org_id, delivery_id))
            if delivery is None or delivery.status != "pending":
                return None
            if delivery.attempts != attempt - 1:
                return None  # a stale or repeated notice: that attempt was made
            webhook = await session.get(Webhook, (org_id, delivery.webhook_id))
            if webhook is None or not webhook.enabled:
                return _Outcome(False, error="the webhook is disabled", final=True)
            try:
                secret = open_secret(self._settings, webhook.secret)
            except InvalidToken:
                return _Outcome(
                    False, error="the secret was sealed under another secret key", final=True
                )
            due = delivery.next_attempt_at
            wait = 0.0 if due is None else (due - dt.datetime.now(dt.UTC)).total_seconds()
            return _Attempt(
                webhook.url, secret, delivery.event, delivery.payload, max(wait, 0.0), due
            )

    async def _post(self, delivery_id: uuid.UUID, attempt: _Attempt) -> _Outcome:
        allow_private = self._settings.webhooks_allow_private
        try:
            destination = await resolve_destination(attempt.url, allow_private=allow_private)
        except RefusedAddress as exc:
            return _Outcome(False, error=f"address refused: {exc}", final=True)
        body = json.dumps(attempt.payload, separators=(",", ":"), ensure_ascii=False).encode()
        headers = {
            "Host": urlsplit(attempt.url).netloc,
            "Content-Type": "application/json",
            "User-Agent": f"AgentOps-Hub/{__version__}",
            SIGNATURE_HEADER: signature(attempt.secret, int(time.time()), body),
            "AgentOps-Event": attempt.event,
            "AgentOps-Delivery": str(delivery_id),
        }
        # Connect to the address that was checked, never to the name again (DNS rebinding);
        # TLS still verifies the certificate against the name.
        target = httpx.URL(attempt.url).copy_with(host=destination.address)
        extensions = {"sni_hostname": destination.host} if target.scheme == "https" else {}
        try:
            async with httpx.AsyncClient(
                timeout=self._settings.webhooks_timeout, follow_redirects=False, trust_env=False
            ) as client:
                response = await client.post(
                    target, content=body, headers=headers, extensions=extensions
                )
        except httpx.HTTPError as exc:
            return _Outcome(False, error=f"{type(exc).__name__}: {exc}"[:_MAX_ERROR])
        if response.is_success:
            return _Outcome(True, status_code=response.status_code)
        return _Outcome(
            False,
            status_code=response.status_code,
            error=f"the receiver answered {response.status_code}",
        )

    async def _record(
        self, org_id: uuid.UUID, delivery_id: uuid.UUID, attempt: int, outcome: _Outcome
    ) -> Notice | None:
        """Record the attempt on the delivery, and with it the notice of the next attempt, if
        one is due, scheduled for its time (dispatch it after this returns)."""
        now = dt.datetime.now(dt.UTC)
        gives_up = outcome.final or attempt >= self._settings.webhooks_attempts
        status: DeliveryStatus = (
            "delivered" if outcome.delivered else "failed" if gives_up else "pending"
        )
        backoff = min(self._settings.webhooks_backoff * 2 ** (attempt - 1), _MAX_BACKOFF)
        async with open_session(self._engine) as session:
            delivery = await session.get(WebhookDelivery, (org_id, delivery_id))
            if delivery is None:
                return None  # its webhook was deleted meanwhile
            recorded = await claim(
                session,
                delivery,
                WebhookDelivery.status == "pending",
                WebhookDelivery.attempts == attempt - 1,
                status=status,
                attempts=attempt,
                last_status_code=outcome.status_code,
                last_error=outcome.error,
                delivered_at=now if outcome.delivered else None,
                next_attempt_at=now + dt.timedelta(seconds=backoff)
                if status == "pending"
                else None,
            )
            retry = None
            if recorded and status == "pending":
                retry = await self._derived_work.record(
                    session,
                    DELIVER_WEBHOOK,
                    delivery_notice(delivery),
                    not_before=delivery.next_attempt_at,
                )
            await session.commit()
            return retry
