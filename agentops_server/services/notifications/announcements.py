"""Telling people about a change: in-app notifications, email, webhooks.

:class:`Notifier` turns an :class:`Announcement` (one change of one org: a control killed a
team's agents) into

1. a notification for each member who should know: the org's owners and admins, and the team
   leads of the teams the change touches (when the change names a team, or an agent of a team);
2. an email to each of them, through the hub's mailer (once per notification: ``emailed_at``),
   sent last, so a mail outage delays nothing but the mail;
3. a delivery to each enabled webhook of the org subscribed to the event, sent by the
   :data:`~agentops_server.services.notifications.delivery.DELIVER_WEBHOOK` task;

and calls its listeners for each notification made (the live stream pushes them).

Everything it makes has an id derived from the announcement's ``key`` (a notification: the key
and the person; a delivery: the key and the webhook), so a task that runs twice makes nothing
twice and mails no one twice: the queue may retry it freely.

The task registered for ``governance.control_changed`` (:meth:`Notifier.control_changed`) reads
the notice the controls service hands over::

    {"org_id": str, "control_ids": [str], "action": "kill" | "pause" | "resume" | "clear",
     "scope": {"kind": str, "value": str | None} | [{"kind": ..., "value": ...}, ...],
     "reason": str, "actor": str}

and announces the event ``control.changed`` with that notice as its data.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from agentops_server.backends.derived_work import DerivedWork
from agentops_server.backends.mailer import Email, Mailer
from agentops_server.db.engine import open_session
from agentops_server.db.models import (
    Agent,
    Membership,
    Notification,
    Team,
    TeamMember,
    User,
    Webhook,
    WebhookDelivery,
)
from agentops_server.db.tenancy import tenant
from agentops_server.security.permissions import Role
from agentops_server.services.notifications.delivery import (
    DELIVER_WEBHOOK,
    WebhookSender,
    delivery_notice,
    event_envelope,
    new_delivery,
)
from agentops_server.services.notifications.inbox import NotificationView, view_of
from agentops_server.services.row_claims import claim
from agentops_server.settings import Settings

__all__ = [
    "CONTROL_CHANGED",
    "Announcement",
    "NotificationListener",
    "Notifier",
    "control_announcement",
    "teams_touched",
]

logger = logging.getLogger("agentops_server.notifications")

CONTROL_CHANGED = "governance.control_changed"
"""The derived-work notice the controls service hands over after each change."""

NotificationListener = Callable[[uuid.UUID, uuid.UUID, NotificationView], Awaitable[None]]
"""Called with (org id, user id, the notification) after a notification is committed."""

_ACTIONS = {"kill": "killed", "pause": "paused", "resume": "resumed", "clear": "cleared"}


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Announcement:
    """One change of one org to tell people about."""

    org_id: uuid.UUID
    key: uuid.UUID
    """Names the change: the same change announced twice makes nothing twice."""
    event: str
    """The notification kind and webhook event: ``control.changed``."""
    title: str
    body: str
    data: dict[str, Any]
    """The event's JSON data, in the notification and in the webhook payload."""
    team_ids: frozenset[uuid.UUID] = frozenset()
    """Teams touched: their team leads are told too."""
    user_ids: frozenset[uuid.UUID] = frozenset()
    """Members told too, whatever their role (a budget's ``notify`` list)."""
    email: bool = True
    """Whether the notifications are mailed too (False: in-app and webhooks only)."""


class Notifier:
    """Makes the notifications, emails and webhook deliveries of announcements."""

    def __init__(
        self,
        engine: AsyncEngine,
        settings: Settings,
        mailer: Mailer,
        derived_work: DerivedWork,
    ) -> None:
        self._engine = engine
        self._settings = settings
        self._mailer = mailer
        self._derived_work = derived_work
        self._listeners: list[NotificationListener] = []

    def register(self) -> None:
        """Register the notification tasks on the derived-work queue (the app's start)."""
        self._derived_work.register(CONTROL_CHANGED, self.control_changed)
        sender = WebhookSender(self._engine, self._settings, self._derived_work)
        self._derived_work.register(DELIVER_WEBHOOK, sender.__call__)

    def listen(self, listener: NotificationListener) -> None:
        """Call ``listener`` for every notification made from now on (a listener that raises
        is logged; the others still run)."""
        self._listeners.append(listener)

    async def control_changed(self, notice: Mapping[str, Any]) -> None:
        """The task of :data:`CONTROL_CHANGED`: announce ``control.changed``."""
        org_id = uuid.UUID(str(notice["org_id"]))
        with tenant(org_id=org_id):
            async with open_session(self._engine) as session:
                teams = await teams_touched(session, org_id, _scopes(notice.get("scope")))
        await self.announce(control_announcement(org_id, notice, teams))

    async def announce(self, announcement: Announcement) -> None:
        """Notify, mail and fan out ``announcement`` (idempotent: see the module docstring)."""
        with tenant(org_id=announcement.org_id):
            async with open_session(self._engine) as session:
                ids, made = await self._notify(session, announcement)
                await session.commit()
            for notification in made:
                await self._tell_listeners(announcement.org_id, notification)
            async with open_session(self._engine) as session:
                notices = await self._fan_out(session, announcement)
                await session.commit()
            for notice in notices:
                await self._derived_work.enqueue(DELIVER_WEBHOOK, notice)
            if announcement.email:  # last: a mail outage delays only mail
                await self._mail(announcement.org_id, ids)

    async def _notify(
        self, session: AsyncSession, announcement: Announcement
    ) -> tuple[list[uuid.UUID], list[Notification]]:
        """The ids of the announcement's notifications, and those of them added now (the
        others were made by an earlier run)."""
        org_id = announcement.org_id
        recipients = await _recipients(
            session, org_id, announcement.team_ids, announcement.user_ids
        )
        ids = {user_id: uuid.uuid5(announcement.key, str(user_id)) for user_id in recipients}
        existing = set(
            await session.scalars(
                select(Notification.id).where(
                    Notification.org_id == org_id, Notification.id.in_(list(ids.values()))
                )
            )
        )
        now = dt.datetime.now(dt.UTC)
        made = [
            Notification(
                org_id=org_id,
                id=notification_id,
                user_id=user_id,
                kind=announcement.event,
                title=announcement.title,
                body=announcement.body,
                data=announcement.data,
                created_at=now,
            )
            for user_id, notification_id in ids.items()
            if notification_id not in existing
        ]
        session.add_all(made)
        return list(ids.values()), made

    async def _tell_listeners(self, org_id: uuid.UUID, notification: Notification) -> None:
        for listener in self._listeners:
            try:
                await listener(org_id, notification.user_id, view_of(notification))
            except Exception:
                logger.exception("notifications: a listener failed")

    async def _mail(self, org_id: uuid.UUID, ids: list[uuid.UUID]) -> None:
        """Mail each of the notifications ``ids`` not mailed yet. Each is claimed (its
        ``emailed_at`` set) before it is sent, so two runs never both mail it; a send that fails
        gives the claim back and raises, for the queue to retry."""
        async with open_session(self._engine) as session:
            unsent = await session.execute(
                select(Notification, User.email)
                .join(User, User.id == Notification.user_id)
                .where(
                    Notification.org_id == org_id,
                    Notification.id.in_(ids),
                    Notification.emailed_at.is_(None),
                )
            )
            for notification, address in unsent.all():
                claimed = await claim(
                    session,
                    notification,
                    Notification.emailed_at.is_(None),
                    emailed_at=dt.datetime.now(dt.UTC),
                )
                await session.commit()
                if not claimed:
                    continue  # another run mails it
                try:
                    await self._mailer.send(_email(address, notification, self._settings))
                except Exception:
                    notification.emailed_at = None
                    await session.commit()
                    raise

    async def _fan_out(
        self, session: AsyncSession, announcement: Announcement
    ) -> list[dict[str, Any]]:
        """Add a delivery for each subscribed webhook not yet given one; the notices of every
        delivery of ``announcement`` still waiting for its first attempt."""
        org_id = announcement.org_id
        hooks = [
            hook
            for hook in await session.scalars(
                select(Webhook).where(Webhook.org_id == org_id, Webhook.enabled.is_(True))
            )
            if announcement.event in hook.events
        ]
        ids = {hook.id: uuid.uuid5(announcement.key, f"webhook:{hook.id}") for hook in hooks}
        existing = {
            row.id: row
            for row in await session.scalars(
                select(WebhookDelivery).where(
                    WebhookDelivery.org_id == org_id, WebhookDelivery.id.in_(list(ids.values()))
                )
            )
        }
        payload = event_envelope(announcement.key, announcement.event, org_id, announcement.data)
        deliveries = [
            existing.get(ids[hook.id])
            or _added(session, new_delivery(hook, ids[hook.id], announcement.event, payload))
            for hook in hooks
        ]
        return [
            delivery_notice(delivery)
            for delivery in deliveries
            if delivery.status == "pending" and delivery.attempts == 0
        ]


def control_announcement(
    org_id: uuid.UUID, notice: Mapping[str, Any], team_ids: frozenset[uuid.UUID]
) -> Announcement:
    """The announcement of a ``governance.control_changed`` notice."""
    data = {key: notice.get(key) for key in ("control_ids", "action", "scope", "reason", "actor")}
    action = str(notice.get("action", "changed"))
    scopes = ", ".join(_scope_text(scope) for scope in _scopes(notice.get("scope"))) or "the org"
    return Announcement(
        org_id=org_id,
        key=uuid.uuid5(uuid.NAMESPACE_URL, "agentops:" + json.dumps(dict(notice), sort_keys=True)),
        event="control.changed",
        title=f"Agents {_ACTIONS.get(action, action)}: {scopes}"[:200],
        body=(
            f"{notice.get('actor') or 'Someone'} {_ACTIONS.get(action, action)} agents "
            f"({scopes}). Reason: {notice.get('reason') or 'none given'}."
        )[:4000],
        data=data,
        team_ids=team_ids,
    )


async def _recipients(
    session: AsyncSession,
    org_id: uuid.UUID,
    team_ids: Iterable[uuid.UUID],
    user_ids: Iterable[uuid.UUID] = (),
) -> list[uuid.UUID]:
    """The owners and admins of the org, the team leads of ``team_ids``, and those of
    ``user_ids`` who are members."""
    admins = select(Membership.user_id).where(
        Membership.org_id == org_id, Membership.role.in_([Role.OWNER.value, Role.ADMIN.value])
    )
    leads = (
        select(TeamMember.user_id)
        .join(
            Membership,
            (Membership.org_id == TeamMember.org_id) & (Membership.user_id == TeamMember.user_id),
        )
        .where(
            TeamMember.org_id == org_id,
            TeamMember.team_id.in_(list(team_ids)),
            Membership.role == Role.TEAM_LEAD.value,
        )
    )
    found = set(await session.scalars(admins)) | set(await session.scalars(leads))
    if extra := sorted(set(user_ids)):
        members = select(Membership.user_id).where(
            Membership.org_id == org_id, Membership.user_id.in_(extra)
        )
        found |= set(await session.scalars(members))
    return sorted(found)


async def teams_touched(
    session: AsyncSession, org_id: uuid.UUID, scopes: list[Mapping[str, Any]]
) -> frozenset[uuid.UUID]:
    """The teams named by ``team`` scopes, and those of agents named by ``agent`` scopes (by
    id or name); other scopes name no team."""
    teams: set[uuid.UUID] = set()
    for scope in scopes:
        value = scope.get("value")
        if value is None:
            continue
        as_id = _uuid(str(value))
        if scope.get("kind") == "team":
            match = Team.id == as_id if as_id else Team.name == str(value)
            teams |= set(await session.scalars(select(Team.id).where(Team.org_id == org_id, match)))
        elif scope.get("kind") == "agent":
            match = Agent.id == as_id if as_id else Agent.name == str(value)
            found = await session.scalars(
                select(Agent.team_id).where(Agent.org_id == org_id, match)
            )
            teams |= {team for team in found if team is not None}
    return frozenset(teams)


def _scopes(scope: Any) -> list[Mapping[str, Any]]:
    scopes = scope if isinstance(scope, list) else [scope]
    return [item for item in scopes if isinstance(item, Mapping)]


def _scope_text(scope: Mapping[str, Any]) -> str:
    kind, value = scope.get("kind", "org"), scope.get("value")
    return str(kind) if value is None else f"{kind} {value}"


def _uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def _added(session: AsyncSession, delivery: WebhookDelivery) -> WebhookDelivery:
    session.add(delivery)
    return delivery


def _email(address: str, notification: Notification, settings: Settings) -> Email:
    return Email(
        to=address,
        subject=notification.title,
        text=f"{notification.body}\n\nAgentOps Hub: {settings.public_url}\n",
    )
