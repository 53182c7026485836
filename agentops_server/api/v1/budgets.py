"""``/api/v1/budgets``: the org's budgets, their state, and the leases its SDKs spend from (see
docs/budgets.md).

``GET /api/v1/budgets/effective`` answers the org's
:class:`~agentops_sdk.contract.budgets.BudgetSet` with its ``ETag``, or ``304`` to a matching
``If-None-Match`` (an SDK polls it with its ingest key). Leases are asked for with
``POST /api/v1/budgets/{budget_id}/leases`` and reported on with
``POST /api/v1/budgets/leases/{lease_id}/report`` (permission ``budgets:lease``, which the
``ingest`` key scope holds).
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, delete, get, patch, post
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import JSONBody, PathParameter
from sqlalchemy.ext.asyncio import AsyncSession

from agentops_sdk.contract.budgets import BudgetSet, BudgetState, Lease, LeaseAsk, LeaseReport
from agentops_server.api.headers import etag_matches
from agentops_server.api.problems import JSON_BODY_LIMIT, problems
from agentops_server.api.v1.actors import actor_of
from agentops_server.auth.guards import requires
from agentops_server.backends.derived_work import DerivedWork
from agentops_server.refusals import Conflict, Forbidden, Invalid, NotFound
from agentops_server.security.permissions import Permission
from agentops_server.security.principal import Principal
from agentops_server.services.budgets import alerts, charges, definitions, leases
from agentops_server.services.budgets.definitions import (
    BudgetChange,
    BudgetInput,
    BudgetList,
    BudgetsChanged,
    BudgetView,
)
from agentops_server.services.budgets.state import Clock, budget_state
from agentops_server.services.governance.operators import operator_of
from agentops_server.values import Text

__all__ = ["BudgetController"]

BudgetId = Annotated[str, PathParameter(description="The budget's id (a UUID).")]
LeaseId = Annotated[str, PathParameter(description="The lease's id (a UUID).")]

BUDGET_NOT_FOUND = NotFound("budget_not_found", "no such budget in this org")
LEASE_NOT_FOUND = NotFound("lease_not_found", "no such lease in this org")
WRITE_REFUSALS = (
    Invalid("invalid_scope", "a `run` scope, no value for `org`, a value for the others"),
    Invalid(
        "invalid_budget",
        "an empty name, an unknown time zone, `ceiling` without `unknown_cost_ceiling`, "
        "`auto_pause` on a soft budget, `auto_resume` without `auto_pause`, or a `notify` "
        "address that is not a member's",
    ),
    Forbidden(
        "not_your_team",
        "a team lead's budget outside their teams and their agents (the org, an environment "
        "or a tag included)",
    ),
    NotFound("team_not_found", "a team scope names no team of the org"),
    NotFound("agent_not_found", "a team lead's agent scope names no agent of the org"),
    Conflict("budget_name_taken", "the org has a budget of that name"),
)


class BudgetReset(msgspec.Struct, forbid_unknown_fields=True):
    """Why a budget's window is reset."""

    reason: Text


class BudgetController(Controller):
    """Budgets (``budgets:read``, ``budgets:write``) and their leases (``budgets:lease``).
    Every change is audited, bumps the org's budget-set version, is pushed to its SDKs and
    notified in-app."""

    path = "/budgets"
    tags = ("budgets",)
    request_max_body_size = JSON_BODY_LIMIT

    @get("/", guards=[requires(Permission.BUDGETS_READ)], summary="The org's budgets")
    async def list_budgets(
        self, request: Request[Principal, Principal, Any], db_session: NamedDependency[AsyncSession]
    ) -> BudgetList:
        """Every budget of the org, by name, with whom it notifies."""
        return await definitions.list_budgets(db_session, request.auth.org_id)

    @post(
        "/",
        guards=[requires(Permission.BUDGETS_WRITE)],
        summary="Create a budget",
        description=(
            "A limit in USD (and optionally tokens) over a `period` (`daily`, `weekly`, "
            "`monthly`: calendar windows in `timezone`; or `total`) at a `scope` (`org`, "
            "`environment`, `team`, `tag`, `agent`), hard or soft, with alert `thresholds` "
            "(percent; default 50, 80, 100). Audited as `budget.created`."
        ),
        responses=problems(*WRITE_REFUSALS),
    )
    async def create_budget(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        derived_work: NamedDependency[DerivedWork],
        budgets_changed: NamedDependency[BudgetsChanged],
        data: JSONBody[BudgetInput],
    ) -> BudgetView:
        """Create a budget."""
        operator = await operator_of(db_session, request.auth, actor_of(request))
        made = await definitions.create_budget(db_session, operator, data, derived_work)
        await budgets_changed(operator.org_id)
        return made

    @get(
        "/effective",
        guards=[requires(Permission.BUDGETS_READ)],
        summary="The org's budgets, as its SDKs read them",
        responses={
            304: ResponseSpec(
                None, description="Not modified: `If-None-Match` holds the current ETag."
            )
        },
    )
    async def effective(
        self, request: Request[Principal, Principal, Any], db_session: NamedDependency[AsyncSession]
    ) -> Response[BudgetSet | None]:
        """Every budget of the org with its budget-set version; `ETag` is
        `"budgets-<org_id>-<version>"`, and a matching `If-None-Match` is answered `304`."""
        org_id = request.auth.org_id
        asked = request.headers.get("if-none-match")
        if asked is not None:
            current = await definitions.current_etag(db_session, org_id)
            if etag_matches(asked, current):
                return Response(content=None, status_code=304, headers={"ETag": current})
        found = await definitions.load_budget_set(db_session, org_id)
        return Response(content=found, headers={"ETag": found.etag})

    @post(
        "/leases/{lease_id:str}/report",
        status_code=200,
        guards=[requires(Permission.BUDGETS_LEASE)],
        summary="Report on a lease: spent so far; renew, grow or release it",
        description=(
            "`spent_usd` is everything spent under the lease so far (reports can be retried); "
            "`release` gives back the rest; `renew_ttl` keeps it active that many more "
            "seconds; `more_usd` (and `more_tokens`, on a budget limiting tokens) grows it as "
            "far as the budget has room."
        ),
        responses=problems(
            LEASE_NOT_FOUND,
            Conflict("lease_ended", "renewing or growing a released or expired lease"),
        ),
    )
    async def report(
        self,
        *,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        derived_work: NamedDependency[DerivedWork],
        clock: NamedDependency[Clock],
        lease_id: LeaseId,
        data: JSONBody[LeaseReport],
    ) -> Lease:
        """Report on the lease."""
        found = _uuid_of(lease_id, LEASE_NOT_FOUND)
        return await leases.report_lease(
            db_session, request.auth.org_id, found, data, derived_work, now=clock()
        )

    @get(
        "/{budget_id:str}",
        guards=[requires(Permission.BUDGETS_READ)],
        summary="One budget",
        responses=problems(BUDGET_NOT_FOUND),
    )
    async def get_budget(
        self,
        *,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        budget_id: BudgetId,
    ) -> BudgetView:
        """The budget."""
        row = await definitions.budget_row(
            db_session, request.auth.org_id, _uuid_of(budget_id, BUDGET_NOT_FOUND)
        )
        return definitions.view_of(row)

    @patch(
        "/{budget_id:str}",
        guards=[requires(Permission.BUDGETS_WRITE)],
        summary="Change a budget",
        description="Whatever is given. Its `version` grows. Audited as `budget.changed`; "
        "notified in-app as raised, lowered or changed.",
        responses=problems(BUDGET_NOT_FOUND, *WRITE_REFUSALS),
    )
    async def change_budget(
        self,
        *,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        derived_work: NamedDependency[DerivedWork],
        budgets_changed: NamedDependency[BudgetsChanged],
        budget_id: BudgetId,
        data: JSONBody[BudgetChange],
    ) -> BudgetView:
        """Change the budget."""
        operator = await operator_of(db_session, request.auth, actor_of(request))
        changed = await definitions.change_budget(
            db_session, operator, _uuid_of(budget_id, BUDGET_NOT_FOUND), data, derived_work
        )
        await budgets_changed(operator.org_id)
        return changed

    @delete(
        "/{budget_id:str}",
        guards=[requires(Permission.BUDGETS_WRITE)],
        summary="Delete a budget",
        description="Its ledger, leases and alerts stay as history. Audited as `budget.deleted`.",
        responses=problems(BUDGET_NOT_FOUND, WRITE_REFUSALS[2]),
    )
    async def delete_budget(
        self,
        *,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        derived_work: NamedDependency[DerivedWork],
        budgets_changed: NamedDependency[BudgetsChanged],
        budget_id: BudgetId,
    ) -> None:
        """Delete the budget."""
        operator = await operator_of(db_session, request.auth, actor_of(request))
        await definitions.delete_budget(
            db_session, operator, _uuid_of(budget_id, BUDGET_NOT_FOUND), derived_work
        )
        await budgets_changed(operator.org_id)

    @post(
        "/{budget_id:str}/reset",
        status_code=200,
        guards=[requires(Permission.BUDGETS_WRITE)],
        summary="Write off a budget's spend in its current window",
        description="The ledger is append-only: one compensating entry writes the window's "
        "spend so far off (leases keep what they hold). Audited as `budget.reset`; notified "
        "in-app. Answers the budget's state after it.",
        responses=problems(
            BUDGET_NOT_FOUND,
            WRITE_REFUSALS[2],
            Invalid("invalid_reason", "a reason of 1 to 1,024 characters is required"),
        ),
    )
    async def reset(
        self,
        *,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        derived_work: NamedDependency[DerivedWork],
        clock: NamedDependency[Clock],
        budget_id: BudgetId,
        data: JSONBody[BudgetReset],
    ) -> BudgetState:
        """Reset the budget's window."""
        operator = await operator_of(db_session, request.auth, actor_of(request))
        return await charges.reset_budget(
            db_session,
            operator,
            _uuid_of(budget_id, BUDGET_NOT_FOUND),
            data.reason,
            derived_work,
            now=clock(),
        )

    @get(
        "/{budget_id:str}/state",
        guards=[requires(Permission.BUDGETS_READ)],
        summary="A budget now: spent, reserved, remaining, projected, outstanding leases",
        responses=problems(BUDGET_NOT_FOUND),
    )
    async def state(
        self,
        *,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        clock: NamedDependency[Clock],
        budget_id: BudgetId,
    ) -> BudgetState:
        """The budget's figures in its current window, computed now."""
        row = await definitions.budget_row(
            db_session, request.auth.org_id, _uuid_of(budget_id, BUDGET_NOT_FOUND)
        )
        return await budget_state(db_session, row, clock())

    @get(
        "/{budget_id:str}/alerts",
        guards=[requires(Permission.BUDGETS_READ)],
        summary="A budget's alert history",
        description="The alerts raised on it, newest first (at most 100): thresholds crossed, "
        "a soft limit passed, an overrun projected, its agents paused.",
    )
    async def alert_history(
        self,
        *,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        budget_id: BudgetId,
    ) -> alerts.BudgetAlertList:
        """The budget's alerts (also those of a deleted budget: they stay as history)."""
        return await alerts.alert_history(
            db_session, request.auth.org_id, _uuid_of(budget_id, BUDGET_NOT_FOUND)
        )

    @post(
        "/{budget_id:str}/leases",
        guards=[requires(Permission.BUDGETS_LEASE)],
        summary="Ask for a lease on a budget",
        description=(
            "Granted atomically: at most what the budget has left in its window once its "
            "spend and the other leases are counted (`granted_usd` may be less than asked; a "
            "soft budget grants it all). `201` for a new lease, `200` for the lease the same "
            "`request_id` already has."
        ),
        responses={
            200: ResponseSpec(Lease, description="The lease this request id already has."),
            **problems(
                BUDGET_NOT_FOUND,
                Conflict("budget_exhausted", "a hard budget with nothing left in this window"),
                Conflict("lease_request_reused", "the request id asked for another budget"),
            ),
        },
    )
    async def ask_lease(
        self,
        *,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        derived_work: NamedDependency[DerivedWork],
        clock: NamedDependency[Clock],
        budget_id: BudgetId,
        data: JSONBody[LeaseAsk],
    ) -> Response[Lease]:
        """Ask for a lease."""
        lease, made = await leases.grant_lease(
            db_session,
            request.auth.org_id,
            _uuid_of(budget_id, BUDGET_NOT_FOUND),
            data,
            derived_work,
            now=clock(),
        )
        return Response(lease, status_code=201 if made else 200)

    @get(
        "/{budget_id:str}/leases",
        guards=[requires(Permission.BUDGETS_READ)],
        summary="A budget's outstanding leases",
        description="The leases active now in its current window: with the hub unreachable, "
        "at most these can be spent past what the ledger shows.",
        responses=problems(BUDGET_NOT_FOUND),
    )
    async def outstanding(
        self,
        *,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        clock: NamedDependency[Clock],
        budget_id: BudgetId,
    ) -> list[Lease]:
        """The outstanding leases."""
        return await leases.outstanding_leases(
            db_session, request.auth.org_id, _uuid_of(budget_id, BUDGET_NOT_FOUND), now=clock()
        )


def _uuid_of(value: str, missing: NotFound) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise NotFound(missing.code, missing.detail) from None
