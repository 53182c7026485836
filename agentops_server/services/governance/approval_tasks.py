"""The derived work of approvals: telling reviewers of new requests and decisions, and
escalating requests left pending.

Notices (payload ``{"org_id", "approval_id"}``; a decision's adds ``state``):

- :data:`APPROVAL_REQUESTED`, after a new request commits: ``approval.requested`` is announced
  to the org's owners and admins and the team leads of the agent's team (in-app, email, and the
  webhooks subscribed to it, as every announcement: see
  :mod:`~agentops_server.services.notifications.announcements`);
- :data:`APPROVAL_DECIDED`, after a decision commits: ``approval.decided``, to the same people;
- :data:`APPROVAL_ESCALATION`, recorded with the request and due ``escalate_after`` seconds
  after it was made: if the request is still pending (and not overdue), its ``escalated_at``
  is set (audited ``approval.escalated``, by the system) and ``approval.escalated`` is
  announced to the owners and admins.

Each task may run twice (a retry): the announcement's key is the request and the event, so no
one is told twice, and the escalation is written once (a conditional update).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from agentops_server.backends.derived_work import DerivedWork
from agentops_server.db.engine import open_session
from agentops_server.db.models import Agent
from agentops_server.db.models import ApprovalRequest as ApprovalRow
from agentops_server.db.tenancy import tenant
from agentops_server.services import audit
from agentops_server.services.governance.approval_feed import is_overdue, snapshot_of, view_of
from agentops_server.services.notifications.announcements import Announcement, Notifier
from agentops_server.services.row_claims import claim

__all__ = [
    "APPROVAL_DECIDED",
    "APPROVAL_ESCALATION",
    "APPROVAL_REQUESTED",
    "ApprovalTasks",
]

APPROVAL_REQUESTED: Final = "governance.approval_requested"
APPROVAL_DECIDED: Final = "governance.approval_decided"
APPROVAL_ESCALATION: Final = "governance.approval_escalation_due"

_WORDS: Final = {
    "approved": "approved",
    "approved_with_edits": "approved with edits",
    "rejected": "rejected",
    "cancelled": "cancelled",
    "expired": "expired",
}


class ApprovalTasks:
    """The tasks of the approval notices, announcing through ``notifier``."""

    def __init__(self, engine: AsyncEngine, notifier: Notifier) -> None:
        self._engine = engine
        self._notifier = notifier

    def register(self, derived: DerivedWork) -> None:
        """Register the three tasks on ``derived``."""
        derived.register(APPROVAL_REQUESTED, self.requested)
        derived.register(APPROVAL_DECIDED, self.decided)
        derived.register(APPROVAL_ESCALATION, self.escalation_due)

    async def requested(self, notice: Mapping[str, Any]) -> None:
        """Announce ``approval.requested``."""
        found = await self._load(notice)
        if found is not None:
            row, team_id = found
            await self._announce(row, "approval.requested", team_id)

    async def decided(self, notice: Mapping[str, Any]) -> None:
        """Announce ``approval.decided``."""
        found = await self._load(notice)
        if found is not None:
            row, team_id = found
            await self._announce(row, "approval.decided", team_id)

    async def escalation_due(self, notice: Mapping[str, Any]) -> None:
        """Escalate the request if it is still pending; announce ``approval.escalated``."""
        org_id, approval_id = _ids(notice)
        now = dt.datetime.now(dt.UTC)
        with tenant(org_id=org_id):
            async with open_session(self._engine) as session:
                row = await session.get(ApprovalRow, (org_id, approval_id))
                if row is None or row.state != "pending" or is_overdue(row, now):
                    return
                if row.escalated_at is None:
                    before = snapshot_of(row)
                    if await claim(
                        session,
                        row,
                        ApprovalRow.escalated_at.is_(None),
                        ApprovalRow.state == "pending",
                        escalated_at=now,
                    ):
                        await audit.record(
                            session,
                            org_id,
                            audit.SYSTEM,
                            "approval.escalated",
                            target_type="approval",
                            target_id=row.id,
                            before=before,
                            after=snapshot_of(row),
                        )
                    await session.commit()
                    await session.refresh(row)
                if row.state != "pending":
                    return
        await self._announce(row, "approval.escalated", None)

    async def _load(self, notice: Mapping[str, Any]) -> tuple[ApprovalRow, uuid.UUID | None] | None:
        org_id, approval_id = _ids(notice)
        with tenant(org_id=org_id):
            async with open_session(self._engine) as session:
                row = await session.get(ApprovalRow, (org_id, approval_id))
                if row is None:
                    return None
                team_id = await session.scalar(
                    select(Agent.team_id).where(Agent.org_id == org_id, Agent.name == row.agent)
                )
                return row, team_id

    async def _announce(self, row: ApprovalRow, event: str, team_id: uuid.UUID | None) -> None:
        view = view_of(row)
        call = f"{view.kind} {view.name!r} of agent {view.agent!r} ({view.environment})"
        if event == "approval.requested":
            title = f"Approval needed: {view.name} ({view.agent})"
            body = f"The rule {view.rule!r} holds the {call} for a human's approval"
            body += f" until {view.expires_at.isoformat()}." + _why(view.reason)
        elif event == "approval.escalated":
            title = f"Approval still pending: {view.name} ({view.agent})"
            body = f"No one has decided the {call} held by the rule {view.rule!r} yet;"
            body += f" it expires at {view.expires_at.isoformat()}." + _why(view.reason)
        else:
            word = _WORDS.get(view.state, view.state)
            title = f"Approval {word}: {view.name} ({view.agent})"
            body = f"{view.decided_by or 'Someone'} {word} the {call}."
            body += f" Comment: {view.comment}" if view.comment else ""
        await self._notifier.announce(
            Announcement(
                org_id=row.org_id,
                key=uuid.uuid5(row.id, event),
                event=event,
                title=title[:200],
                body=body[:4000],
                data={
                    "approval_id": str(view.id),
                    "state": view.state,
                    "agent": view.agent,
                    "environment": view.environment,
                    "run_id": view.run_id,
                    "kind": view.kind,
                    "name": view.name,
                    "rule": view.rule,
                    "expires_at": view.expires_at.isoformat(),
                    "decided_by": view.decided_by,
                },
                team_ids=frozenset() if team_id is None else frozenset({team_id}),
            )
        )


def _ids(notice: Mapping[str, Any]) -> tuple[uuid.UUID, uuid.UUID]:
    return uuid.UUID(str(notice["org_id"])), uuid.UUID(str(notice["approval_id"]))


def _why(reason: str | None) -> str:
    return f" Reason: {reason}" if reason else ""
