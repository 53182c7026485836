"""Human approvals on the hub: asking, reading, deciding and claiming approval requests.

An SDK asks (:func:`ask`) when a policy rule requires approval; the hub keeps one request per
key (the run, the call and the hash of its arguments), so asking again returns the request
already there. A reviewer decides (:func:`decide`, :func:`decide_bulk`): approve, approve with
edited arguments (``approved_with_edits``; the edit is checked against the org's active policy
with the SDK's engine, and refused if the policy denies it), reject or cancel, once, while the
request is pending. A pending request past ``expires_at`` is ``expired`` (read-time, see
:mod:`~agentops_server.services.governance.approval_feed`) and can no longer be decided. Before
an approved call runs, the SDK claims the approval (:func:`claim_approval`): the first claim
wins, any later one is refused (``approval_claimed``), so the call runs at most once.

Who decides: callers with ``approvals:decide``; team leads within their teams (the request's
agent's team in the registry); and the agent's registry owner may not approve its request unless
the rule allows self-approval (``self_approval``).

Every ask, decision, claim and written expiry is audited (``approval.requested``,
``approval.decided``, ``approval.claimed``, ``approval.expired``) with the request before and
after; a new request and each decision hand a notice to derived work (notifications), and a
request whose rule escalates hands one due at ``created_at + escalate_after``
(:mod:`~agentops_server.services.governance.approval_tasks`). Pushing decisions to the SDKs is
the caller's (the controllers call ``approvals_changed`` after the commit).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Annotated, Any, Final

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from agentops_sdk.contract.approvals import (
    ApprovalAsk,
    ApprovalClaim,
    ApprovalDecision,
    ApprovalRequest,
    ApprovalState,
    approval_key,
)
from agentops_sdk.contract.llm_requests import max_tokens_of
from agentops_sdk.contract.policy_engine import CallFacts, compile_policy
from agentops_server.backends.derived_work import DerivedWork, Notice
from agentops_server.db.models import Agent, PolicyState, PolicyVersion, Team
from agentops_server.db.models import ApprovalRequest as ApprovalRow
from agentops_server.refusals import Conflict, Forbidden, Invalid, NotFound, Refused, Unprocessable
from agentops_server.services import audit
from agentops_server.services.audit import Actor
from agentops_server.services.governance.approval_feed import (
    bump_revision,
    expire,
    snapshot_of,
    view_of,
)
from agentops_server.services.governance.approval_tasks import (
    APPROVAL_DECIDED,
    APPROVAL_ESCALATION,
    APPROVAL_REQUESTED,
)
from agentops_server.services.governance.operators import Operator
from agentops_server.services.governance.policy_checks import validated_document
from agentops_server.services.row_claims import claim

__all__ = [
    "MAX_BULK",
    "ApprovalsChanged",
    "BulkDecision",
    "BulkOutcome",
    "BulkResult",
    "Reviewer",
    "ask",
    "claim_approval",
    "decide",
    "decide_bulk",
    "get_approval",
]

logger = logging.getLogger("agentops_server.approvals")

MAX_BULK: Final = 100
_APPROVED: Final = frozenset({"approved", "approved_with_edits"})
_STATES: Final[dict[str, ApprovalState]] = {
    "approve": "approved",
    "reject": "rejected",
    "cancel": "cancelled",
}

ApprovalsChanged = Callable[[uuid.UUID], Awaitable[None]]
"""Told an org's id after a decision of its approvals was committed (the push to its SDKs)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Reviewer:
    """Who decides: the operator (audit actor, name, team reach) and the person behind it
    (the signed-in user, or the creator of the API key; None for a key of the org itself)."""

    operator: Operator
    person_id: uuid.UUID | None


class BulkDecision(ApprovalDecision):
    """One decision for many requests (``POST /api/v1/approvals/decisions``); no edits: edited
    arguments belong to one call."""

    ids: Annotated[list[uuid.UUID], Field(min_length=1, max_length=MAX_BULK)]


class _Answer(BaseModel):
    model_config = ConfigDict(frozen=True)


class BulkOutcome(_Answer):
    """What became of one request of a bulk decision: the request as decided, or the refusal's
    ``code`` and ``detail``."""

    id: uuid.UUID
    ok: bool
    request: ApprovalRequest | None = None
    code: str | None = None
    detail: str | None = None


class BulkResult(_Answer):
    """A bulk decision's outcome, one item per id, in the order given."""

    items: list[BulkOutcome]


# -- asking and reading --------------------------------------------------------------------------


async def ask(
    session: AsyncSession,
    org_id: uuid.UUID,
    actor: Actor,
    request: ApprovalAsk,
    derived: DerivedWork | None = None,
) -> tuple[ApprovalRequest, bool]:
    """The org's request for ``request.key``, made now (audited, notified; escalation
    scheduled) if there was none; and whether it was made now.

    A request whose arguments could not be frozen (``arguments_valid`` false) always expires to
    deny. Refusals: ``invalid_approval_key`` (the key is not ``approval_key`` of the run, name
    and arguments hash).
    """
    if request.key != approval_key(request.run_id, request.name, request.arguments_sha256):
        raise Invalid(
            "invalid_approval_key",
            "`key` must be approval_key(run_id, name, arguments_sha256) (the SDK's contract).",
        )
    existing = await _by_key(session, org_id, request.key)
    if existing is not None:
        return view_of(existing), False
    agent_id = await session.scalar(
        select(Agent.id).where(Agent.org_id == org_id, Agent.name == request.agent)
    )
    now = dt.datetime.now(dt.UTC)
    row = ApprovalRow(
        org_id=org_id,
        id=uuid.uuid4(),
        key=request.key,
        state="pending",
        agent=request.agent,
        agent_id=agent_id,
        environment=request.environment,
        run_id=request.run_id,
        span_id=request.span_id,
        kind=request.kind,
        name=request.name,
        arguments=request.arguments,
        arguments_sha256=request.arguments_sha256,
        arguments_valid=request.arguments_valid,
        rule=request.rule,
        policy_version=request.policy_version,
        reason=request.reason,
        on_expiry=request.on_expiry if request.arguments_valid else "deny",
        on_reject=request.on_reject,
        escalate_after=request.escalate_after,
        allow_self_approval=request.allow_self_approval,
        created_at=now,
        expires_at=now + dt.timedelta(seconds=request.expires_in),
    )
    session.add(row)
    await audit.record(
        session,
        org_id,
        actor,
        "approval.requested",
        target_type="approval",
        target_id=row.id,
        after=snapshot_of(row),
    )
    notices = await _record_notices(session, derived, row, escalate=True)
    try:
        await session.commit()
    except IntegrityError:  # the same key, asked at the same moment by another process
        await session.rollback()
        raced = await _by_key(session, org_id, request.key)
        if raced is None:
            raise
        return view_of(raced), False
    await _dispatch(derived, notices)
    return view_of(row), True


async def get_approval(
    session: AsyncSession, org_id: uuid.UUID, approval_id: uuid.UUID
) -> ApprovalRequest:
    """One request as it reads now (``approval_not_found``)."""
    return view_of(await _row(session, org_id, approval_id))


# -- deciding ------------------------------------------------------------------------------------


async def decide(
    session: AsyncSession,
    reviewer: Reviewer,
    approval_id: uuid.UUID,
    decision: ApprovalDecision,
    derived: DerivedWork | None = None,
) -> ApprovalRequest:
    """Decide one pending request; audit; bump the org's approvals revision; commit; notify.

    Refusals: ``approval_not_found``, ``approval_decided`` (decided already),
    ``approval_expired`` (its time ran out: the expiry is written), ``not_your_team``,
    ``self_approval``, ``invalid_edit`` (edits without approve), ``edit_denied_by_policy``.
    """
    row = await _row(session, reviewer.operator.org_id, approval_id)
    try:
        notices = await _decide_row(session, reviewer, row, decision, derived)
    except Refused:
        await session.commit()  # an expiry written on the way stays written
        raise
    await session.commit()
    await _dispatch(derived, notices)
    return view_of(row)


async def decide_bulk(
    session: AsyncSession,
    reviewer: Reviewer,
    request: BulkDecision,
    derived: DerivedWork | None = None,
) -> BulkResult:
    """One decision for each of ``request.ids`` (each as :func:`decide` would, refused one by
    one: the others still go ahead), in one transaction; the outcome of each.

    Refusals: ``invalid_edit`` (edited arguments: they belong to one call).
    """
    if request.edited_arguments is not None:
        raise Invalid("invalid_edit", "A bulk decision cannot edit arguments: decide one by one.")
    decision = ApprovalDecision(decision=request.decision, comment=request.comment)
    outcomes: list[BulkOutcome] = []
    notices: list[Notice] = []
    for approval_id in dict.fromkeys(request.ids):
        try:
            row = await _row(session, reviewer.operator.org_id, approval_id)
            notices += await _decide_row(session, reviewer, row, decision, derived)
        except Refused as refused:
            outcomes.append(
                BulkOutcome(id=approval_id, ok=False, code=refused.code, detail=refused.detail)
            )
        else:
            outcomes.append(BulkOutcome(id=approval_id, ok=True, request=view_of(row)))
    await session.commit()
    await _dispatch(derived, notices)
    return BulkResult(items=outcomes)


async def claim_approval(
    session: AsyncSession,
    org_id: uuid.UUID,
    actor: Actor,
    approval_id: uuid.UUID,
    request: ApprovalClaim,
) -> ApprovalRequest:
    """Claim an approved request for ``request.claimant`` to run its call: the first claim
    wins; audited. A request that expired to allow (``on_expiry`` allow, arguments valid) may
    be claimed too: its call runs, once.

    Refusals: ``approval_not_found``, ``approval_claimed`` (claimed already, by anyone),
    ``approval_not_approved`` (pending, rejected, cancelled, or expired to deny).
    """
    row = await _row(session, org_id, approval_id)
    now = dt.datetime.now(dt.UTC)
    await expire(session, row, now)
    runnable = row.state in _APPROVED or (
        row.state == "expired" and row.on_expiry == "allow" and row.arguments_valid
    )
    before = snapshot_of(row)
    won = runnable and await claim(
        session, row, ApprovalRow.claimed_at.is_(None), claimed_at=now, claimed_by=request.claimant
    )
    if won:
        await audit.record(
            session,
            org_id,
            actor,
            "approval.claimed",
            target_type="approval",
            target_id=row.id,
            before=before,
            after=snapshot_of(row),
        )
    await session.commit()
    if won:
        return view_of(row)
    if runnable:
        await session.refresh(row)
        raise Conflict(
            "approval_claimed",
            "This approval was claimed already: its call runs once. Ask again to run it again.",
            claimed_at=None if row.claimed_at is None else row.claimed_at.isoformat(),
        )
    raise Conflict(
        "approval_not_approved",
        f"This request is {view_of(row).state}: only an approved request can be claimed.",
        state=view_of(row).state,
    )


# -- helpers -------------------------------------------------------------------------------------


async def _decide_row(
    session: AsyncSession,
    reviewer: Reviewer,
    row: ApprovalRow,
    decision: ApprovalDecision,
    derived: DerivedWork | None,
) -> list[Notice]:
    """Decide ``row`` in the session's transaction; the notices to dispatch after the commit."""
    now = dt.datetime.now(dt.UTC)
    if await expire(session, row, now) or row.state == "expired":
        raise Conflict("approval_expired", "This request expired: it can no longer be decided.")
    if row.state != "pending":
        raise Conflict("approval_decided", f"This request was {row.state} already.")
    if decision.edited_arguments is not None and decision.decision != "approve":
        raise Invalid("invalid_edit", "Edited arguments go with `approve` only.")
    agent = await session.scalar(
        select(Agent).where(Agent.org_id == row.org_id, Agent.name == row.agent)
    )
    reviewer.operator.check_teams([None if agent is None else agent.team_id], "approvals")
    if (
        decision.decision == "approve"
        and not row.allow_self_approval
        and agent is not None
        and agent.owner_id is not None
        and agent.owner_id == reviewer.person_id
    ):
        raise Forbidden(
            "self_approval",
            f"You own the agent {row.agent!r}: someone else must approve its requests "
            "(the rule does not allow self-approval).",
        )
    if decision.edited_arguments is not None:
        await _check_edit(session, row, agent, decision.edited_arguments)
    state: ApprovalState = _STATES[decision.decision]
    if decision.edited_arguments is not None:
        state = "approved_with_edits"
    before = snapshot_of(row)
    decided = await claim(
        session,
        row,
        ApprovalRow.state == "pending",
        state=state,
        decided_at=now,
        decided_by=reviewer.operator.name,
        decided_by_id=reviewer.person_id,
        comment=decision.comment,
        edited_arguments=decision.edited_arguments,
    )
    if not decided:  # another reviewer's decision committed meanwhile
        raise Conflict("approval_decided", "This request was decided by someone else meanwhile.")
    await audit.record(
        session,
        row.org_id,
        reviewer.operator.audit,
        "approval.decided",
        target_type="approval",
        target_id=row.id,
        before=before,
        after={**snapshot_of(row), "edited_arguments": decision.edited_arguments},
    )
    await bump_revision(session, row.org_id)
    return await _record_notices(session, derived, row, escalate=False)


async def _check_edit(
    session: AsyncSession, row: ApprovalRow, agent: Agent | None, edited: dict[str, Any]
) -> None:
    """Refuse (``edit_denied_by_policy``) edited arguments the org's active policy denies (the
    edits over the call's own arguments: a reviewer may send only what they changed, and the
    SDK runs the call with the two merged)."""
    state = await session.get(PolicyState, row.org_id)
    if state is None or state.active_id is None:
        return
    version = await session.get(PolicyVersion, (row.org_id, state.active_id))
    if version is None:
        return
    policy = compile_policy(validated_document(version.document, version.number))
    team = None
    if agent is not None and agent.team_id is not None:
        team = await session.scalar(
            select(Team.name).where(Team.org_id == row.org_id, Team.id == agent.team_id)
        )
    facts = CallFacts(
        kind=row.kind,
        name=row.name,
        agent=row.agent,
        environment=row.environment,
        team=team,
        tags=tuple(agent.tags) if agent is not None else (),
        model=row.name if row.kind == "llm" else None,
        arguments=(merged := {**(row.arguments or {}), **edited}),
        max_tokens=max_tokens_of(merged),
    )
    verdict = policy.evaluate(facts).decision
    if verdict is not None and verdict.outcome == "deny":
        raise Unprocessable(
            "edit_denied_by_policy",
            f"The active policy (version {version.number}) denies the call with these "
            f"arguments (rule {verdict.rule!r}): {verdict.reason or 'denied'}.",
            rule=verdict.rule,
            policy_version=version.number,
        )


async def _by_key(session: AsyncSession, org_id: uuid.UUID, key: str) -> ApprovalRow | None:
    return await session.scalar(
        select(ApprovalRow).where(ApprovalRow.org_id == org_id, ApprovalRow.key == key)
    )


async def _row(session: AsyncSession, org_id: uuid.UUID, approval_id: uuid.UUID) -> ApprovalRow:
    row = await session.get(ApprovalRow, (org_id, approval_id))
    if row is None:
        raise NotFound("approval_not_found", f"This org has no approval request {approval_id}.")
    return row


async def _record_notices(
    session: AsyncSession, derived: DerivedWork | None, row: ApprovalRow, *, escalate: bool
) -> list[Notice]:
    """Record the derived work a new request (``escalate``) or a decision owes."""
    if derived is None:
        return []
    payload = {"org_id": str(row.org_id), "approval_id": str(row.id)}
    if not escalate:
        return [await derived.record(session, APPROVAL_DECIDED, {**payload, "state": row.state})]
    notices = [await derived.record(session, APPROVAL_REQUESTED, payload)]
    if row.escalate_after is not None:
        due = row.created_at + dt.timedelta(seconds=row.escalate_after)
        notices.append(await derived.record(session, APPROVAL_ESCALATION, payload, not_before=due))
    return notices


async def _dispatch(derived: DerivedWork | None, notices: Sequence[Notice]) -> None:
    """Hand the notices over; the change is committed whatever happens to them."""
    if derived is None:
        return
    for notice in notices:
        try:
            await derived.dispatch(notice)
        except Exception:
            logger.exception("approvals: the %s notice was not handed over", notice.task_name)
