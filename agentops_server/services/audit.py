"""The audit log: every admin, membership, key, role and settings action, append-only.

Services call :func:`record` in the same transaction as the change it describes, so an action
and its entry commit (or roll back) together. The table refuses UPDATE and DELETE for every
database user (migration 0002's triggers).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from typing import Any, Literal

from sqlalchemy.ext.asyncio import AsyncSession

from agentops_server.auth.principal import Principal
from agentops_server.db.models import AuditEvent

__all__ = ["SYSTEM", "Actor", "record"]


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
