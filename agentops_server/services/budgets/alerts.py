"""Budget alerts and auto-pause: the derived work that follows spend and budget changes.

After a commit charged a budget (or a soft budget granted a lease), its figures in the current
window are checked, and each of these raises an alert once per window (a row of
``budget_alerts``, unique per budget, window, threshold and kind: a task that runs twice, or two
tasks at once, raise it once):

- ``threshold``: spend reached one of the budget's thresholds (percent of the limit);
- ``soft_limit``: a soft budget's spend and leases passed its limit;
- ``projected``: at the pace so far the window would end past the limit (once a tenth of the
  window has passed).

Each alert is announced as ``budget.alert`` (in-app, pushed on the stream; mailed; webhooks
subscribed to it) to the org's owners and admins, the team leads of the teams in the budget's
scope and the members on its ``notify`` list.

Auto-pause: at 100% of a hard budget with ``auto_pause``, the agents in its scope are paused
(an emergency control at the budget's scope, set by ``system``, audited as every control), once
per window (an ``auto_pause`` row); with ``auto_resume``, a notice due at the window's end
(:data:`BUDGET_RESUME`) clears that control, if it is still the one the budget set.

Budget changes (:data:`~agentops_server.services.budgets.definitions.BUDGET_CHANGED`) are
announced as ``budget.changed``, in-app (and to subscribed webhooks), not mailed.

Each check also passes the budget's figures (:data:`BUDGET_CHARGED`, its
:class:`~agentops_sdk.contract.budgets.BudgetState`) on the org's live stream, for the budgets
page's bars; :func:`alert_history` reads back what was raised.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any, Final

from pydantic import BaseModel
from sqlalchemy import Table, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from agentops_sdk.contract.budgets import BudgetState
from agentops_server.backends.derived_work import DerivedWork
from agentops_server.backends.live import LiveUpdates
from agentops_server.db.engine import open_session
from agentops_server.db.models import BudgetAlert, BudgetRow, Control, Membership, User
from agentops_server.db.tenancy import tenant
from agentops_server.db.upsert import dialect_insert
from agentops_server.services.audit import SYSTEM
from agentops_server.services.budgets.charges import charge_spans
from agentops_server.services.budgets.definitions import BUDGET_CHANGED
from agentops_server.services.budgets.leases import BUDGET_CHECK
from agentops_server.services.budgets.state import (
    Clock,
    budget_state,
    plain,
    utc_now,
    window_at,
)
from agentops_server.services.governance import controls
from agentops_server.services.governance.controls import ControlRequest, ScopeRequest
from agentops_server.services.governance.operators import Operator
from agentops_server.services.notifications.announcements import (
    Announcement,
    Notifier,
    teams_touched,
)
from agentops_server.services.telemetry.ingest import EVENTS_COMMITTED
from agentops_server.values import Text

__all__ = [
    "BUDGET_CHARGED",
    "BUDGET_RESUME",
    "BudgetAlertList",
    "BudgetAlertView",
    "BudgetTasks",
    "alert_history",
    "alerts_due",
]

logger = logging.getLogger("agentops_server.budgets")

BUDGET_RESUME: Final = "budgets.resume_due"
"""Due at the end of the window a budget paused its agents in: ``{"org_id", "budget_id",
"control_id", "control_version"}``."""
BUDGET_CHARGED: Final = "budget_charged"
"""The passing event of the org's stream after a budget's figures were checked (charged spend,
a lease granted): its :class:`~agentops_sdk.contract.budgets.BudgetState` as JSON."""
_SYSTEM: Final = "system"
HISTORY_LIMIT: Final = 100


class BudgetAlertView(BaseModel):
    """One alert raised on a budget: its ``kind`` (``threshold``, ``soft_limit``,
    ``projected``, ``auto_pause``), the threshold (percent), the window it was raised in and
    the spend then."""

    id: uuid.UUID
    kind: str
    threshold: int
    window_start: dt.datetime
    spent_usd: Decimal
    raised_at: dt.datetime


class BudgetAlertList(BaseModel):
    """A budget's alerts, newest first."""

    items: list[BudgetAlertView]


async def alert_history(
    session: AsyncSession, org_id: uuid.UUID, budget_id: uuid.UUID, limit: int = HISTORY_LIMIT
) -> BudgetAlertList:
    """The alerts raised on the budget (also after it was deleted), newest first, ``limit`` at
    most."""
    rows = await session.scalars(
        select(BudgetAlert)
        .where(BudgetAlert.org_id == org_id, BudgetAlert.budget_id == budget_id)
        .order_by(BudgetAlert.raised_at.desc(), BudgetAlert.id)
        .limit(limit)
    )
    return BudgetAlertList(
        items=[
            BudgetAlertView(
                id=row.id,
                kind=row.kind,
                threshold=row.threshold,
                window_start=row.window_start,
                spent_usd=plain(row.spent_usd),
                raised_at=row.raised_at,
            )
            for row in rows
        ]
    )


class BudgetTasks:
    """The budgets' derived work, announcing through ``notifier``."""

    def __init__(
        self,
        engine: AsyncEngine,
        notifier: Notifier,
        derived: DerivedWork,
        clock: Clock = utc_now,
        live: LiveUpdates | None = None,
    ) -> None:
        self._engine = engine
        self._notifier = notifier
        self._derived = derived
        self._clock = clock
        self._live = live

    def register(self) -> None:
        """Register the tasks on the derived-work queue."""
        self._derived.register(EVENTS_COMMITTED, self.events_committed)
        self._derived.register(BUDGET_CHECK, self.check_notice)
        self._derived.register(BUDGET_CHANGED, self.changed)
        self._derived.register(BUDGET_RESUME, self.resume_due)

    async def events_committed(self, notice: Mapping[str, Any]) -> None:
        """Charge what a commit stored to the ledger, then check the budgets charged."""
        org_id = uuid.UUID(str(notice["org_id"]))
        span_ids = [uuid.UUID(value) for value in notice.get("span_ids", ())]
        run_ids = [uuid.UUID(value) for value in notice.get("run_ids", ())]
        with tenant(org_id=org_id):
            async with open_session(self._engine) as session:
                charged = await charge_spans(session, org_id, span_ids, run_ids)
                await session.commit()
        if charged:
            await self.check(org_id, charged)

    async def check_notice(self, notice: Mapping[str, Any]) -> None:
        """The task of :data:`BUDGET_CHECK`."""
        org_id = uuid.UUID(str(notice["org_id"]))
        await self.check(org_id, {uuid.UUID(value) for value in notice.get("budget_ids", ())})

    async def check(
        self, org_id: uuid.UUID, budget_ids: Iterable[uuid.UUID], now: dt.datetime | None = None
    ) -> None:
        """Raise the alerts (and the pause) due on ``budget_ids`` at ``now`` (the clock's
        time), each once."""
        now = now or self._clock()
        for budget_id in sorted(budget_ids):
            with tenant(org_id=org_id):
                async with open_session(self._engine) as session:
                    row = await session.get(BudgetRow, (org_id, budget_id))
                    if row is None:
                        continue  # deleted since
                    state = await budget_state(session, row, now)
                    raised = await _raise(session, row, alerts_due(row, state), state, now)
                    pause = row.hard and row.auto_pause and state.percent >= 100
                    paused = pause and bool(
                        await _raise(session, row, [("auto_pause", 100)], state, now)
                    )
                    await session.commit()
                    announcements = [await self._alert(session, row, state, *due) for due in raised]
            if self._live is not None:
                await self._live.announce(org_id, BUDGET_CHARGED, state.model_dump_json())
            for announcement in announcements:
                await self._notifier.announce(announcement)
            if paused:
                await self._pause(row, state)

    async def changed(self, notice: Mapping[str, Any]) -> None:
        """Announce ``budget.changed`` (in-app and webhooks)."""
        org_id = uuid.UUID(str(notice["org_id"]))
        with tenant(org_id=org_id):
            async with open_session(self._engine) as session:
                teams = await teams_touched(session, org_id, [notice.get("scope") or {}])
        action, name = str(notice.get("action")), str(notice.get("name"))
        await self._notifier.announce(
            Announcement(
                org_id=org_id,
                key=uuid.uuid5(uuid.NAMESPACE_URL, f"agentops:budget:{sorted(notice.items())}"),
                event="budget.changed",
                title=f"Budget {name} {action}"[:200],
                body=(
                    f"{notice.get('actor') or 'Someone'} {action} the budget {name} "
                    f"(limit ${notice.get('limit_usd')}"
                    + (
                        f", was ${notice.get('previous_limit_usd')})."
                        if action in {"raised", "lowered"}
                        else ")."
                    )
                )[:4000],
                data=dict(notice),
                team_ids=teams,
                email=False,
            )
        )

    async def resume_due(self, notice: Mapping[str, Any]) -> None:
        """Clear the pause a budget set, at the end of its window, unless someone changed that
        control since (its version moved) or cleared it."""
        org_id = uuid.UUID(str(notice["org_id"]))
        control_id = uuid.UUID(str(notice["control_id"]))
        with tenant(org_id=org_id):
            async with open_session(self._engine) as session:
                control = await session.get(Control, (org_id, control_id))
                if control is None or control.version != int(notice["control_version"]):
                    return
                await controls.clear_control(
                    session,
                    Operator(org_id, SYSTEM, _SYSTEM),
                    control_id,
                    f"budget {notice.get('name')}: a new window began",
                    self._derived,
                )

    async def _alert(
        self, session: AsyncSession, row: BudgetRow, state: BudgetState, kind: str, threshold: int
    ) -> Announcement:
        scope = {"kind": row.scope_kind, "value": row.scope_value or None}
        teams = await teams_touched(session, row.org_id, [scope])
        users = set(
            await session.scalars(
                select(User.id)
                .join(Membership, Membership.user_id == User.id)
                .where(Membership.org_id == row.org_id, User.email.in_(list(row.notify)))
            )
        )
        what = {
            "threshold": f"reached {threshold}% of its limit",
            "soft_limit": "passed its soft limit",
            "projected": "is projected to pass its limit this window",
        }[kind]
        window = state.window_start.isoformat() if state.window_start else "total"
        return Announcement(
            org_id=row.org_id,
            key=uuid.uuid5(
                uuid.NAMESPACE_URL, f"agentops:budget-alert:{row.id}:{window}:{kind}:{threshold}"
            ),
            event="budget.alert",
            title=f"Budget {row.name} {what}"[:200],
            body=(
                f"Budget {row.name} {what}: ${state.spent_usd:.2f} spent of ${row.limit_usd:.2f} "
                f"({state.percent:.1f}%), ${state.reserved_usd:.2f} reserved by leases."
            )[:4000],
            data={
                "budget_id": str(row.id),
                "name": row.name,
                "kind": kind,
                "threshold": threshold,
                "window_start": None if state.window_start is None else window,
                "spent_usd": str(state.spent_usd),
                "limit_usd": str(row.limit_usd),
                "percent": state.percent,
                "projected_usd": None if state.projected_usd is None else str(state.projected_usd),
            },
            team_ids=teams,
            user_ids=frozenset(users),
        )

    async def _pause(self, row: BudgetRow, state: BudgetState) -> None:
        """Pause the agents in the budget's scope (a control by ``system``); with
        ``auto_resume``, record the notice that lifts it when the window ends."""
        operator = Operator(row.org_id, SYSTEM, _SYSTEM)
        request = ControlRequest(
            scope=ScopeRequest(kind=row.scope_kind, value=Text(row.scope_value) or None),  # type: ignore[arg-type]
            state="paused",
            reason=Text(f"budget {row.name} reached its limit of ${row.limit_usd:.2f}"),
        )
        with tenant(org_id=row.org_id):
            async with open_session(self._engine) as session:
                try:
                    control = await controls.set_control(session, operator, request, self._derived)
                except Exception:  # its team deleted meanwhile, say: the alert still went out
                    logger.exception("budgets: budget %s could not pause its agents", row.id)
                    return
            if not (row.auto_resume and state.window_end is not None):
                return
            async with open_session(self._engine) as session:
                notice = await self._derived.record(
                    session,
                    BUDGET_RESUME,
                    {
                        "org_id": str(row.org_id),
                        "budget_id": str(row.id),
                        "name": row.name,
                        "control_id": str(control.id),
                        "control_version": control.version,
                    },
                    not_before=state.window_end,
                )
                await session.commit()
        await self._derived.dispatch(notice)


def alerts_due(row: BudgetRow, state: BudgetState) -> list[tuple[str, int]]:
    """The alerts budget ``row``'s figures call for (raised or not yet): ``(kind, threshold)``."""
    due = [("threshold", threshold) for threshold in row.thresholds if state.percent >= threshold]
    if not row.hard and state.spent_usd + state.reserved_usd > row.limit_usd:
        due.append(("soft_limit", 100))
    if (
        state.projected_usd is not None
        and state.projected_usd > row.limit_usd
        and state.projected_usd != state.spent_usd  # projected at all (a tenth of it passed)
    ):
        due.append(("projected", 100))
    return due


async def _raise(
    session: AsyncSession,
    row: BudgetRow,
    due: list[tuple[str, int]],
    state: BudgetState,
    now: dt.datetime,
) -> list[tuple[str, int]]:
    """Record the alerts ``due`` not yet raised in this window; those recorded now."""
    if not due:
        return []
    table = BudgetAlert.__table__
    assert isinstance(table, Table)
    window = window_at(row, now)
    raised = []
    for kind, threshold in due:
        statement = (
            dialect_insert(session, table)
            .values(
                org_id=row.org_id,
                id=uuid.uuid4(),
                budget_id=row.id,
                window_start=window.key,
                threshold=threshold,
                kind=kind,
                spent_usd=Decimal(state.spent_usd),
                raised_at=now,
            )
            .on_conflict_do_nothing(
                index_elements=["org_id", "budget_id", "window_start", "threshold", "kind"]
            )
            .returning(table.c.id)
        )
        if (await session.execute(statement)).scalar() is not None:
            raised.append((kind, threshold))
    return raised
