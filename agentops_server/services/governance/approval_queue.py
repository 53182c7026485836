"""The approval queue: listing an org's approval requests with filters, newest first.

Requests are listed as they read now (:func:`~agentops_server.services.governance.
approval_feed.view_of`): the ``pending`` filter leaves out requests past their expiry, and
``expired`` takes them in. Pages use keyset pagination on ``(created_at, id)``
(:mod:`~agentops_server.services.pagination`), so requests made meanwhile never shift a page.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from typing import Final

from pydantic import BaseModel, ConfigDict
from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from agentops_sdk.contract.approvals import ApprovalRequest, ApprovalState
from agentops_server.db.models import Agent, Team
from agentops_server.db.models import ApprovalRequest as ApprovalRow
from agentops_server.refusals import Invalid
from agentops_server.services.governance.approval_feed import view_of
from agentops_server.services.pagination import newest_first

__all__ = ["MAX_PAGE_SIZE", "ApprovalFilter", "ApprovalPage", "list_approvals"]

MAX_PAGE_SIZE: Final = 200


class ApprovalPage(BaseModel):
    """One page of requests, newest first; pass ``next_cursor`` back for the next."""

    model_config = ConfigDict(frozen=True)

    items: list[ApprovalRequest]
    next_cursor: str | None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ApprovalFilter:
    """Which requests to list. ``state`` as read (``pending`` excludes overdue requests,
    ``expired`` includes them); ``team`` by name (its agents in the registry); times a half-open
    range on ``created_at``: ``created_after <= created_at < created_before``."""

    state: ApprovalState | None = None
    agent: str | None = None
    team: str | None = None
    rule: str | None = None
    run_id: str | None = None
    created_after: dt.datetime | None = None
    created_before: dt.datetime | None = None


async def list_approvals(
    session: AsyncSession,
    org_id: uuid.UUID,
    where: ApprovalFilter,
    *,
    limit: int = 50,
    cursor: str | None = None,
) -> ApprovalPage:
    """The org's requests matching ``where``, newest first, ``limit`` (1 to 200) at a time.

    Refusals: ``invalid_limit``, ``validation_error`` (a cursor this hub did not make).
    """
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise Invalid("invalid_limit", f"limit is between 1 and {MAX_PAGE_SIZE}.")
    now = dt.datetime.now(dt.UTC)
    rows, next_cursor = await newest_first(
        session,
        ApprovalRow,
        (ApprovalRow.created_at, ApprovalRow.id),
        _conditions(org_id, where, now),
        limit=limit,
        cursor=cursor,
    )
    return ApprovalPage(items=[view_of(row, now) for row in rows], next_cursor=next_cursor)


def _conditions(
    org_id: uuid.UUID, where: ApprovalFilter, now: dt.datetime
) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = [ApprovalRow.org_id == org_id]
    if where.state == "pending":
        conditions += [ApprovalRow.state == "pending", ApprovalRow.expires_at > now]
    elif where.state == "expired":
        overdue = (ApprovalRow.state == "pending") & (ApprovalRow.expires_at <= now)
        conditions.append(or_(ApprovalRow.state == "expired", overdue))
    elif where.state is not None:
        conditions.append(ApprovalRow.state == where.state)
    if where.agent is not None:
        conditions.append(ApprovalRow.agent == where.agent)
    if where.team is not None:
        team_agents = (
            select(Agent.name)
            .join(Team, (Team.org_id == Agent.org_id) & (Team.id == Agent.team_id))
            .where(Agent.org_id == org_id, Team.name == where.team)
        )
        conditions.append(ApprovalRow.agent.in_(team_agents))
    if where.rule is not None:
        conditions.append(ApprovalRow.rule == where.rule)
    if where.run_id is not None:
        conditions.append(ApprovalRow.run_id == where.run_id)
    if where.created_after is not None:
        conditions.append(ApprovalRow.created_at >= where.created_after)
    if where.created_before is not None:
        conditions.append(ApprovalRow.created_at < where.created_before)
    return conditions
