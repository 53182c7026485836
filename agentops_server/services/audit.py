"""The audit log: every admin, membership, key, role and settings action, append-only.

Services call :func:`record` in the same transaction as the change it describes, so an action
and its entry commit (or roll back) together. The table refuses UPDATE and DELETE for every
database user (migration 0002's triggers); only deleting the org itself takes its log with it.

:func:`list_entries` reads the log newest first with keyset pagination on ``(at, id)``
(:mod:`~agentops_server.services.pagination`, the index ``(org_id, at, id)``), so entries
written meanwhile never shift a page.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import uuid
from typing import Any, Literal

from sqlalchemy import ColumnElement
from sqlalchemy.ext.asyncio import AsyncSession

from agentops_server.db.models import AuditEvent
from agentops_server.db.types import to_utc
from agentops_server.refusals import Invalid
from agentops_server.security.principal import Principal
from agentops_server.services.pagination import InvalidCursor, newest_first

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "MAX_PAGE_SIZE",
    "SYSTEM",
    "Actor",
    "AuditEntry",
    "AuditFilter",
    "AuditPage",
    "list_entries",
    "record",
]

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
_ACTION = re.compile(r"[a-z][a-z0-9_]*(\.[a-z0-9_]+)*\.?")


@dataclasses.dataclass(frozen=True, slots=True)
class Actor:
    """Who acted, and from where (``ip`` and ``request_id`` come from the request)."""

    type: Literal["user", "api_key", "system"]
    id: uuid.UUID | None
    ip: str | None = None
    request_id: str | None = None

    @classmethod
    def of(
        cls, principal: Principal, *, ip: str | None = None, request_id: str | None = None
    ) -> Actor:
        """The actor behind a request's principal."""
        return cls(principal.kind, principal.actor_id, ip, request_id)


SYSTEM = Actor("system", None)


async def record(
    session: AsyncSession,
    org_id: uuid.UUID,
    actor: Actor,
    action: str,
    *,
    target_type: str,
    target_id: uuid.UUID | str | None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> AuditEvent:
    """Add an audit entry (not committed: it commits with the change it describes).

    ``action`` reads ``<resource>.<verb>``: ``member.role_changed``, ``api_key.revoked``…
    ``before``/``after`` are JSON-able snapshots of what changed, never secrets.
    """
    event = AuditEvent(
        org_id=org_id,
        id=uuid.uuid4(),
        at=dt.datetime.now(dt.UTC),
        actor_type=actor.type,
        actor_id=actor.id,
        action=action,
        target_type=target_type,
        target_id=None if target_id is None else str(target_id),
        before=before,
        after=after,
        ip=actor.ip,
        request_id=actor.request_id,
    )
    session.add(event)
    return event


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class AuditFilter:
    """Which entries to list. ``action`` is exact (``member.removed``) or, ending with a dot, a
    prefix (``member.``); times are a half-open range: ``since <= at < until``."""

    action: str | None = None
    actor_id: uuid.UUID | None = None
    target_type: str | None = None
    target_id: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class AuditEntry:
    """One entry: who did what to what, when, from where, and the state before and after."""

    id: uuid.UUID
    at: dt.datetime
    actor_type: str
    actor_id: uuid.UUID | None
    action: str
    target_type: str
    target_id: str | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    ip: str | None
    request_id: str | None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class AuditPage:
    """One page of entries, newest first; pass ``next_cursor`` back for the next (None: the end)."""

    items: list[AuditEntry]
    next_cursor: str | None


async def list_entries(
    session: AsyncSession,
    org_id: uuid.UUID,
    where: AuditFilter,
    *,
    limit: int = DEFAULT_PAGE_SIZE,
    cursor: str | None = None,
) -> AuditPage:
    """The org's entries matching ``where``, newest first, ``limit`` at a time.

    Refusals: ``invalid_action`` (not an action name or prefix), ``invalid_cursor``.
    """
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise ValueError(f"limit must be between 1 and {MAX_PAGE_SIZE}, got {limit}")
    try:
        page, next_cursor = await newest_first(
            session,
            AuditEvent,
            (AuditEvent.at, AuditEvent.id),
            _conditions(org_id, where),
            limit=limit,
            cursor=cursor,
        )
    except InvalidCursor as exc:
        raise Invalid("invalid_cursor", "This cursor was not made by this hub.") from exc
    return AuditPage(items=[_entry(row) for row in page], next_cursor=next_cursor)


def _conditions(org_id: uuid.UUID, where: AuditFilter) -> list[ColumnElement[bool]]:
    conditions = [AuditEvent.org_id == org_id]
    if where.action is not None:
        if len(where.action) > 64 or not _ACTION.fullmatch(where.action):
            raise Invalid(
                "invalid_action",
                "Filter by an action (member.role_changed) or a prefix ending in a dot (member.).",
            )
        conditions.append(
            AuditEvent.action.startswith(where.action, autoescape=True)
            if where.action.endswith(".")
            else AuditEvent.action == where.action
        )
    if where.actor_id is not None:
        conditions.append(AuditEvent.actor_id == where.actor_id)
    if where.target_type is not None:
        conditions.append(AuditEvent.target_type == where.target_type)
    if where.target_id is not None:
        conditions.append(AuditEvent.target_id == where.target_id)
    if where.since is not None:
        conditions.append(AuditEvent.at >= to_utc(where.since))
    if where.until is not None:
        conditions.append(AuditEvent.at < to_utc(where.until))
    return conditions


def _entry(row: AuditEvent) -> AuditEntry:
    return AuditEntry(
        id=row.id,
        at=row.at,
        actor_type=row.actor_type,
        actor_id=row.actor_id,
        action=row.action,
        target_type=row.target_type,
        target_id=row.target_id,
        before=row.before,
        after=row.after,
        ip=row.ip,
        request_id=row.request_id,
    )
