"""``/api/v1/webhooks``: the org's outgoing webhooks: create (the secret shown once), list,
read, change, delete, their recent deliveries, a test event."""

from __future__ import annotations

import uuid
from typing import Any

import msgspec
from litestar import Controller, Request, delete, get, patch, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody
from sqlalchemy.ext.asyncio import AsyncSession

from agentops_server.api.problems import JSON_BODY_LIMIT, problems
from agentops_server.api.v1.actors import actor_of
from agentops_server.auth.guards import requires
from agentops_server.backends.derived_work import DerivedWork
from agentops_server.refusals import Invalid
from agentops_server.security.permissions import Permission
from agentops_server.security.principal import Principal
from agentops_server.services.notifications import webhooks
from agentops_server.services.notifications.webhooks import (
    CreatedWebhook,
    DeliveryList,
    DeliveryView,
    WebhookList,
    WebhookView,
)
from agentops_server.settings import Settings
from agentops_server.values import Text

__all__ = ["WebhookController"]

_EVENTS = ", ".join(f"`{event}`" for event in sorted(webhooks.WEBHOOK_EVENTS))
_REFUSALS = (
    Invalid("invalid_webhook_url", "not an http(s) URL with a host, or one with credentials"),
    Invalid("webhook_url_refused", "an IP address the hub's settings do not allow"),
    Invalid("unknown_event", "an event name the hub does not send"),
    Invalid("no_events", "an empty list of events"),
)


class NewWebhook(msgspec.Struct, forbid_unknown_fields=True):
    """A webhook to make: where to POST, which events, whether it is on."""

    url: Text
    events: list[Text]
    enabled: bool = True


class WebhookChange(msgspec.Struct, forbid_unknown_fields=True):
    """What to change (what is left out stays)."""

    url: Text | None = None
    events: list[Text] | None = None
    enabled: bool | None = None


class WebhookController(Controller):
    """Webhooks of the caller's org."""

    path = "/webhooks"
    tags = ("webhooks",)
    request_max_body_size = JSON_BODY_LIMIT

    @get("/", guards=[requires(Permission.WEBHOOKS_READ)], summary="The org's webhooks")
    async def list_webhooks(
        self, request: Request[Principal, Principal, Any], db_session: NamedDependency[AsyncSession]
    ) -> WebhookList:
        """Every webhook, newest first, never its secret."""
        return await webhooks.list_webhooks(db_session, request.auth.org_id)

    @post(
        "/",
        guards=[requires(Permission.WEBHOOKS_WRITE)],
        summary="Create a webhook",
        description=(
            f"Events: {_EVENTS}. The answer holds the signing secret (`secret`), shown this "
            "once. URLs pointing at private, loopback, link-local or reserved addresses are "
            "refused unless the hub allows them (checked again at every delivery, on the "
            "resolved address). Audited as `webhook.created`."
        ),
        responses=problems(*_REFUSALS),
    )
    async def create_webhook(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        settings: NamedDependency[Settings],
        data: JSONBody[NewWebhook],
    ) -> CreatedWebhook:
        """Make a webhook."""
        return await webhooks.create_webhook(
            db_session,
            settings,
            request.auth,
            actor_of(request),
            url=data.url,
            events=data.events,
            enabled=data.enabled,
        )

    @get(
        "/{webhook_id:uuid}",
        guards=[requires(Permission.WEBHOOKS_READ)],
        summary="One webhook",
        description="404 `webhook_not_found`.",
    )
    async def get_webhook(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        webhook_id: FromPath[uuid.UUID],
    ) -> WebhookView:
        """A webhook, never its secret."""
        return await webhooks.get_webhook(db_session, request.auth.org_id, webhook_id)

    @patch(
        "/{webhook_id:uuid}",
        guards=[requires(Permission.WEBHOOKS_WRITE)],
        summary="Change a webhook",
        description=(
            "Its URL, events or `enabled`. Audited as `webhook.updated`. 404 `webhook_not_found`."
        ),
        responses=problems(*_REFUSALS),
    )
    async def update_webhook(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        settings: NamedDependency[Settings],
        webhook_id: FromPath[uuid.UUID],
        data: JSONBody[WebhookChange],
    ) -> WebhookView:
        """Change a webhook."""
        return await webhooks.update_webhook(
            db_session,
            settings,
            request.auth,
            actor_of(request),
            webhook_id,
            url=data.url,
            events=data.events,
            enabled=data.enabled,
        )

    @delete(
        "/{webhook_id:uuid}",
        guards=[requires(Permission.WEBHOOKS_WRITE)],
        summary="Delete a webhook",
        description=(
            "With its deliveries; pending ones are not sent. Audited as `webhook.deleted`. "
            "404 `webhook_not_found`."
        ),
    )
    async def delete_webhook(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        webhook_id: FromPath[uuid.UUID],
    ) -> None:
        """Delete a webhook."""
        await webhooks.delete_webhook(db_session, request.auth, actor_of(request), webhook_id)

    @get(
        "/{webhook_id:uuid}/deliveries",
        guards=[requires(Permission.WEBHOOKS_READ)],
        summary="A webhook's recent deliveries",
        description=(
            f"The {webhooks.RECENT_DELIVERIES} most recent, newest first: event, payload, "
            "status (`pending`, `delivered`, `failed`), attempts, the last answer or error, "
            "when the next attempt is due. 404 `webhook_not_found`."
        ),
    )
    async def list_deliveries(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        webhook_id: FromPath[uuid.UUID],
    ) -> DeliveryList:
        """Recent deliveries."""
        return await webhooks.list_deliveries(db_session, request.auth.org_id, webhook_id)

    @post(
        "/{webhook_id:uuid}/test",
        guards=[requires(Permission.WEBHOOKS_WRITE)],
        status_code=202,
        summary="Send a test event",
        description=(
            f"Queues a `{webhooks.TEST_EVENT}` delivery, signed and retried like any other; "
            "follow it in the deliveries. Audited as `webhook.tested`. 404 `webhook_not_found`."
        ),
    )
    async def send_test_event(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        derived_work: NamedDependency[DerivedWork],
        webhook_id: FromPath[uuid.UUID],
    ) -> DeliveryView:
        """Queue a test delivery."""
        return await webhooks.send_test_event(
            db_session, derived_work, request.auth, actor_of(request), webhook_id
        )
