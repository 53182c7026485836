"""The approvals queue: pending requests to approve, approve with edits or reject with a
reason (one by one, or several at once), the latest decisions, and the history.

A decision is :func:`~agentops_server.services.governance.approvals.decide`, as ``POST
/api/v1/approvals/{id}/decision`` calls it, and a bulk one
:func:`~agentops_server.services.governance.approvals.decide_bulk`, as ``POST
/api/v1/approvals/decisions`` calls it: audited, and pushed to the waiting SDKs at once. The
history lists decided requests as ``GET /api/v1/approvals?state=`` does.
"""

from __future__ import annotations

import json
import uuid
from typing import Annotated, Any

import pydantic
from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import PathParameter, QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession

from agentops_sdk.contract.approvals import APPROVAL_STATES, ApprovalDecision, ApprovalState
from agentops_server.api.v1.actors import actor_of
from agentops_server.auth.guards import requires
from agentops_server.backends.derived_work import DerivedWork
from agentops_server.backends.live import LiveUpdates
from agentops_server.refusals import Conflict, Invalid, Refused
from agentops_server.security.permissions import Permission
from agentops_server.security.principal import Principal
from agentops_server.services.governance import approvals
from agentops_server.services.governance.approval_feed import APPROVAL_DECIDED
from agentops_server.services.governance.approval_queue import ApprovalFilter, list_approvals
from agentops_server.services.governance.approvals import (
    ApprovalsChanged,
    BulkDecision,
    Reviewer,
)
from agentops_server.services.governance.operators import operator_of
from agentops_server.web.forms import fields_of, form_of
from agentops_server.web.pages import done, page

__all__ = ["ApprovalPages"]

PATH = "/approvals"
HISTORY = 20
HISTORY_PAGE = 100
DECIDED_STATES: tuple[ApprovalState, ...] = tuple(
    state for state in APPROVAL_STATES if state != "pending"
)


class ApprovalPages(Controller):
    """``/approvals``: read with ``approvals:read``, decide with ``approvals:decide``."""

    @get(PATH, guards=[requires(Permission.APPROVALS_READ)])
    async def approvals_page(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
    ) -> Response[Any]:
        """The pending requests, oldest deadline first, and the latest decisions."""
        return await _render(request, db_session)

    @post(PATH + "/{approval_id:uuid}/decision", guards=[requires(Permission.APPROVALS_DECIDE)])
    async def decide(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        derived_work: NamedDependency[DerivedWork],
        approvals_changed: NamedDependency[ApprovalsChanged],
        approval_id: Annotated[uuid.UUID, PathParameter()],
    ) -> Response[Any]:
        """Approve (with edited arguments, if changed) or reject, with a comment."""
        form = await fields_of(request)
        try:
            decision = _decision(form)
            operator = await operator_of(db_session, request.auth, actor_of(request))
            reviewer = Reviewer(operator, request.auth.person_id)
            await approvals.decide(db_session, reviewer, approval_id, decision, derived_work)
        except Refused as exc:
            return await _render(request, db_session, exc)
        await approvals_changed(operator.org_id)
        return done(PATH, "approval_decided")

    @post(PATH + "/decisions", guards=[requires(Permission.APPROVALS_DECIDE)])
    async def decide_bulk(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        derived_work: NamedDependency[DerivedWork],
        approvals_changed: NamedDependency[ApprovalsChanged],
        live: NamedDependency[LiveUpdates],
    ) -> Response[Any]:
        """One decision, with one reason, for the selected requests."""
        form = await form_of(request)
        try:
            wanted = _bulk_decision(form)
            operator = await operator_of(db_session, request.auth, actor_of(request))
            reviewer = Reviewer(operator, request.auth.person_id)
            result = await approvals.decide_bulk(db_session, reviewer, wanted, derived_work)
        except Refused as exc:
            return await _render(request, db_session, exc)
        if any(item.ok for item in result.items):
            await approvals_changed(operator.org_id)
        for item in result.items:
            if item.request is not None:
                await live.announce(
                    operator.org_id, APPROVAL_DECIDED, item.request.model_dump_json()
                )
        refused = [item for item in result.items if not item.ok]
        if refused:
            listed = "; ".join(f"{item.id}: {item.code} ({item.detail})" for item in refused)
            decided = len(result.items) - len(refused)
            partly = Conflict(
                "bulk_partly_refused",
                f"{decided} of {len(result.items)} requests were decided; refused: {listed}",
            )
            return await _render(request, db_session, partly)
        return done(PATH, "approvals_decided")

    @get(PATH + "/history", guards=[requires(Permission.APPROVALS_READ)])
    async def history_page(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        approval_state: Annotated[str, QueryParameter(name="state")] = "",
    ) -> Response[Any]:
        """Decided requests, newest first, by state: who decided, when, the edits, the
        reason."""
        chosen = next((state for state in DECIDED_STATES if state == approval_state), None)
        where = ApprovalFilter(state=chosen)
        found = await list_approvals(db_session, request.auth.org_id, where, limit=HISTORY_PAGE)
        return await page(
            request,
            db_session,
            "approvals_history.html",
            decided=[item for item in found.items if item.state != "pending"],
            states=DECIDED_STATES,
            chosen=chosen or "",
            arguments_text=lambda value: json.dumps(value, indent=2, sort_keys=True),
        )


def _bulk_decision(form: dict[str, list[str]]) -> BulkDecision:
    verdict = (form.get("decision") or [""])[0]
    comment = (form.get("comment") or [""])[0].strip() or None
    if not form.get("ids"):
        raise Invalid("nothing_selected", "Select the requests to decide.")
    if verdict == "reject" and comment is None:
        raise Invalid("reason_required", "Say why the calls are rejected: the agents are told.")
    try:
        return BulkDecision(decision=verdict, comment=comment, ids=form["ids"])  # type: ignore[arg-type]
    except pydantic.ValidationError as exc:
        raise Invalid("invalid_form", f"The decision is not valid: {exc}") from exc


def _decision(form: dict[str, str]) -> ApprovalDecision:
    verdict = form.get("decision", "")
    comment = form.get("comment", "").strip() or None
    if verdict == "reject" and comment is None:
        raise Invalid("reason_required", "Say why the call is rejected: the agent is told.")
    edited = _edited_arguments(form) if verdict == "approve" else None
    try:
        return ApprovalDecision(decision=verdict, comment=comment, edited_arguments=edited)  # type: ignore[arg-type]
    except pydantic.ValidationError as exc:
        raise Invalid("invalid_form", f"The decision is not valid: {exc}") from exc


def _edited_arguments(form: dict[str, str]) -> dict[str, Any] | None:
    """The edited arguments, when the reviewer changed them (None: approve as asked)."""
    text, original = form.get("arguments", "").strip(), form.get("original_arguments", "")
    if not text or text == original.strip():
        return None
    try:
        edited = json.loads(text)
    except ValueError as exc:
        raise Invalid("invalid_edit", f"The edited arguments are not JSON: {exc}") from exc
    if not isinstance(edited, dict):
        raise Invalid("invalid_edit", "The edited arguments are a JSON object.")
    return edited


async def _render(
    request: Request[Principal, Principal, Any],
    db_session: AsyncSession,
    refusal: Refused | None = None,
) -> Response[Any]:
    if refusal is not None:
        await db_session.rollback()
    org_id = request.auth.org_id
    pending = await list_approvals(db_session, org_id, ApprovalFilter(state="pending"), limit=200)
    recent = await list_approvals(db_session, org_id, ApprovalFilter(), limit=HISTORY)
    response = await page(
        request,
        db_session,
        "approvals.html",
        pending=sorted(pending.items, key=lambda item: item.expires_at),
        decided=[item for item in recent.items if item.state != "pending"],
        arguments_text=lambda item: json.dumps(item.arguments, indent=2, sort_keys=True),
        error=refusal,
    )
    response.status_code = refusal.status if refusal else 200
    return response
