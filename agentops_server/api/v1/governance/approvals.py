"""``/api/v1/approvals``: human approvals (see docs/approvals.md).

An SDK asks (``POST``; ``201`` for a new request, ``200`` for the request already held under
the same key), reads its request while it waits (``GET /{id}``; the ``approvals`` topic of the
org stream pushes decisions), and claims an approval before the call runs (``POST
/{id}/claim``: the first claim wins, any later one is ``409 approval_claimed``). Reviewers list
the queue, decide one request or many at once. Every decision is pushed to the org's SDKs
(``approvals_changed``, after the commit); a new request and each decision are also announced
on the org's stream as ``approval_requested`` and ``approval_decided`` (for pages).
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import JSONBody, PathParameter, QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession

from agentops_sdk.contract.approvals import (
    ApprovalAsk,
    ApprovalClaim,
    ApprovalDecision,
    ApprovalRequest,
    ApprovalState,
)
from agentops_server.api.problems import problems
from agentops_server.api.v1.actors import actor_of
from agentops_server.auth.guards import requires
from agentops_server.backends.derived_work import DerivedWork
from agentops_server.backends.live import LiveUpdates
from agentops_server.refusals import Conflict, Forbidden, Invalid, NotFound, Unprocessable
from agentops_server.security.permissions import Permission
from agentops_server.security.principal import Principal
from agentops_server.services.governance import approvals
from agentops_server.services.governance.approval_feed import APPROVAL_DECIDED, APPROVAL_REQUESTED
from agentops_server.services.governance.approval_queue import (
    MAX_PAGE_SIZE,
    ApprovalFilter,
    ApprovalPage,
    list_approvals,
)
from agentops_server.services.governance.approvals import (
    ApprovalsChanged,
    BulkDecision,
    BulkResult,
    Reviewer,
)
from agentops_server.services.governance.operators import operator_of
from agentops_server.values import Text, Timestamp

__all__ = ["ApprovalController"]

APPROVAL_BODY_LIMIT = 256 * 1024
"""The largest body the approval routes take: a call's arguments, frozen."""

ApprovalId = Annotated[str, PathParameter(description="The approval request's id (a UUID).")]

NOT_FOUND = NotFound("approval_not_found", "no such approval request in this org")
DECISION_REFUSALS = (
    NOT_FOUND,
    Conflict("approval_decided", "the request was decided already (by anyone)"),
    Conflict("approval_expired", "the request's time ran out: it can no longer be decided"),
    Forbidden("not_your_team", "a team lead deciding for an agent outside their teams"),
    Forbidden(
        "self_approval",
        "the agent's registry owner approving its request, which the rule does not allow",
    ),
    Invalid("invalid_edit", "edited arguments with a decision other than `approve`"),
)
EDIT_DENIED = Unprocessable(
    "edit_denied_by_policy",
    "the org's active policy denies the call with the edited arguments (`rule` names the rule)",
)


class ApprovalController(Controller):
    """Asking (``approvals:request``), reading (``approvals:read``), deciding
    (``approvals:decide``) and claiming (``approvals:request``) approval requests."""

    path = "/approvals"
    tags = ("approvals",)
    request_max_body_size = APPROVAL_BODY_LIMIT

    @post(
        "/",
        guards=[requires(Permission.APPROVALS_REQUEST)],
        summary="Ask for a human's approval of a call (the SDK)",
        description=(
            "One request per `key` (the run, the call's name and its arguments' hash): asking "
            "again answers the request already held, `200`, instead of a new one, `201`. The "
            "request expires `expires_in` seconds from now. Audited as `approval.requested`; "
            "the org's reviewers are notified."
        ),
        status_code=201,
        responses=problems(
            Invalid("invalid_approval_key", "`key` is not approval_key(run_id, name, hash)")
        ),
    )
    async def ask(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        derived_work: NamedDependency[DerivedWork],
        live: NamedDependency[LiveUpdates],
        data: JSONBody[ApprovalAsk],
    ) -> Response[ApprovalRequest]:
        """Ask for an approval."""
        asked, made = await approvals.ask(
            db_session, request.auth.org_id, actor_of(request), data, derived_work
        )
        if made:
            await live.announce(request.auth.org_id, APPROVAL_REQUESTED, asked.model_dump_json())
        return Response(asked, status_code=201 if made else 200)

    @get(
        "/",
        guards=[requires(Permission.APPROVALS_READ)],
        summary="The approval queue, with filters",
        description=(
            "Requests newest first, as they read now (a pending request past `expires_at` is "
            "`expired`). Pass `next_cursor` back as `cursor` for the next page."
        ),
        responses=problems(Invalid("invalid_limit", "`limit` outside 1 to 200")),
    )
    async def list_approvals(
        self,
        *,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        approval_state: Annotated[
            ApprovalState | None,
            QueryParameter(
                query="state", description="`pending` (not yet expired), `approved`, `expired`…"
            ),
        ] = None,
        agent: Annotated[Text | None, QueryParameter(description="The agent's name.")] = None,
        team: Annotated[
            Text | None, QueryParameter(description="A team's name: its agents' requests.")
        ] = None,
        rule: Annotated[Text | None, QueryParameter(description="The rule's id.")] = None,
        run_id: Annotated[Text | None, QueryParameter(description="The run's id.")] = None,
        created_after: Annotated[
            Timestamp | None, QueryParameter(description="ISO 8601; made at or after.")
        ] = None,
        created_before: Annotated[
            Timestamp | None, QueryParameter(description="ISO 8601; made strictly before.")
        ] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=MAX_PAGE_SIZE)] = 50,
        cursor: Annotated[
            Text | None, QueryParameter(description="`next_cursor` of the previous page.")
        ] = None,
    ) -> ApprovalPage:
        """The org's requests matching the filters."""
        where = ApprovalFilter(
            state=approval_state,
            agent=agent,
            team=team,
            rule=rule,
            run_id=run_id,
            created_after=created_after,
            created_before=created_before,
        )
        return await list_approvals(
            db_session, request.auth.org_id, where, limit=limit, cursor=cursor
        )

    @get(
        "/{approval_id:str}",
        guards=[requires(Permission.APPROVALS_READ)],
        summary="One approval request, as it reads now",
        responses=problems(NOT_FOUND),
    )
    async def get_approval(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        approval_id: ApprovalId,
    ) -> ApprovalRequest:
        """The request (an SDK polls it while its stream is down)."""
        return await approvals.get_approval(db_session, request.auth.org_id, _uuid_of(approval_id))

    @post(
        "/{approval_id:str}/decision",
        status_code=200,
        guards=[requires(Permission.APPROVALS_DECIDE)],
        summary="Decide a pending request: approve (optionally with edited arguments), "
        "reject or cancel",
        description=(
            "Once, while the request is pending. `edited_arguments` with `approve` make it "
            "`approved_with_edits`, if the org's active policy does not deny the call with "
            "them. Team leads decide for their teams' agents; an agent's owner may not approve "
            "its requests unless the rule allows it. Audited as `approval.decided`."
        ),
        responses=problems(*DECISION_REFUSALS, EDIT_DENIED),
    )
    async def decide(
        self,
        *,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        derived_work: NamedDependency[DerivedWork],
        approvals_changed: NamedDependency[ApprovalsChanged],
        live: NamedDependency[LiveUpdates],
        approval_id: ApprovalId,
        data: JSONBody[ApprovalDecision],
    ) -> ApprovalRequest:
        """Decide one request."""
        reviewer = await _reviewer(db_session, request)
        decided = await approvals.decide(
            db_session, reviewer, _uuid_of(approval_id), data, derived_work
        )
        await approvals_changed(request.auth.org_id)
        await live.announce(request.auth.org_id, APPROVAL_DECIDED, decided.model_dump_json())
        return decided

    @post(
        "/decisions",
        status_code=200,
        guards=[requires(Permission.APPROVALS_DECIDE)],
        summary="One decision for many requests",
        description=(
            "`ids` (up to 100) and one decision (no edited arguments), in one transaction: "
            "each request is decided or refused on its own (`items`: `ok`, the `request`, or "
            "the refusal's `code` and `detail`, as for one decision)."
        ),
        responses=problems(Invalid("invalid_edit", "edited arguments in a bulk decision")),
    )
    async def decide_bulk(
        self,
        *,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        derived_work: NamedDependency[DerivedWork],
        approvals_changed: NamedDependency[ApprovalsChanged],
        live: NamedDependency[LiveUpdates],
        data: JSONBody[BulkDecision],
    ) -> BulkResult:
        """Decide many requests."""
        reviewer = await _reviewer(db_session, request)
        result = await approvals.decide_bulk(db_session, reviewer, data, derived_work)
        if any(item.ok for item in result.items):
            await approvals_changed(request.auth.org_id)
        for item in result.items:
            if item.request is not None:
                decided = item.request.model_dump_json()
                await live.announce(request.auth.org_id, APPROVAL_DECIDED, decided)
        return result

    @post(
        "/{approval_id:str}/claim",
        status_code=200,
        guards=[requires(Permission.APPROVALS_REQUEST)],
        summary="Claim an approval before its call runs (the SDK; at most once)",
        description=(
            "The first claim of an approved request (or of one that expired to allow) wins; "
            "any later claim is `409 approval_claimed`, so the call runs once. Audited as "
            "`approval.claimed`."
        ),
        responses=problems(
            NOT_FOUND,
            Conflict("approval_claimed", "the approval was claimed already"),
            Conflict(
                "approval_not_approved",
                "the request is pending, rejected, cancelled or expired to deny (`state`)",
            ),
        ),
    )
    async def claim(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        approval_id: ApprovalId,
        data: JSONBody[ApprovalClaim],
    ) -> ApprovalRequest:
        """Claim the approval."""
        return await approvals.claim_approval(
            db_session, request.auth.org_id, actor_of(request), _uuid_of(approval_id), data
        )


async def _reviewer(session: AsyncSession, request: Request[Principal, Principal, Any]) -> Reviewer:
    operator = await operator_of(session, request.auth, actor_of(request))
    return Reviewer(operator, request.auth.person_id)


def _uuid_of(approval_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(approval_id)
    except ValueError:
        raise NotFound(
            "approval_not_found", f"This org has no approval request {approval_id!r}."
        ) from None
