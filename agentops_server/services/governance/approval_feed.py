"""How approval requests read, and the ``approvals`` topic of each org's live stream.

A request's row keeps the state last written; :func:`view_of` reads a ``pending`` row past its
``expires_at`` as ``expired`` (decided at ``expires_at`` by ``system``), so an expiry never
waits for a write. The service writes it when it next touches the row (:func:`expire`).

The stream's ``approvals`` event is the org's :class:`~agentops_sdk.contract.approvals.
ApprovalFeed`: its requests decided most recently (overdue ones included, as ``expired``),
newest first, at most :data:`~agentops_sdk.contract.approvals.DEFAULT_FEED_SIZE`. Its version
is the org's approvals revision (bumped in the transaction of every decision and written
expiry) times :data:`OVERDUE_SPAN`, plus the number of requests overdue but not yet written as
expired. That number only grows until an expiry is written, which bumps the revision; so the
version grows with every decision and with every request that runs out of time, and each hub's
version watch carries an expiry to the waiting SDKs within its interval, with no write at all.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, Final

from sqlalchemy import Table, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from agentops_sdk.contract.approvals import (
    DEFAULT_FEED_SIZE,
    TOPIC,
    ApprovalFeed,
    ApprovalRequest,
)
from agentops_server.backends.live import StreamTopic
from agentops_server.db.models import ApprovalRequest as ApprovalRow
from agentops_server.db.models import ApprovalRevision
from agentops_server.db.upsert import dialect_insert
from agentops_server.services import audit
from agentops_server.services.row_claims import claim

__all__ = [
    "APPROVALS",
    "APPROVAL_DECIDED",
    "APPROVAL_REQUESTED",
    "APPROVALS_TOPIC",
    "OVERDUE_SPAN",
    "SYSTEM_REVIEWER",
    "approvals_feed",
    "approvals_version",
    "bump_revision",
    "expire",
    "is_overdue",
    "snapshot_of",
    "view_of",
]

APPROVALS: Final = TOPIC
APPROVAL_REQUESTED: Final = "approval_requested"
"""The passing event on the org's stream of a new request (its ``ApprovalRequest`` as data)."""
APPROVAL_DECIDED: Final = "approval_decided"
"""The passing event on the org's stream of a decision (the decided ``ApprovalRequest``)."""
SYSTEM_REVIEWER: Final = "system"
"""Who decided an expired request."""
OVERDUE_SPAN: Final = 1_000_000
"""The stream version's room for overdue requests per revision (more are counted as this)."""


def is_overdue(row: ApprovalRow, now: dt.datetime) -> bool:
    """Whether ``row`` is pending past its ``expires_at`` (it reads as ``expired``)."""
    return row.state == "pending" and row.expires_at <= now


def view_of(row: ApprovalRow, now: dt.datetime | None = None) -> ApprovalRequest:
    """The request as the API and the stream show it at ``now`` (default: now)."""
    state, decided_at, decided_by = row.state, row.decided_at, row.decided_by
    if is_overdue(row, now or dt.datetime.now(dt.UTC)):
        state, decided_at, decided_by = "expired", row.expires_at, SYSTEM_REVIEWER
    return ApprovalRequest.model_validate(
        {
            "id": row.id,
            "state": state,
            "key": row.key,
            "agent": row.agent,
            "environment": row.environment,
            "run_id": row.run_id,
            "span_id": row.span_id,
            "kind": row.kind,
            "name": row.name,
            "arguments": row.arguments,
            "arguments_sha256": row.arguments_sha256,
            "arguments_valid": row.arguments_valid,
            "rule": row.rule,
            "policy_version": row.policy_version,
            "reason": row.reason,
            "on_expiry": row.on_expiry,
            "on_reject": row.on_reject,
            "created_at": row.created_at,
            "expires_at": row.expires_at,
            "escalated_at": row.escalated_at,
            "decided_at": decided_at,
            "decided_by": decided_by,
            "comment": row.comment,
            "edited_arguments": row.edited_arguments,
            "claimed_at": row.claimed_at,
            "claimed_by": row.claimed_by,
        }
    )


def snapshot_of(row: ApprovalRow) -> dict[str, Any]:
    """What the audit log keeps of a request, before and after a change."""
    return view_of(row).model_dump(mode="json", exclude={"arguments", "edited_arguments"}) | {
        "edited": row.edited_arguments is not None
    }


async def expire(session: AsyncSession, row: ApprovalRow, now: dt.datetime) -> bool:
    """Write ``row``'s expiry if it is overdue and no one wrote it first: audited (by the
    system), the revision bumped; whether this call wrote it (not committed)."""
    if not is_overdue(row, now):
        return False
    before = snapshot_of(row)
    written = await claim(
        session,
        row,
        ApprovalRow.state == "pending",
        state="expired",
        decided_at=row.expires_at,
        decided_by=SYSTEM_REVIEWER,
    )
    if written:
        await audit.record(
            session,
            row.org_id,
            audit.SYSTEM,
            "approval.expired",
            target_type="approval",
            target_id=row.id,
            before=before,
            after=snapshot_of(row),
        )
        await bump_revision(session, row.org_id)
    return written


async def bump_revision(session: AsyncSession, org_id: uuid.UUID) -> int:
    """Add one to the org's approvals revision in the current transaction (one statement, so
    concurrent decisions each get their own); the new revision."""
    table = ApprovalRevision.__table__
    assert isinstance(table, Table)
    insert = dialect_insert(session, table).values(org_id=org_id, revision=1)
    bumped = insert.on_conflict_do_update(
        index_elements=[table.c.org_id], set_={"revision": table.c.revision + 1}
    ).returning(table.c.revision)
    return int((await session.execute(bumped)).scalar_one())


async def approvals_version(session: AsyncSession, org_id: uuid.UUID) -> int:
    """The version of the org's ``approvals`` topic (see the module docstring)."""
    revision = await session.scalar(
        select(ApprovalRevision.revision).where(ApprovalRevision.org_id == org_id)
    )
    overdue = await session.scalar(
        select(func.count()).where(
            ApprovalRow.org_id == org_id,
            ApprovalRow.state == "pending",
            ApprovalRow.expires_at <= dt.datetime.now(dt.UTC),
        )
    )
    return int(revision or 0) * OVERDUE_SPAN + min(int(overdue or 0), OVERDUE_SPAN - 1)


async def approvals_feed(
    session: AsyncSession, org_id: uuid.UUID, size: int = DEFAULT_FEED_SIZE
) -> ApprovalFeed:
    """The org's requests decided most recently, newest first (the version read first)."""
    version = await approvals_version(session, org_id)
    now = dt.datetime.now(dt.UTC)
    decided = await session.scalars(
        select(ApprovalRow)
        .where(ApprovalRow.org_id == org_id, ApprovalRow.state != "pending")
        .order_by(ApprovalRow.decided_at.desc(), ApprovalRow.id.desc())
        .limit(size)
    )
    overdue = await session.scalars(
        select(ApprovalRow)
        .where(
            ApprovalRow.org_id == org_id,
            ApprovalRow.state == "pending",
            ApprovalRow.expires_at <= now,
        )
        .order_by(ApprovalRow.expires_at.desc(), ApprovalRow.id.desc())
        .limit(size)
    )
    views = [view_of(row, now) for row in [*decided, *overdue]]
    views.sort(key=lambda view: (view.decided_at or now, view.id), reverse=True)
    return ApprovalFeed(version=str(version), requests=tuple(views[:size]))


async def _snapshot(session: AsyncSession, org_id: uuid.UUID) -> tuple[int, str]:
    feed = await approvals_feed(session, org_id)
    return int(feed.version), feed.model_dump_json()


APPROVALS_TOPIC = StreamTopic(APPROVALS, snapshot=_snapshot, version=approvals_version)
"""The org's recently decided approval requests on its live stream (``GET /api/v1/stream``)."""
