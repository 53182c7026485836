"""Human approvals: what the SDK asks the hub when a rule requires approval, and the answer.

When a policy rule decides ``require_approval``, the SDK sends an :class:`ApprovalAsk`
(``POST /api/v1/approvals``) and waits for a reviewer. The hub keeps one request per
:attr:`ApprovalAsk.key`: the run, the call's name and the hash of its frozen arguments. Asking
again with the same key (the agent retried, or its process restarted and resumed the run)
returns the request already there instead of a second one (``200`` rather than ``201``), so a
pending request survives an SDK restart.

A request moves ``pending`` -> ``approved`` | ``approved_with_edits`` | ``rejected`` |
``expired`` | ``cancelled``, once. A request past its ``expires_at`` is ``expired`` (the hub
computes it when read, so nothing lags): it comes to the rule's ``on_expiry``, except that a
request whose arguments could not be frozen (``arguments_valid`` false) always comes to deny.

At most once: before an approved call runs, the SDK claims the approval
(``POST /api/v1/approvals/{id}/claim``, with its :attr:`ApprovalClaim.claimant`). The first
claim wins (``200``, ``claimed_at`` set); any later claim is refused (``409``, problem code
``approval_claimed``), so an approved call runs once even when the agent retries or a
restarted process resumes it. A retried call whose approval was used already is refused with
``ApprovalDenied`` (ask again with other arguments, or in a new run).

Decided requests reach the SDK on the hub's stream (``approvals`` events, data
:class:`ApprovalFeed`: the org's requests decided recently) and by polling
``GET /api/v1/approvals/{id}`` while the stream is down.

This module is pure (pydantic models and functions): no I/O, no SDK runtime.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Annotated, Any, Final, Literal, get_args
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "APPROVAL_STATES",
    "DECIDED_STATES",
    "TOPIC",
    "ApprovalAsk",
    "ApprovalClaim",
    "ApprovalDecision",
    "ApprovalFeed",
    "ApprovalRequest",
    "ApprovalState",
    "approval_key",
]

TOPIC: Final = "approvals"
"""The stream event kind (and SDK hub link topic) that carries decided requests."""

ApprovalState = Literal[
    "pending", "approved", "approved_with_edits", "rejected", "expired", "cancelled"
]
APPROVAL_STATES: Final[tuple[ApprovalState, ...]] = get_args(ApprovalState)
DECIDED_STATES: Final = frozenset(APPROVAL_STATES) - {"pending"}
"""Every state but ``pending``: a request in one of them never changes state again."""

Text = Annotated[str, Field(max_length=1024)]
Name = Annotated[str, Field(min_length=1, max_length=256)]
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def approval_key(run_id: str, name: str, arguments_sha256: str) -> str:
    """The key of a call's approval request: one request per run, call name and arguments."""
    text = f"{run_id}\n{name}\n{arguments_sha256}"
    return hashlib.sha256(text.encode()).hexdigest()


class ApprovalAsk(_Wire):
    """What the SDK sends to ask for an approval (``POST /api/v1/approvals``)."""

    key: Sha256
    """:func:`approval_key` of ``run_id``, ``name`` and ``arguments_sha256``."""
    agent: Name
    environment: Name
    run_id: Name
    span_id: Name
    kind: Literal["tool", "step", "llm", "agent"]
    name: Name
    """The tool or step name; for an LLM call, the model."""
    arguments: dict[str, Any] | None
    """The call's arguments in JSON (as frozen when asked); None when they could not be."""
    arguments_sha256: Sha256
    """SHA-256 of the canonical JSON of the arguments (``canonical_arguments``)."""
    arguments_valid: bool = True
    """False when the arguments could not be frozen to JSON: such a request never goes ahead
    unless a reviewer approves it (expiry comes to deny)."""
    rule: Name
    policy_version: Annotated[str, Field(max_length=64)] | None = None
    reason: Text | None = None
    """The rule's message, shown to the reviewer."""
    expires_in: Annotated[float, Field(gt=0, le=30 * 86400)]
    on_expiry: Literal["deny", "allow"] = "deny"
    on_reject: Literal["raise", "result"] = "raise"
    escalate_after: Annotated[float, Field(gt=0, le=30 * 86400)] | None = None
    allow_self_approval: bool = False


class ApprovalRequest(_Wire):
    """An approval request as the hub holds it (its answer to an ask, a read, or a decision)."""

    id: UUID
    state: ApprovalState
    key: Sha256
    agent: Name
    environment: Name
    run_id: Name
    span_id: Name
    kind: Literal["tool", "step", "llm", "agent"]
    name: Name
    arguments: dict[str, Any] | None
    arguments_sha256: Sha256
    arguments_valid: bool
    rule: Name
    policy_version: str | None
    reason: str | None
    on_expiry: Literal["deny", "allow"]
    on_reject: Literal["raise", "result"]
    created_at: datetime
    expires_at: datetime
    escalated_at: datetime | None = None
    decided_at: datetime | None = None
    decided_by: str | None = None
    """The reviewer's email, or ``system`` for an expiry."""
    comment: str | None = None
    """The reviewer's reason or note: shown to the agent on a rejection."""
    edited_arguments: dict[str, Any] | None = None
    """For ``approved_with_edits``: the arguments the call must run with instead."""
    claimed_at: datetime | None = None
    """When an SDK claimed the approval to run the call (at most once)."""
    claimed_by: str | None = None


class ApprovalDecision(_Wire):
    """A reviewer's answer (``POST /api/v1/approvals/{id}/decision``; the bulk form takes a
    list of ids with one decision)."""

    decision: Literal["approve", "reject", "cancel"]
    comment: Text | None = None
    """Why: shown to the agent on a rejection, kept in the audit log."""
    edited_arguments: dict[str, Any] | None = None
    """With ``approve``: run the call with these arguments instead (``approved_with_edits``);
    the hub refuses edits the active policy denies."""


class ApprovalClaim(_Wire):
    """An SDK claiming an approved request before the call runs (``.../claim``)."""

    claimant: Annotated[str, Field(min_length=1, max_length=256)]
    """Who claims: the SDK's process (host, pid, and a random id per client)."""


class ApprovalFeed(_Wire):
    """The ``approvals`` stream event: the org's requests decided recently (newest first, a
    bounded number), so a waiting SDK finds its answer; ``version`` grows with each decision."""

    version: str
    requests: tuple[ApprovalRequest, ...] = ()


DEFAULT_FEED_SIZE: Final = 200
"""How many recently decided requests an ``approvals`` event carries at most."""
