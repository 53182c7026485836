"""The webhooks pages: the org's webhooks (create, with the signing secret shown once) and
one webhook (edit, delete, send a test event, its recent deliveries).

Each action is the service ``/api/v1/webhooks`` calls
(:mod:`agentops_server.services.notifications.webhooks`): its URL checks, audit entries and
deliveries are the API's.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import PathParameter
from sqlalchemy.ext.asyncio import AsyncSession

from agentops_server.api.v1.actors import actor_of
from agentops_server.auth.guards import requires
from agentops_server.backends.derived_work import DerivedWork
from agentops_server.refusals import Refused
from agentops_server.security.permissions import Permission
from agentops_server.security.principal import Principal
from agentops_server.services.notifications import webhooks
from agentops_server.services.notifications.webhooks import CreatedWebhook
from agentops_server.settings import Settings
from agentops_server.web.forms import form_of
from agentops_server.web.pages import done
from agentops_server.web.settings.tabs import render, settle

__all__ = ["WebhookPages"]

PATH = "/settings/webhooks"
WEBHOOK = PATH + "/{webhook_id:uuid}"
WebhookId = Annotated[uuid.UUID, PathParameter()]
EVENTS = sorted(webhooks.WEBHOOK_EVENTS)


class WebhookPages(Controller):
    """``/settings/webhooks``: read with ``webhooks:read``, change with ``webhooks:write``."""

    @get(PATH, guards=[requires(Permission.WEBHOOKS_READ)])
    async def webhooks_page(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
    ) -> Response[Any]:
        """The org's webhooks, never a secret."""
        return await _render_list(request, db_session)

    @post(PATH, guards=[requires(Permission.WEBHOOKS_WRITE)])
    async def create_webhook(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        settings: NamedDependency[Settings],
    ) -> Response[Any]:
        """Make a webhook; the page shows its signing secret once."""
        form = await form_of(request)
        try:
            created = await webhooks.create_webhook(
                db_session,
                settings,
                request.auth,
                actor_of(request),
                url=(form.get("url") or [""])[0].strip(),
                events=form.get("event", []),
                enabled=bool(form.get("enabled")),
            )
        except Refused as exc:
            return await _render_list(request, db_session, exc)
        return await _render_list(request, db_session, created=created)

    @get(WEBHOOK, guards=[requires(Permission.WEBHOOKS_READ)])
    async def webhook_page(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        webhook_id: WebhookId,
    ) -> Response[Any]:
        """One webhook and its recent deliveries."""
        return await _render_one(request, db_session, webhook_id)

    @post(WEBHOOK, guards=[requires(Permission.WEBHOOKS_WRITE)])
    async def update_webhook(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        settings: NamedDependency[Settings],
        webhook_id: WebhookId,
    ) -> Response[Any]:
        """Change its URL, events and whether it is on; audited as ``webhook.updated``."""
        form = await form_of(request)
        try:
            await webhooks.update_webhook(
                db_session,
                settings,
                request.auth,
                actor_of(request),
                webhook_id,
                url=(form.get("url") or [""])[0].strip(),
                events=form.get("event", []),
                enabled=bool(form.get("enabled")),
            )
        except Refused as exc:
            return await _render_one(request, db_session, webhook_id, exc)
        return done(PATH + f"/{webhook_id}", "webhook_updated")

    @post(WEBHOOK + "/delete", guards=[requires(Permission.WEBHOOKS_WRITE)])
    async def delete_webhook(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        webhook_id: WebhookId,
    ) -> Response[Any]:
        """Delete the webhook with its deliveries; audited as ``webhook.deleted``."""
        try:
            await webhooks.delete_webhook(db_session, request.auth, actor_of(request), webhook_id)
        except Refused as exc:
            return await _render_list(request, db_session, exc)
        return done(PATH, "webhook_deleted")

    @post(WEBHOOK + "/test", guards=[requires(Permission.WEBHOOKS_WRITE)])
    async def send_test(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        derived_work: NamedDependency[DerivedWork],
        webhook_id: WebhookId,
    ) -> Response[Any]:
        """Queue a test delivery, followed in the deliveries; audited as ``webhook.tested``."""
        try:
            await webhooks.send_test_event(
                db_session, derived_work, request.auth, actor_of(request), webhook_id
            )
        except Refused as exc:
            return await _render_list(request, db_session, exc)
        return done(PATH + f"/{webhook_id}", "webhook_tested")


async def _render_list(
    request: Request[Principal, Principal, Any],
    db_session: AsyncSession,
    refusal: Refused | None = None,
    *,
    created: CreatedWebhook | None = None,
) -> Response[Any]:
    await settle(db_session, refusal)
    return await render(
        request,
        db_session,
        "settings/webhooks.html",
        refusal,
        webhooks=(await webhooks.list_webhooks(db_session, request.auth.org_id)).items,
        created=created,
        events=EVENTS,
    )


async def _render_one(
    request: Request[Principal, Principal, Any],
    db_session: AsyncSession,
    webhook_id: uuid.UUID,
    refusal: Refused | None = None,
) -> Response[Any]:
    await settle(db_session, refusal)
    org_id = request.auth.org_id
    return await render(
        request,
        db_session,
        "settings/webhook.html",
        refusal,
        webhook=await webhooks.get_webhook(db_session, org_id, webhook_id),
        deliveries=(await webhooks.list_deliveries(db_session, org_id, webhook_id)).items,
        events=EVENTS,
    )
