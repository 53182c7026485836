"""Leases: parts of a budget's window granted to holders (SDK processes), atomically.

A grant locks the budget (:func:`~agentops_server.services.budgets.state.lock_budget`), then
reads what the window's ledger charged and what the other leases hold back, and grants at most
what is left: concurrent asks are serialised on the budget, so the sum granted never exceeds
the limit. A soft budget grants what is asked, past the limit (an alert follows: the
:data:`BUDGET_CHECK` notice). Asking again with a ``request_id`` already used answers its lease.

A holder reports what it spent so far (retries and reordering are harmless: the largest report
holds), renews the lease (``renew_ttl``), asks for more on it (``more_usd``, and ``more_tokens``
on a budget limiting tokens: granted as a new lease would be, possibly nothing) or releases it.
A lease ends with its window, and is ``expired`` once past ``expires_at`` (read so; written
when next touched).
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from decimal import Decimal
from typing import Final

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from agentops_sdk.contract.budgets import Lease, LeaseAsk, LeaseReport
from agentops_server.backends.derived_work import DerivedWork
from agentops_server.db.models import BudgetLease, BudgetRow
from agentops_server.refusals import Conflict, NotFound
from agentops_server.services.budgets.definitions import budget_row
from agentops_server.services.budgets.state import (
    Window,
    holds_of,
    lock_budget,
    plain,
    spent_in,
    utc_now,
    window_at,
)

__all__ = ["BUDGET_CHECK", "grant_lease", "lease_of", "outstanding_leases", "report_lease"]

logger = logging.getLogger("agentops_server.budgets")

BUDGET_CHECK: Final = "budgets.check"
"""The derived-work notice to check a budget's alerts now: ``{"org_id", "budget_ids"}``."""
_CENT: Final = Decimal("1e-10")


async def grant_lease(
    session: AsyncSession,
    org_id: uuid.UUID,
    budget_id: uuid.UUID,
    ask: LeaseAsk,
    derived: DerivedWork | None = None,
    *,
    now: dt.datetime | None = None,
) -> tuple[Lease, bool]:
    """Grant a lease on the budget at ``now`` (the system's time), or answer the one
    ``ask.request_id`` already has; the lease and whether it was made now. Commits.

    Refusals: ``budget_not_found``, ``budget_exhausted`` (a hard budget with nothing left),
    ``lease_request_reused`` (the request id names a lease of another budget).
    """
    await lock_budget(session, org_id, budget_id)
    row = await budget_row(session, org_id, budget_id)
    now = now or utc_now()
    existing = await session.scalar(
        select(BudgetLease).where(
            BudgetLease.org_id == org_id, BudgetLease.request_id == ask.request_id
        )
    )
    if existing is not None:
        answer, elsewhere = lease_of(existing, now), existing.budget_id != budget_id
        await session.rollback()  # (it expires the rows read: nothing is read from them after)
        if elsewhere:
            raise Conflict("lease_request_reused", "This request id asked for another budget.")
        return answer, False
    window = window_at(row, now)
    usd, tokens = await _grantable(session, row, window, now, ask)
    expires_at = now + dt.timedelta(seconds=ask.ttl)
    lease = BudgetLease(
        org_id=org_id,
        id=uuid.uuid4(),
        request_id=ask.request_id,
        budget_id=budget_id,
        holder=ask.holder,
        state="active",
        granted_usd=usd,
        granted_tokens=tokens,
        spent_usd=Decimal(0),
        window_start=window.start,
        window_end=window.end,
        expires_at=expires_at if window.end is None else min(expires_at, window.end),
        budget_version=row.version,
        created_at=now,
        updated_at=now,
    )
    session.add(lease)
    try:
        await session.commit()
    except IntegrityError:  # the same request id, granted meanwhile on another budget
        await session.rollback()
        raise Conflict(
            "lease_request_reused", "This request id asked for another budget."
        ) from None
    if not row.hard:
        await _check(derived, org_id, budget_id)
    return lease_of(lease, now), True


async def report_lease(
    session: AsyncSession,
    org_id: uuid.UUID,
    lease_id: uuid.UUID,
    report: LeaseReport,
    derived: DerivedWork | None = None,
    *,
    now: dt.datetime | None = None,
) -> Lease:
    """Record what the holder spent under the lease, and renew it, grow it or release it, at
    ``now`` (the system's time). Commits.

    Refusals: ``lease_not_found``, ``lease_ended`` (renewing or growing a lease that was
    released, expired or whose window ended).
    """
    found = await session.scalar(
        select(BudgetLease.budget_id).where(
            BudgetLease.org_id == org_id, BudgetLease.id == lease_id
        )
    )
    if found is None:
        raise NotFound("lease_not_found", f"This org has no lease {str(lease_id)!r}.")
    await lock_budget(session, org_id, found)
    lease = await session.get(BudgetLease, (org_id, lease_id), populate_existing=True)
    assert lease is not None  # leases are never deleted
    now = now or utc_now()
    state = lease_of(lease, now).state
    lease.state = state
    lease.spent_usd = max(lease.spent_usd, report.spent_usd.quantize(_CENT))
    if report.spent_tokens is not None:
        lease.spent_tokens = max(lease.spent_tokens or 0, report.spent_tokens)
    if report.release:
        lease.state = "released" if state == "active" else state
    elif any(ask is not None for ask in (report.renew_ttl, report.more_usd, report.more_tokens)):
        if state != "active":
            await session.rollback()
            raise Conflict("lease_ended", f"The lease is {state}: ask for a new one.")
        if report.more_usd is not None or report.more_tokens is not None:
            await _grow(session, lease, report, now)
        if report.renew_ttl is not None:
            renewed = now + dt.timedelta(seconds=report.renew_ttl)
            lease.expires_at = (
                renewed if lease.window_end is None else min(renewed, lease.window_end)
            )
    lease.updated_at = now
    await session.commit()
    await _check(derived, org_id, lease.budget_id)
    return lease_of(lease, now)


async def outstanding_leases(
    session: AsyncSession,
    org_id: uuid.UUID,
    budget_id: uuid.UUID,
    *,
    now: dt.datetime | None = None,
) -> list[Lease]:
    """The budget's leases active at ``now`` (the system's time), in its window then, oldest
    first: with the hub unreachable, at most these can still be spent past what the ledger
    shows."""
    row = await budget_row(session, org_id, budget_id)
    now = now or utc_now()
    window = window_at(row, now)
    in_window = (
        BudgetLease.window_start.is_(None)
        if window.start is None
        else BudgetLease.window_start == window.start
    )
    rows = await session.scalars(
        select(BudgetLease)
        .where(
            BudgetLease.org_id == org_id,
            BudgetLease.budget_id == budget_id,
            in_window,
            BudgetLease.state == "active",
            BudgetLease.expires_at > now,
        )
        .order_by(BudgetLease.created_at, BudgetLease.id)
    )
    return [lease_of(lease, now) for lease in rows]


def lease_of(lease: BudgetLease, now: dt.datetime) -> Lease:
    """A stored lease as it reads at ``now``."""
    state = lease.state
    if state == "active" and now >= lease.expires_at:
        state = "expired"
    return Lease(
        id=lease.id,
        budget_id=lease.budget_id,
        request_id=lease.request_id,
        holder=lease.holder,
        state=state,  # type: ignore[arg-type]
        granted_usd=plain(lease.granted_usd),
        granted_tokens=lease.granted_tokens,
        spent_usd=plain(lease.spent_usd),
        window_start=lease.window_start,
        window_end=lease.window_end,
        expires_at=lease.expires_at,
        budget_version=lease.budget_version,
    )


# -- helpers ---------------------------------------------------------------------------------------


async def _room(
    session: AsyncSession,
    row: BudgetRow,
    window: Window,
    now: dt.datetime,
    *,
    excluding: uuid.UUID | None = None,
) -> tuple[Decimal, int | None]:
    """What the budget (locked) has left in ``window`` once its ledger and its leases (but
    ``excluding``) are counted: USD, and tokens if it limits them."""
    # Holds first: a charge committed between the two reads (PostgreSQL reads each statement
    # afresh) is then counted twice, never missed, so the room is under-, never over-stated.
    holds = await holds_of(session, row.org_id, row.id, window, now, excluding=excluding)
    spent, spent_tokens = await spent_in(session, row.org_id, row.id, window)
    tokens = None if row.limit_tokens is None else row.limit_tokens - spent_tokens - holds.tokens
    return row.limit_usd - spent - holds.usd, tokens


async def _grantable(
    session: AsyncSession, row: BudgetRow, window: Window, now: dt.datetime, ask: LeaseAsk
) -> tuple[Decimal, int | None]:
    """What may be granted of ``ask`` now: all of it on a soft budget; at most what is left
    on a hard one (``budget_exhausted``: nothing, USD or tokens)."""
    usd = ask.amount_usd.quantize(_CENT)
    if not row.hard:
        return usd, ask.tokens if row.limit_tokens is not None else None
    left, left_tokens = await _room(session, row, window, now)
    tokens = None  # a lease holds back tokens only when asked to
    if left_tokens is not None and ask.tokens is not None:
        tokens = min(ask.tokens, left_tokens)
    if left <= 0 or (left_tokens is not None and left_tokens <= 0):
        refusal = Conflict(
            "budget_exhausted",
            f"Budget {row.name!r} has nothing left in this window.",
            remaining_usd=str(plain(max(left, Decimal(0)))),
            window_end=None if window.end is None else window.end.isoformat(),
        )
        await session.rollback()
        raise refusal
    return min(usd, left), tokens


async def _grow(
    session: AsyncSession, lease: BudgetLease, report: LeaseReport, now: dt.datetime
) -> None:
    """Grant the report's ``more_usd`` and ``more_tokens`` on ``lease`` as a new lease would be
    granted, as far as the budget has room (nothing left: the lease stays as it was)."""
    row = await budget_row(session, lease.org_id, lease.budget_id)
    window = window_at(row, now)
    if window.start != lease.window_start:
        return  # its window ended: it reads as expired
    held = await holds_of(session, row.org_id, row.id, window, now)
    others = await holds_of(session, row.org_id, row.id, window, now, excluding=lease.id)
    left: Decimal | None = None
    left_tokens: int | None = None
    if row.hard:
        left, left_tokens = await _room(session, row, window, now, excluding=lease.id)
    if report.more_usd is not None:
        own = held.usd - others.usd  # what the lease itself holds back now
        wanted = own + report.more_usd.quantize(_CENT)
        if left is not None:
            wanted = min(wanted, left)
        lease.granted_usd += max(Decimal(0), wanted - own)
    if report.more_tokens is not None and row.limit_tokens is not None:
        own_tokens = held.tokens - others.tokens
        wanted_tokens = own_tokens + report.more_tokens
        if left_tokens is not None:
            wanted_tokens = min(wanted_tokens, left_tokens)
        lease.granted_tokens = (lease.granted_tokens or 0) + max(0, wanted_tokens - own_tokens)


async def _check(derived: DerivedWork | None, org_id: uuid.UUID, budget_id: uuid.UUID) -> None:
    if derived is None:
        return
    try:
        await derived.enqueue(BUDGET_CHECK, {"org_id": str(org_id), "budget_ids": [str(budget_id)]})
    except Exception:
        logger.exception("budgets: the budget-check notice was not handed over")
