"""An org's budgets: creating, changing and deleting them, and the
:class:`~agentops_sdk.contract.budgets.BudgetSet` its SDKs read.

Owners, admins and ``admin`` keys change any budget; team leads those scoped to their teams or
their teams' agents (``not_your_team`` beyond: the org, environments and tags are the whole
org's), as for controls. Every change, in one transaction, is audited (``budget.created``,
``budget.changed``, ``budget.deleted``; before and after), bumps the budget's own ``version``
and the org's budget-set version; after the commit, :data:`BUDGET_CHANGED` is handed to derived
work (an in-app notice: created, raised, lowered, changed, deleted). Pushing the new set to the
org's SDKs is the caller's (``budgets_changed``).
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Annotated, Any, Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec
from pydantic import BaseModel
from sqlalchemy import Table, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from agentops_sdk.contract.budgets import Budget, BudgetPeriod, BudgetSet
from agentops_sdk.contract.controls import ControlScope
from agentops_server.backends.derived_work import DerivedWork
from agentops_server.backends.live import StreamTopic
from agentops_server.db.models import BudgetRow, BudgetVersion, Membership, User
from agentops_server.db.upsert import dialect_insert
from agentops_server.refusals import Conflict, Invalid, NotFound
from agentops_server.services import audit
from agentops_server.services.budgets.prices import org_prices
from agentops_server.services.budgets.state import plain
from agentops_server.services.governance.controls import ScopeRequest, checked_scope
from agentops_server.services.governance.operators import Operator
from agentops_server.values import Text

__all__ = [
    "BUDGETS",
    "BUDGETS_TOPIC",
    "BUDGET_CHANGED",
    "BudgetChange",
    "BudgetInput",
    "BudgetList",
    "BudgetView",
    "BudgetsChanged",
    "budget_of",
    "budget_row",
    "budget_version",
    "change_budget",
    "check_reach",
    "create_budget",
    "current_etag",
    "delete_budget",
    "list_budgets",
    "load_budget_set",
    "notify_change",
    "prices_changed",
    "view_of",
]

logger = logging.getLogger("agentops_server.budgets")

BUDGET_CHANGED: Final = "budgets.changed"
"""The derived-work notice of a committed change: ``{"org_id", "budget_id", "name", "action",
"actor", "limit_usd", "previous_limit_usd", "scope", "changed_at"}``."""

BudgetsChanged = Callable[[uuid.UUID], Awaitable[None]]
"""Told an org's id after a committed change of its budgets (the push to its SDKs)."""

UnknownCost = Literal["deny", "require_approval", "ceiling"]
Usd = Annotated[Decimal, msgspec.Meta(description="USD, at most 1e9 (a string or number).")]
_MAX_USD: Final = Decimal(1_000_000_000)
Threshold = Annotated[int, msgspec.Meta(ge=1, le=1000)]
Email = Annotated[str, msgspec.Meta(min_length=3, max_length=320)]


class BudgetInput(msgspec.Struct, forbid_unknown_fields=True):
    """A new budget. ``fail_mode`` defaults to ``closed`` for a hard budget, ``open`` for a
    soft one; ``notify``: emails of members who get its alerts (besides owners and admins)."""

    name: Text
    scope: ScopeRequest
    limit_usd: Usd
    period: BudgetPeriod
    limit_tokens: Annotated[int, msgspec.Meta(ge=0)] | None = None
    timezone: Text = Text("UTC")
    hard: bool = True
    thresholds: Annotated[list[Threshold], msgspec.Meta(max_length=20)] = msgspec.field(
        default_factory=lambda: [50, 80, 100]
    )
    on_unknown_cost: UnknownCost = "deny"
    unknown_cost_ceiling: Usd | None = None
    fail_mode: Literal["closed", "open"] | None = None
    auto_pause: bool = False
    auto_resume: bool = False
    notify: Annotated[list[Email], msgspec.Meta(max_length=50)] = msgspec.field(
        default_factory=list
    )


class BudgetChange(msgspec.Struct, forbid_unknown_fields=True):
    """Change a budget: whatever is given (``limit_tokens``/``unknown_cost_ceiling`` null:
    none)."""

    name: Text | msgspec.UnsetType = msgspec.UNSET
    scope: ScopeRequest | msgspec.UnsetType = msgspec.UNSET
    limit_usd: Usd | msgspec.UnsetType = msgspec.UNSET
    period: BudgetPeriod | msgspec.UnsetType = msgspec.UNSET
    limit_tokens: Annotated[int, msgspec.Meta(ge=0)] | msgspec.UnsetType | None = msgspec.UNSET
    timezone: Text | msgspec.UnsetType = msgspec.UNSET
    hard: bool | msgspec.UnsetType = msgspec.UNSET
    thresholds: Annotated[list[Threshold], msgspec.Meta(max_length=20)] | msgspec.UnsetType = (
        msgspec.UNSET
    )
    on_unknown_cost: UnknownCost | msgspec.UnsetType = msgspec.UNSET
    unknown_cost_ceiling: Usd | msgspec.UnsetType | None = msgspec.UNSET
    fail_mode: Literal["closed", "open"] | msgspec.UnsetType = msgspec.UNSET
    auto_pause: bool | msgspec.UnsetType = msgspec.UNSET
    auto_resume: bool | msgspec.UnsetType = msgspec.UNSET
    notify: Annotated[list[Email], msgspec.Meta(max_length=50)] | msgspec.UnsetType = msgspec.UNSET


class BudgetView(BaseModel):
    """A budget as operators read it: the SDK's fields, whom it notifies, and when it was made
    and last changed."""

    budget: Budget
    notify: list[str]
    created_at: dt.datetime
    updated_at: dt.datetime


class BudgetList(BaseModel):
    """The org's budgets, by name."""

    items: list[BudgetView]


_FIELDS: Final = (
    "name",
    "limit_usd",
    "limit_tokens",
    "period",
    "timezone",
    "hard",
    "thresholds",
    "on_unknown_cost",
    "unknown_cost_ceiling",
    "fail_mode",
    "auto_pause",
    "auto_resume",
    "notify",
)


async def create_budget(
    session: AsyncSession,
    operator: Operator,
    request: BudgetInput,
    derived: DerivedWork | None = None,
) -> BudgetView:
    """Add a budget; audit; bump the set's version; commit; notify.

    Refusals: those of :func:`checked_scope` (``invalid_scope``, ``not_your_team``,
    ``team_not_found``, ``agent_not_found``), ``invalid_budget``, ``budget_name_taken``.
    """
    now = dt.datetime.now(dt.UTC)
    scope = await _scope(session, operator, request.scope)
    row = BudgetRow(
        org_id=operator.org_id,
        id=uuid.uuid4(),
        scope_kind=scope.kind,
        scope_value=scope.value or "",
        version=1,
        created_at=now,
        updated_at=now,
    )
    values = {name: getattr(request, name) for name in _FIELDS}
    if values["fail_mode"] is None:
        values["fail_mode"] = "closed" if request.hard else "open"
    await _apply(session, operator.org_id, row, values)
    session.add(row)
    await _record(session, operator, "budget.created", row, None)
    await _commit(session)
    await notify_change(derived, operator, row, "created", None)
    return view_of(row)


async def change_budget(
    session: AsyncSession,
    operator: Operator,
    budget_id: uuid.UUID,
    change: BudgetChange,
    derived: DerivedWork | None = None,
) -> BudgetView:
    """Change a budget (the operator must reach its scope, old and new); audit; bump its
    version and the set's; commit; notify. Refusals: ``budget_not_found``, those of
    :func:`create_budget`."""
    row = await budget_row(session, operator.org_id, budget_id)
    await check_reach(session, operator, row)
    if not isinstance(change.scope, msgspec.UnsetType):
        scope = await _scope(session, operator, change.scope)
        row.scope_kind, row.scope_value = scope.kind, scope.value or ""
    before = _snapshot(row)
    previous_limit = row.limit_usd
    values = {
        name: getattr(change, name)
        for name in _FIELDS
        if not isinstance(getattr(change, name), msgspec.UnsetType)
    }
    await _apply(session, operator.org_id, row, values)
    row.version += 1
    row.updated_at = dt.datetime.now(dt.UTC)
    await _record(session, operator, "budget.changed", row, before)
    await _commit(session)
    action = (
        "raised"
        if row.limit_usd > previous_limit
        else "lowered"
        if row.limit_usd < previous_limit
        else "changed"
    )
    await notify_change(derived, operator, row, action, previous_limit)
    return view_of(row)


async def delete_budget(
    session: AsyncSession,
    operator: Operator,
    budget_id: uuid.UUID,
    derived: DerivedWork | None = None,
) -> None:
    """Delete a budget (its ledger, leases and alerts stay, as history); audit; bump the set's
    version; commit; notify. Refusals: ``budget_not_found``, ``not_your_team``."""
    row = await budget_row(session, operator.org_id, budget_id)
    await check_reach(session, operator, row)
    before = _snapshot(row)
    await session.delete(row)
    await audit.record(
        session,
        operator.org_id,
        operator.audit,
        "budget.deleted",
        target_type="budget",
        target_id=row.id,
        before=before,
    )
    await _bump(session, operator.org_id)
    await _commit(session)
    await notify_change(derived, operator, row, "deleted", row.limit_usd)


async def list_budgets(session: AsyncSession, org_id: uuid.UUID) -> BudgetList:
    """The org's budgets, by name."""
    rows = await session.scalars(
        select(BudgetRow).where(BudgetRow.org_id == org_id).order_by(BudgetRow.name)
    )
    return BudgetList(items=[view_of(row) for row in rows])


async def budget_row(session: AsyncSession, org_id: uuid.UUID, budget_id: uuid.UUID) -> BudgetRow:
    """The budget ``budget_id`` of the org (``budget_not_found``)."""
    row = await session.get(BudgetRow, (org_id, budget_id))
    if row is None:
        raise NotFound("budget_not_found", f"This org has no budget {str(budget_id)!r}.")
    return row


async def budget_version(session: AsyncSession, org_id: uuid.UUID) -> int:
    """The org's budget-set version (0: no budget was ever changed)."""
    version = await session.scalar(
        select(BudgetVersion.version).where(BudgetVersion.org_id == org_id)
    )
    return int(version or 0)


async def load_budget_set(session: AsyncSession, org_id: uuid.UUID) -> BudgetSet:
    """The org's budgets as its SDKs read them, and its own prices, with the version read first
    (a set read so is never older than its version)."""
    version = await budget_version(session, org_id)
    rows = await session.scalars(
        select(BudgetRow).where(BudgetRow.org_id == org_id).order_by(BudgetRow.name)
    )
    budgets = tuple(budget_of(row) for row in rows)
    return BudgetSet(
        org_id=org_id,
        version=version,
        budgets=budgets,
        prices=await org_prices(session, org_id),
        generated_at=dt.datetime.now(dt.UTC),
    )


async def prices_changed(session: AsyncSession, org_id: uuid.UUID) -> None:
    """The org's own prices change in this transaction: its budget set's version grows with
    them (its SDKs reserve at those prices); the caller announces it (``budgets_changed``)."""
    await _bump(session, org_id)


async def current_etag(session: AsyncSession, org_id: uuid.UUID) -> str:
    """The ETag of the org's budget set as it stands, from its version alone."""
    version = await budget_version(session, org_id)
    return BudgetSet(org_id=org_id, version=version, generated_at=dt.datetime.now(dt.UTC)).etag


async def _budgets_snapshot(session: AsyncSession, org_id: uuid.UUID) -> tuple[int, str]:
    found = await load_budget_set(session, org_id)
    return found.version, found.model_dump_json()


BUDGETS: Final = "budgets"
BUDGETS_TOPIC = StreamTopic(BUDGETS, snapshot=_budgets_snapshot, version=budget_version)
"""The org's budget set on its live stream (``GET /api/v1/stream``), refreshed after each
committed change and found by the version watch otherwise."""


def budget_of(row: BudgetRow) -> Budget:
    """A stored budget as the SDK reads it."""
    return Budget(
        id=row.id,
        name=row.name,
        scope=ControlScope(kind=row.scope_kind, value=row.scope_value or None),  # type: ignore[arg-type]
        limit_usd=plain(row.limit_usd),
        limit_tokens=row.limit_tokens,
        period=row.period,  # type: ignore[arg-type]
        timezone=row.timezone,
        hard=row.hard,
        thresholds=tuple(row.thresholds),
        on_unknown_cost=row.on_unknown_cost,  # type: ignore[arg-type]
        unknown_cost_ceiling=None
        if row.unknown_cost_ceiling is None
        else plain(row.unknown_cost_ceiling),
        fail_mode=row.fail_mode,  # type: ignore[arg-type]
        auto_pause=row.auto_pause,
        auto_resume=row.auto_resume,
        version=row.version,
    )


def view_of(row: BudgetRow) -> BudgetView:
    """A stored budget as operators read it."""
    return BudgetView(
        budget=budget_of(row),
        notify=list(row.notify),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


async def check_reach(session: AsyncSession, operator: Operator, row: BudgetRow) -> None:
    """Refuse (``not_your_team``) an operator limited to teams that the budget's scope is
    beyond."""
    await _scope(session, operator, _scope_of(row))


async def notify_change(
    derived: DerivedWork | None,
    operator: Operator,
    row: BudgetRow,
    action: str,
    previous: Decimal | None,
) -> None:
    """Hand :data:`BUDGET_CHANGED` over for a committed change; the change is committed
    whatever happens to the notice."""
    if derived is None:
        return
    try:
        await derived.enqueue(BUDGET_CHANGED, _notice(operator, row, action, previous))
    except Exception:
        logger.exception("budgets: the budget-changed notice was not handed over")


# -- helpers ---------------------------------------------------------------------------------------


async def _scope(session: AsyncSession, operator: Operator, scope: ScopeRequest) -> ControlScope:
    if scope.kind == "run":
        raise Invalid(
            "invalid_scope",
            "A budget applies to the org, an environment, a team, a "
            "tag or an agent; not to one run.",
        )
    return await checked_scope(session, operator, scope)


def _scope_of(row: BudgetRow) -> ScopeRequest:
    return ScopeRequest(kind=row.scope_kind, value=Text(row.scope_value) or None)  # type: ignore[arg-type]


async def _apply(
    session: AsyncSession, org_id: uuid.UUID, row: BudgetRow, values: dict[str, Any]
) -> None:
    """Set ``values`` on ``row``, checked together with what the row keeps; bump the set."""
    for name, value in values.items():
        setattr(row, name, value)
    row.name = row.name.strip()
    if not 1 <= len(row.name) <= 256:
        raise Invalid("invalid_budget", "A budget's name is 1 to 256 characters.")
    try:
        ZoneInfo(row.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise Invalid("invalid_budget", f"{row.timezone!r} is not an IANA time zone.") from None
    row.limit_usd = _money(row.limit_usd)
    if row.unknown_cost_ceiling is not None:
        row.unknown_cost_ceiling = _money(row.unknown_cost_ceiling)
    if row.on_unknown_cost == "ceiling" and not row.unknown_cost_ceiling:
        raise Invalid("invalid_budget", "`on_unknown_cost: ceiling` needs `unknown_cost_ceiling`.")
    if row.auto_pause and not row.hard:
        raise Invalid("invalid_budget", "Only a hard budget pauses its agents (`auto_pause`).")
    if row.auto_resume and not row.auto_pause:
        raise Invalid("invalid_budget", "`auto_resume` lifts an `auto_pause`: set both.")
    row.thresholds = sorted(set(row.thresholds))
    if "notify" in values:
        row.notify = await _members(session, org_id, row.notify)
    await _bump(session, org_id)


async def _members(session: AsyncSession, org_id: uuid.UUID, emails: list[str]) -> list[str]:
    """``emails``, each that of a member of the org (``invalid_budget`` otherwise)."""
    wanted = sorted({email.strip().lower() for email in emails})
    if not wanted:
        return []
    found = set(
        await session.scalars(
            select(User.email)
            .join(Membership, Membership.user_id == User.id)
            .where(Membership.org_id == org_id, User.email.in_(wanted))
        )
    )
    missing = [email for email in wanted if email not in found]
    if missing:
        raise Invalid("invalid_budget", f"Not members of this org: {', '.join(missing)}.")
    return wanted


def _money(value: Decimal) -> Decimal:
    if not value.is_finite() or not 0 <= value <= _MAX_USD:
        raise Invalid("invalid_budget", "An amount in USD is from 0 to 1,000,000,000.")
    return value.quantize(Decimal("1e-10"))


async def _bump(session: AsyncSession, org_id: uuid.UUID) -> None:
    table = BudgetVersion.__table__
    assert isinstance(table, Table)
    insert = dialect_insert(session, table).values(org_id=org_id, version=1)
    await session.execute(
        insert.on_conflict_do_update(
            index_elements=[table.c.org_id], set_={"version": table.c.version + 1}
        )
    )


async def _record(
    session: AsyncSession,
    operator: Operator,
    action: str,
    row: BudgetRow,
    before: dict[str, Any] | None,
) -> None:
    await audit.record(
        session,
        operator.org_id,
        operator.audit,
        action,
        target_type="budget",
        target_id=row.id,
        before=before,
        after=_snapshot(row),
    )


def _snapshot(row: BudgetRow) -> dict[str, Any]:
    snapshot = {name: getattr(row, name) for name in _FIELDS}
    snapshot["limit_usd"] = str(row.limit_usd)
    ceiling = row.unknown_cost_ceiling
    snapshot["unknown_cost_ceiling"] = None if ceiling is None else str(ceiling)
    snapshot["thresholds"], snapshot["notify"] = list(row.thresholds), list(row.notify)
    snapshot["scope"] = {"kind": row.scope_kind, "value": row.scope_value or None}
    snapshot["version"] = row.version
    return snapshot


def _notice(
    operator: Operator, row: BudgetRow, action: str, previous: Decimal | None
) -> dict[str, Any]:
    return {
        "org_id": str(operator.org_id),
        "budget_id": str(row.id),
        "name": row.name,
        "action": action,
        "actor": operator.name,
        "limit_usd": str(row.limit_usd),
        "previous_limit_usd": None if previous is None else str(previous),
        "scope": {"kind": row.scope_kind, "value": row.scope_value or None},
        "changed_at": dt.datetime.now(dt.UTC).isoformat(),
    }


async def _commit(session: AsyncSession) -> None:
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        raise Conflict("budget_name_taken", "This org already has a budget of that name.") from None
