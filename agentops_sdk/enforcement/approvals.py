"""The approval stage: a call that a policy rule says needs a human's approval waits for one.

It runs after the policy stage, in the enforcer's fixed order, and acts only on a call whose
policy decision was ``require_approval`` (``CallInfo.approval``). It is installed by the client
whenever it has a hub (a hub URL and an API key, with ``controls`` on); without one such a call
is refused (``ApprovalDenied``). For such a call it:

1. freezes the arguments to JSON (:func:`~agentops_sdk.contract.policy_engine.canonical_arguments`)
   and asks the hub (``POST /api/v1/approvals``, an
   :class:`~agentops_sdk.contract.approvals.ApprovalAsk`) from a helper thread, so the call
   waits on a :class:`~agentops_sdk.enforcement.Wait`: sync code blocks, async code awaits
   with its event loop free. The request's key binds it to the run, the call's name and the
   arguments' hash: asking again (a retry, or a restarted process that resumed the run with
   ``agentops.resume_run``) gets the request already there;
2. waits for a reviewer: the hub's stream brings decided requests (``approvals`` events, the
   hub link's ``approvals`` topic); while the stream is down the request is read every
   ``poll_interval`` (1 s), and every ``backstop_interval`` (15 s) while it is up, in case an
   event was missed. The wait ends at the request's ``expires_at``;
3. acts on the answer:

   - ``approved``: the approval is claimed (``POST .../claim``); the first claim runs the call,
     a later one (``409 approval_claimed``) refuses it with ``ApprovalDenied`` ("this approval
     was used by an earlier call"), so an approved call runs at most once, across retries and
     restarts;
   - ``approved_with_edits``: the edited arguments (over the call's own: a reviewer may
     send only what changed) are checked against the policy in force, the call's own counts
     left out (a deny raises ``PolicyViolation``; a ``require_approval`` of a rule a reviewer
     answered is what the approval answered; another rule's asks again, for the edited
     arguments, up to ``_ROUNDS`` requests), claimed as above, and the call runs with them
     (``CallInfo.replacement``: decorated functions are called with them, integrations that
     take edits make the call with them; any other call is refused);
   - ``rejected`` or ``cancelled``: ``ApprovalDenied`` with the reviewer's comment; or, when
     the rule's ``on_reject`` is ``result``, the call does not run and a decorated function
     returns that text instead, and so does a LangChain tool (``ApprovalDenied.result``; see
     docs/approvals.md for the calls where raising is the only form);
   - ``expired``: the rule's ``on_expiry`` (``deny`` unless it says ``allow``; always deny
     when the arguments could not be frozen).

Fails closed: when the hub cannot be asked (unreachable after retries, or it refuses the ask)
the call is refused with ``EnforcementUnavailable``, never run unapproved; so is a claim that
cannot be made. Each outcome is recorded on the call's span as the stage's decision, with the
request's id, state, reviewer, comment and ``waited_ms``; asking adds an
``agentops.approval.requested`` event with the request's id and expiry.

A call whose waiting is cancelled (its asyncio task cancelled, a ``KeyboardInterrupt``)
withdraws: the helper stops watching and never claims; the request stays on the hub, where the
same call, asked again, finds it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import threading
import time
from collections.abc import Mapping
from concurrent.futures import Future, InvalidStateError
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar, Final

from agentops_sdk.contract.decisions import Decision, StageName
from agentops_sdk.contract.errors import (
    ApprovalDenied,
    EnforcementError,
    EnforcementUnavailable,
    PolicyViolation,
)
from agentops_sdk.enforcement.stage import Stage, Wait

if TYPE_CHECKING:
    from uuid import UUID

    from agentops_sdk.contract.approvals import ApprovalAsk, ApprovalRequest
    from agentops_sdk.enforcement.approval_requests import ApprovalClient
    from agentops_sdk.enforcement.call import CallInfo
    from agentops_sdk.enforcement.link import HubLink, Snapshot

__all__ = ["TOPIC", "ApprovalStage"]

logger = logging.getLogger("agentops_sdk")

TOPIC: Final = "approvals"
"""The hub link topic of decided requests (by id): ``agentops_sdk.contract.approvals.TOPIC``."""
REQUESTED_EVENT: Final = "agentops.approval.requested"
"""The span event recorded when the hub holds the call's request."""
_GRACE: Final = 30.0
"""Seconds past a request's expiry the caller waits for the helper at most (it ends the wait
itself at ``expires_at``: this only bounds a helper that is stuck)."""
_UNAVAILABLE: Final = "unavailable"
_ROUNDS: Final = 3
"""Approval requests one call may go through: its own, then those its edits need."""
_SEEN: Final = Decision("allow")


class ApprovalStage(Stage):
    """The ``approval`` stage: settles each ``require_approval`` with the hub's reviewers."""

    name: ClassVar[StageName] = "approval"
    error: ClassVar[type[EnforcementError]] = ApprovalDenied
    topics: ClassVar[frozenset[str]] = frozenset({TOPIC})

    def __init__(
        self,
        link: HubLink,
        hub: ApprovalClient,
        *,
        poll_interval: float = 1.0,
        backstop_interval: float = 15.0,
        askers: tuple[Stage, ...] | None = None,
    ) -> None:
        self.link = link
        self.hub = hub
        self.askers = askers
        """The stages that can decide ``require_approval`` (the policy stage): while none of
        them is engaged this stage idles too. None: always engaged."""
        self.poll_interval = poll_interval
        """Seconds between reads of a waiting request while the hub's stream is down."""
        self.backstop_interval = backstop_interval
        """Seconds between reads while the stream is up (in case an event was missed)."""

    def engaged(self, snapshot: Snapshot) -> bool:
        """Engaged while a stage that can ask for approvals is."""
        askers = self.askers
        return askers is None or any(asker.engaged(snapshot) for asker in askers)

    def before(self, call: CallInfo) -> Wait | None:
        """A :class:`Wait` for the reviewer's answer to ``call``'s approval; None when the call
        needs none."""
        required = call.approval
        if required is None:
            return None
        ask = ask_for(call, required)
        pending: Future[Decision] = Future()
        waiter = _Waiter(self, call, required, ask, pending)
        threading.Thread(target=waiter.run, name="agentops-approval", daemon=True).start()
        expiry = Decision(
            "deny",
            stage="approval",
            rule=required.rule,
            reason=f"{call.name} got no answer before its approval request expired",
            details={"state": "expired"},
        )
        return Wait(pending, timeout=ask.expires_in + _GRACE, on_timeout=expiry)

    def refusal(self, call: CallInfo, decision: Decision) -> EnforcementError:
        """``PolicyViolation`` for edits the policy denies, ``EnforcementUnavailable`` when the
        hub could not be asked, else ``ApprovalDenied`` (with ``result`` set when the rule
        returns the reason as the call's result)."""
        message = decision.reason or f"{call.name} was not approved"
        if decision.stage == "policy":
            return PolicyViolation(message, rule=decision.rule, decision=decision)
        details = decision.details
        if details.get("state") == _UNAVAILABLE:
            return EnforcementUnavailable(message, rule=decision.rule, decision=decision)
        denied = ApprovalDenied(message, rule=decision.rule, decision=decision)
        if details.get("on_reject") == "result" and details.get("state") in (
            "rejected",
            "cancelled",
        ):
            denied.result = message
        return denied

    def after_fork(self) -> None:
        """In a forked child: the hub client makes its own connections."""
        self.hub.after_fork()


def ask_for(
    call: CallInfo, required: Decision, arguments: Mapping[str, Any] | None = None
) -> ApprovalAsk:
    """The :class:`~agentops_sdk.contract.approvals.ApprovalAsk` for ``call``, which
    ``required`` (a policy's ``require_approval``) says needs an approval; for ``arguments``
    (a reviewer's edits) instead of the call's own when given."""
    import hashlib

    from agentops_sdk.contract.approvals import ApprovalAsk, approval_key
    from agentops_sdk.contract.policy_engine import canonical_arguments
    from agentops_sdk.ids import format_id

    terms: Mapping[str, Any] = required.details.get("approval") or {}
    given = call.arguments if arguments is None else arguments
    frozen = canonical_arguments(given)
    if frozen is None:
        # No JSON form: bound to a description of the values (their types and reprs), which
        # never approves itself (expiry comes to deny) and is shown to the reviewer as such.
        described = {
            name: f"{type(value).__name__}: {value!r}"[:200] for name, value in given.items()
        }
        text = json.dumps(described, sort_keys=True)
        as_json, sha256 = None, hashlib.sha256(("unfrozen\n" + text).encode()).hexdigest()
    else:
        as_json, sha256 = json.loads(frozen[0]), frozen[1]
    run_id = format_id(call.span.run.id)
    name = call.model if call.kind == "llm" and call.model else call.name
    version = required.details.get("policy_version")
    return ApprovalAsk(
        key=approval_key(run_id, name, sha256),
        agent=call.agent,
        environment=call.environment,
        run_id=run_id,
        span_id=format_id(call.span.id),
        kind=call.kind,  # type: ignore[arg-type]
        name=name,
        arguments=as_json,
        arguments_sha256=sha256,
        arguments_valid=frozen is not None,
        rule=required.rule or "approval",
        policy_version=None if version is None else str(version),
        reason=None if required.reason is None else required.reason[:1024],
        expires_in=terms.get("expires_in", 3600.0),
        on_expiry=terms.get("on_expiry", "deny"),
        on_reject=terms.get("on_reject", "raise"),
        escalate_after=terms.get("escalate_after"),
        allow_self_approval=terms.get("allow_self_approval", False),
    )


@dataclasses.dataclass(frozen=True, slots=True)
class _Another:
    """Edits that need the approval of another rule: its ``require_approval``."""

    required: Decision


class _Waiter:
    """One call's approval, on its helper thread: ask, wait, claim, then settle ``pending``."""

    def __init__(
        self,
        stage: ApprovalStage,
        call: CallInfo,
        required: Decision,
        ask: ApprovalAsk,
        pending: Future[Decision],
    ) -> None:
        self.stage = stage
        self.call = call
        self.required = required
        self.ask = ask
        self.first = ask
        """The first request's ask: its arguments are the call's own, frozen."""
        self.edited: dict[str, Any] | None = None
        """The arguments as reviewers edited them so far (JSON); None: the call's own."""
        self.pending = pending

    def run(self) -> None:
        try:
            decision = self._decide()
        except Exception:
            logger.exception("agentops: the approval of %s failed", self.call.name)
            decision = self._unavailable("the approval could not be settled (see the log)")
        if decision is None:
            return  # withdrawn: nobody waits any more
        with contextlib.suppress(InvalidStateError):  # cancelled meanwhile
            self.pending.set_result(decision)

    def _decide(self) -> Decision | None:
        """Ask, wait and settle; when a reviewer's edits need another rule's approval, ask for
        that one too (the edited arguments' own request), at most ``_ROUNDS`` times."""
        from agentops_sdk.enforcement.approval_requests import HubRefused, HubUnreachable

        hub = self.stage.hub
        answered: set[str | None] = set()
        for _ in range(_ROUNDS):
            answered.add(self.required.rule)
            try:
                request = hub.ask(self.ask)
            except (HubUnreachable, HubRefused) as exc:
                return self._unavailable(f"the hub could not be asked for an approval ({exc})")
            self.call.span.add_event(
                REQUESTED_EVENT,
                request_id=str(request.id),
                state=request.state,
                expires_at=request.expires_at.isoformat(),
            )
            if request.state == "pending":
                waited = self._wait(request)
                if waited is None:
                    return None
                request = waited
            if self.pending.done():
                return None  # withdrawn: never claim for a call that will not run
            settled = self._settle(request, answered)
            if not isinstance(settled, _Another):
                return settled
            # The edits need another rule's approval: ask for it, for the edited arguments.
            self.required = settled.required
            self.ask = ask_for(self.call, settled.required, self.edited)
        return self._refuse(f"its edited arguments still needed approval after {_ROUNDS}", {})

    def _wait(self, request: ApprovalRequest) -> ApprovalRequest | None:
        """The request once decided (or past its expiry); None if the call stopped waiting."""
        from agentops_sdk.contract.approvals import DECIDED_STATES
        from agentops_sdk.enforcement.approval_requests import HubRefused, HubUnreachable

        seen: list[ApprovalRequest] = []
        wanted = request.id

        def decided(snapshot: Snapshot) -> Decision | None:
            feed: Mapping[UUID, ApprovalRequest] | None = snapshot.get(TOPIC)
            found = None if feed is None else feed.get(wanted)
            if found is None or found.state not in DECIDED_STATES:
                return None
            seen.append(found)
            return _SEEN

        link = self.stage.link
        watched = link.watch(decided)
        # Woken by the stream's news or by the caller giving up (a cancelled future wakes no
        # ``concurrent.futures.wait``: its callbacks run, though).
        wake = threading.Event()
        watched.add_done_callback(lambda _: wake.set())
        self.pending.add_done_callback(lambda _: wake.set())
        deadline = time.monotonic() + _seconds_until(request.expires_at)
        next_read = time.monotonic()
        covered: int | None = None  # the stream connection a read has covered
        stage = self.stage
        try:
            while True:
                if self.pending.done():
                    return None
                if seen:
                    return seen[0]
                now = time.monotonic()
                connected, opened = link.connected, link.opened
                if connected and opened != covered:
                    next_read = now  # a new stream: read what it may have missed
                due = min(next_read, deadline)
                if now < due:  # wake at least each poll_interval to notice the stream change
                    wake.wait(min(due - now, stage.poll_interval))
                    wake.clear()
                    continue
                if connected:
                    covered = opened
                next_read = now + (stage.backstop_interval if connected else stage.poll_interval)
                try:
                    polled = stage.hub.read(request.id)
                except (HubUnreachable, HubRefused) as exc:
                    if now >= deadline:  # the hub cannot say otherwise: it reads as expired
                        return request.model_copy(update={"state": "expired"})
                    logger.debug("agentops: could not read approval %s: %s", request.id, exc)
                    continue
                if polled.state != "pending":
                    return polled
                if now >= deadline:
                    return polled.model_copy(update={"state": "expired"})
        finally:
            watched.cancel()

    def _settle(self, request: ApprovalRequest, answered: set[str | None]) -> Decision | _Another:
        """The stage's decision on the decided ``request``; or, for edits that need the
        approval of a rule not ``answered`` yet, that rule's ``require_approval``."""
        state = request.state
        details: dict[str, Any] = {
            "request_id": str(request.id),
            "state": state,
            "decided_by": request.decided_by,
            "comment": request.comment,
        }
        rule = self.required.rule
        if state == "expired":
            if request.on_expiry == "allow" and request.arguments_valid:
                if self.edited is not None:  # an earlier round's reviewer edited them
                    self.call.replacement = self.call.rebind(self.edited, self.first.arguments)
                return Decision(
                    "allow",
                    stage="approval",
                    rule=rule,
                    reason="the approval request expired, and the rule lets the call go ahead",
                    details=details,
                )
            reason = f"{self.call.name} got no answer before its approval request expired"
            if not request.arguments_valid:
                reason += " (its arguments could not be frozen, so it never goes ahead unread)"
            return Decision("deny", stage="approval", rule=rule, reason=reason, details=details)
        if state in ("rejected", "cancelled"):
            details["on_reject"] = request.on_reject
            verb = "rejected" if state == "rejected" else "cancelled"
            by = f" by {request.decided_by}" if request.decided_by else ""
            reason = f"{self.call.name} was {verb}{by}"
            if request.comment:
                reason += f": {request.comment}"
            return Decision("deny", stage="approval", rule=rule, reason=reason, details=details)
        if state == "approved_with_edits":
            edited = request.edited_arguments
            if edited is None:
                return self._refuse("the approval's edited arguments are missing", details)
            # Edits build on earlier rounds' (a reviewer may send only what they changed).
            base = self.edited if self.edited is not None else self.first.arguments
            self.edited = {**(base or {}), **edited}
            decision = self._recheck(self.edited, frozenset(answered))
            if decision is not None and decision.outcome == "deny":
                reason = f"the edited arguments are denied: {decision.reason}"
                return dataclasses.replace(decision, reason=reason)
            if decision is not None and decision.outcome == "require_approval":
                return _Another(decision)  # the caller asks for that rule's approval
        if self.edited is not None:
            details["edited"] = True
            self.call.replacement = self.call.rebind(self.edited, self.first.arguments)
        return self._claim(request, details)

    def _recheck(self, edited: dict[str, Any], answered: frozenset[str | None]) -> Decision | None:
        """The policy's word on the edited arguments (None: no rule fired), counting nothing
        (the call was counted when it was asked for), the rules ``answered`` left out."""
        from agentops_sdk.enforcement.policy import PolicyStage

        policy = next((s for s in self.call.stages if isinstance(s, PolicyStage)), None)
        return None if policy is None else policy.recheck(self.call, edited, answered)

    def _claim(self, request: ApprovalRequest, details: dict[str, Any]) -> Decision:
        from agentops_sdk.enforcement.approval_requests import Claimed, HubRefused, HubUnreachable

        try:
            claimed = self.stage.hub.claim(request.id)
        except Claimed:
            self.call.replacement = None
            return self._refuse("this approval was used by an earlier call", details)
        except (HubUnreachable, HubRefused) as exc:
            self.call.replacement = None
            return self._unavailable(f"the approval could not be claimed ({exc})", details)
        details["claimed_by"] = claimed.claimed_by
        by = f" by {request.decided_by}" if request.decided_by else ""
        return Decision(
            "allow",
            stage="approval",
            rule=self.required.rule,
            reason=f"approved{by}" + (" with edited arguments" if "edited" in details else ""),
            details=details,
        )

    def _refuse(self, reason: str, details: Mapping[str, Any]) -> Decision:
        return Decision(
            "deny",
            stage="approval",
            rule=self.required.rule,
            reason=f"{self.call.name} cannot run: {reason}",
            details=details,
        )

    def _unavailable(self, reason: str, details: Mapping[str, Any] | None = None) -> Decision:
        return Decision(
            "deny",
            stage="approval",
            rule=self.required.rule,
            reason=f"{self.call.name} is refused: {reason}",
            details={**(details or {}), "state": _UNAVAILABLE},
        )


def _seconds_until(moment: datetime) -> float:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - datetime.now(UTC)).total_seconds())
