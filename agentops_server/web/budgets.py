"""The budgets pages: every budget with its bars (spent, reserved, limit), its projection and
its kind; creating, changing and deleting one; a budget's alert history.

Each action is the service ``/api/v1/budgets`` calls (:func:`~agentops_server.services.budgets.
definitions.create_budget`, ``change_budget``, ``delete_budget``; figures from
:func:`~agentops_server.services.budgets.state.budget_state`; alerts from
:func:`~agentops_server.services.budgets.alerts.alert_history`): audited, pushed to the SDKs,
notified. The bars move live: ``live-budgets.js`` re-reads the list on the stream's
``budget_charged`` events and ``budgets`` topic.
"""

from __future__ import annotations

import dataclasses
import re
import uuid
from decimal import Decimal
from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import PathParameter
from sqlalchemy.ext.asyncio import AsyncSession

from agentops_sdk.contract.budgets import BudgetState
from agentops_server.api.v1.actors import actor_of
from agentops_server.auth.guards import requires
from agentops_server.backends.derived_work import DerivedWork
from agentops_server.refusals import Invalid, Refused
from agentops_server.security.permissions import Permission
from agentops_server.security.principal import Principal
from agentops_server.services.budgets import alerts, definitions
from agentops_server.services.budgets.definitions import (
    BudgetChange,
    BudgetInput,
    BudgetsChanged,
    BudgetView,
)
from agentops_server.services.budgets.state import Clock, budget_state
from agentops_server.services.governance.agents import ENVIRONMENTS
from agentops_server.services.governance.operators import operator_of
from agentops_server.web.forms import fields_of, validated
from agentops_server.web.pages import done, page

__all__ = ["BudgetPages"]

PATH = "/budgets"
SCOPE_KINDS = ("org", "environment", "team", "tag", "agent")
PERIODS = ("daily", "weekly", "monthly", "total")
UNKNOWN_COSTS = ("deny", "require_approval", "ceiling")
_LIST = re.compile(r"[\s,;]+")


@dataclasses.dataclass(frozen=True, slots=True)
class BudgetFigures:
    """A budget with its figures now, as the list draws it."""

    view: BudgetView
    state: BudgetState

    @property
    def committed_usd(self) -> Decimal:
        """Spent and held back by leases: what the window has used up."""
        return self.state.spent_usd + self.state.reserved_usd

    @property
    def over_projected(self) -> bool:
        """The window is projected to end past the limit."""
        projected = self.state.projected_usd
        return projected is not None and projected > self.view.budget.limit_usd


class BudgetPages(Controller):
    """``/budgets``: read with ``budgets:read``, change with ``budgets:write``."""

    @get(PATH, guards=[requires(Permission.BUDGETS_READ)])
    async def budgets_page(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        clock: NamedDependency[Clock],
    ) -> Response[Any]:
        """Every budget with its bars, and the form for a new one."""
        return await _render_list(request, db_session, clock)

    @post(PATH, guards=[requires(Permission.BUDGETS_WRITE)])
    async def create_budget(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        derived_work: NamedDependency[DerivedWork],
        budgets_changed: NamedDependency[BudgetsChanged],
        clock: NamedDependency[Clock],
    ) -> Response[Any]:
        """Create a budget."""
        fields = await fields_of(request)
        try:
            wanted = validated(BudgetInput, budget_body(fields))
            operator = await operator_of(db_session, request.auth, actor_of(request))
            await definitions.create_budget(db_session, operator, wanted, derived_work)
        except Refused as exc:
            return await _render_list(request, db_session, clock, exc, fields)
        await budgets_changed(operator.org_id)
        return done(PATH, "budget_created")

    @get(PATH + "/{budget_id:uuid}", guards=[requires(Permission.BUDGETS_READ)])
    async def budget_page(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        clock: NamedDependency[Clock],
        budget_id: Annotated[uuid.UUID, PathParameter()],
    ) -> Response[Any]:
        """One budget: its figures, its alert history, and the form that changes it."""
        return await _render_one(request, db_session, clock, budget_id)

    @post(PATH + "/{budget_id:uuid}", guards=[requires(Permission.BUDGETS_WRITE)])
    async def change_budget(
        self,
        *,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        derived_work: NamedDependency[DerivedWork],
        budgets_changed: NamedDependency[BudgetsChanged],
        clock: NamedDependency[Clock],
        budget_id: Annotated[uuid.UUID, PathParameter()],
    ) -> Response[Any]:
        """Change the budget: every field as the form sends it."""
        fields = await fields_of(request)
        try:
            change = validated(BudgetChange, budget_body(fields))
            operator = await operator_of(db_session, request.auth, actor_of(request))
            await definitions.change_budget(db_session, operator, budget_id, change, derived_work)
        except Refused as exc:
            return await _render_one(
                request, db_session, clock, budget_id, refusal=exc, form=fields
            )
        await budgets_changed(operator.org_id)
        return done(f"{PATH}/{budget_id}", "budget_changed")

    @post(PATH + "/{budget_id:uuid}/delete", guards=[requires(Permission.BUDGETS_WRITE)])
    async def delete_budget(
        self,
        *,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        derived_work: NamedDependency[DerivedWork],
        budgets_changed: NamedDependency[BudgetsChanged],
        clock: NamedDependency[Clock],
        budget_id: Annotated[uuid.UUID, PathParameter()],
    ) -> Response[Any]:
        """Delete the budget (its ledger and alerts stay, as history)."""
        try:
            operator = await operator_of(db_session, request.auth, actor_of(request))
            await definitions.delete_budget(db_session, operator, budget_id, derived_work)
        except Refused as exc:
            return await _render_one(request, db_session, clock, budget_id, refusal=exc)
        await budgets_changed(operator.org_id)
        return done(PATH, "budget_deleted")


def budget_body(fields: dict[str, str]) -> dict[str, Any]:
    """The JSON body ``/api/v1/budgets`` would take for the form's ``fields`` (every field:
    on a change, the form sends the whole budget)."""
    kind = fields.get("scope_kind", "org")
    hard = fields.get("hard", "hard") == "hard"
    return {
        "name": fields.get("name", ""),
        "scope": {"kind": kind, "value": None if kind == "org" else fields.get("scope_value")},
        "limit_usd": fields.get("limit_usd", ""),
        "limit_tokens": _number(fields.get("limit_tokens", ""), "token limit"),
        "period": fields.get("period", ""),
        "timezone": fields.get("timezone") or "UTC",
        "hard": hard,
        "thresholds": [
            _number(part, "threshold") for part in _LIST.split(fields.get("thresholds", "")) if part
        ],
        "on_unknown_cost": fields.get("on_unknown_cost", "deny"),
        "unknown_cost_ceiling": fields.get("unknown_cost_ceiling") or None,
        "fail_mode": fields.get("fail_mode") or ("closed" if hard else "open"),
        "auto_pause": fields.get("auto_pause") == "yes",
        "auto_resume": fields.get("auto_resume") == "yes",
        "notify": [part for part in _LIST.split(fields.get("notify", "")) if part],
    }


def _number(value: str, what: str) -> int | None:
    if not value.strip():
        return None
    try:
        return int(value)
    except ValueError:
        raise Invalid("invalid_form", f"The {what} {value!r} is not a whole number.") from None


def _form_of(view: BudgetView) -> dict[str, str]:
    """A budget as the form's fields (what the edit form starts from)."""
    budget = view.budget
    return {
        "name": budget.name,
        "scope_kind": budget.scope.kind,
        "scope_value": budget.scope.value or "",
        "limit_usd": str(budget.limit_usd),
        "limit_tokens": "" if budget.limit_tokens is None else str(budget.limit_tokens),
        "period": budget.period,
        "timezone": budget.timezone,
        "hard": "hard" if budget.hard else "soft",
        "thresholds": ", ".join(str(value) for value in budget.thresholds),
        "on_unknown_cost": budget.on_unknown_cost,
        "unknown_cost_ceiling": ""
        if budget.unknown_cost_ceiling is None
        else str(budget.unknown_cost_ceiling),
        "fail_mode": budget.fail_mode,
        "auto_pause": "yes" if budget.auto_pause else "",
        "auto_resume": "yes" if budget.auto_resume else "",
        "notify": ", ".join(view.notify),
    }


NEW_BUDGET = {"period": "monthly", "timezone": "UTC", "hard": "hard", "thresholds": "50, 80, 100"}
"""What the form for a new budget starts from."""


async def _figures(
    session: AsyncSession, org_id: uuid.UUID, view: BudgetView, clock: Clock
) -> BudgetFigures:
    row = await definitions.budget_row(session, org_id, view.budget.id)
    return BudgetFigures(view, await budget_state(session, row, clock()))


async def _render_list(
    request: Request[Principal, Principal, Any],
    db_session: AsyncSession,
    clock: Clock,
    refusal: Refused | None = None,
    form: dict[str, str] | None = None,
) -> Response[Any]:
    if refusal is not None:
        await db_session.rollback()
    org_id = request.auth.org_id
    found = await definitions.list_budgets(db_session, org_id)
    response = await page(
        request,
        db_session,
        "budgets.html",
        budgets=[await _figures(db_session, org_id, view, clock) for view in found.items],
        form=form or NEW_BUDGET,
        error=refusal,
        **_choices(),
    )
    response.status_code = refusal.status if refusal else 200
    return response


async def _render_one(
    request: Request[Principal, Principal, Any],
    db_session: AsyncSession,
    clock: Clock,
    budget_id: uuid.UUID,
    *,
    refusal: Refused | None = None,
    form: dict[str, str] | None = None,
) -> Response[Any]:
    if refusal is not None:
        await db_session.rollback()
    org_id = request.auth.org_id
    try:
        row = await definitions.budget_row(db_session, org_id, budget_id)
    except Refused as exc:
        return await _render_list(request, db_session, clock, exc)
    view = definitions.view_of(row)
    response = await page(
        request,
        db_session,
        "budget.html",
        item=BudgetFigures(view, await budget_state(db_session, row, clock())),
        alerts=(await alerts.alert_history(db_session, org_id, budget_id)).items,
        form=form or _form_of(view),
        error=refusal,
        **_choices(),
    )
    response.status_code = refusal.status if refusal else 200
    return response


def _choices() -> dict[str, Any]:
    return {
        "scope_kinds": SCOPE_KINDS,
        "periods": PERIODS,
        "unknown_costs": UNKNOWN_COSTS,
        "environments": ENVIRONMENTS,
    }
