"""The enforcer: every guarded call passes its stages, in one fixed order, before it runs.

See :mod:`agentops_sdk.enforcement` for the whole picture.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from concurrent.futures import CancelledError
from typing import TYPE_CHECKING

from agentops_sdk.contract.decisions import ALLOW, DECISION_EVENT, STAGES, Decision, StageName
from agentops_sdk.contract.errors import (
    ApprovalDenied,
    EnforcementError,
    EnforcementUnavailable,
)
from agentops_sdk.enforcement.call import CallInfo, CallResult
from agentops_sdk.enforcement.failures import FailureLog
from agentops_sdk.enforcement.stage import Stage, Wait

if TYPE_CHECKING:
    from agentops_sdk.enforcement.link import HubLink, Snapshot
    from agentops_sdk.guards import GuardChain

__all__ = ["Enforcer"]


class Enforcer:
    """Runs each call through the installed stages (controls, policy, budget, approval), then
    the user's guards, and each stage's ``after`` hook when the call ends.

    ``active`` is False while there is nothing to run: calls then skip the enforcer entirely.
    """

    def __init__(self, guards: GuardChain, link: HubLink) -> None:
        self.guards = guards
        """The last stage: the user's own guards (``client.guards.add(...)``)."""
        self.link = link
        """The hub link whose snapshot the stages read."""
        self.stages: tuple[Stage, ...] = ()
        """The installed stages before the user's guards, in order; replaced, never changed."""
        self.active = False
        self.has_after = False
        """Whether a stage of ``stages`` has an after hook (calls that passed exactly
        ``stages`` skip :meth:`after` when none has)."""
        self._installed: dict[StageName, Stage] = {}
        self._lock = threading.Lock()
        self._failures = FailureLog()
        guards.on_change = self._refresh
        link.on_update = self._engage

    # -- setting up ---------------------------------------------------------------------------

    def install(self, stage: Stage) -> Callable[[], None]:
        """Put ``stage`` in its place in the order; return a function that takes it out again.

        A stage that reads from the hub (``topics``) starts the hub link, if the client has one.
        """
        if stage.name not in STAGES or stage.name == "guards":
            raise ValueError(
                f"a stage is one of {', '.join(STAGES[:-1])}, not {stage.name!r} "
                "(add your own checks with client.guards.add)"
            )
        with self._lock:
            if stage.name in self._installed:
                raise ValueError(f"a {stage.name} stage is installed already")
            self._installed[stage.name] = stage
            self._refresh_locked()
        if stage.topics:
            self.link.require(stage.topics)

        def uninstall() -> None:
            with self._lock:
                if self._installed.get(stage.name) is stage:
                    del self._installed[stage.name]
                    self._refresh_locked()

        return uninstall

    def close(self) -> None:
        """Close every installed stage, then stop the hub link (the client is shutting down).
        A stage that fails to close is logged."""
        for stage in list(self._installed.values()):
            try:
                stage.close()
            except Exception:
                self._failures.failed(stage, "agentops: the %s stage failed to close", stage.name)
        self.link.close()

    def after_fork(self) -> None:
        """In a forked child: fresh locks (the stages' too), and the hub link starts over with
        its own thread."""
        self._lock = threading.Lock()
        self._failures = FailureLog()
        for stage in self.stages:
            stage.after_fork()
        self.link.after_fork()

    def _refresh(self) -> None:
        with self._lock:
            self._refresh_locked()

    def _engage(self, snapshot: Snapshot) -> None:
        """The hub link published ``snapshot``: a stage it engages or idles joins or leaves
        (and one whose ``after`` hook it turned on or off is heeded)."""
        with self._lock:
            if any(
                stage.engaged(snapshot) != (stage in self.stages)
                for stage in self._installed.values()
            ) or self.has_after != any(stage.has_after for stage in self.stages):
                self._refresh_locked()

    def _refresh_locked(self) -> None:
        snapshot = self.link.snapshot
        self.stages = tuple(
            stage
            for name in STAGES
            if (stage := self._installed.get(name)) is not None and stage.engaged(snapshot)
        )
        self.has_after = any(stage.has_after for stage in self.stages)
        self.active = bool(self.stages) or self.guards.active

    # -- before a call ------------------------------------------------------------------------

    def before(self, call: CallInfo) -> Decision:
        """Pass ``call`` through every stage; a stage that must wait blocks this thread.

        Returns the decision that let it run (``ALLOW`` when no stage objected); raises the
        refusing stage's ``EnforcementError`` when it must not run. Every decision but a plain
        allow is recorded on the call's span.
        """
        call.stages = self.stages
        outcome = self._govern(call, None)
        while isinstance(outcome, Wait):
            outcome = self._govern(call, self._wait(call, outcome))
        if self.guards.active:
            try:
                self.guards.check(call)
            except EnforcementError as exc:
                self._refused_by_guard(call, exc)
                raise
        return outcome

    async def abefore(self, call: CallInfo) -> Decision:
        """Async twin of :meth:`before`: waits are awaited, user guards' ``acheck`` is used."""
        call.stages = self.stages
        outcome = self._govern(call, None)
        while isinstance(outcome, Wait):
            outcome = self._govern(call, await self._await(call, outcome))
        if self.guards.active:
            try:
                await self.guards.acheck(call)
            except EnforcementError as exc:
                self._refused_by_guard(call, exc)
                raise
        return outcome

    def stop(self, call: CallInfo, stage: Stage, decision: Decision) -> None:
        """Stop ``call`` while it runs (a stream that a kill reached): record ``decision``, a
        deny by ``stage``, on its span and raise the stage's refusal."""
        self._take(call, stage, decision, settles=False)

    def _govern(self, call: CallInfo, settled: Decision | None) -> Decision | Wait:
        """Run the stages ``call`` has not passed yet, until one makes it wait; ``settled`` is
        how the last wait ended (None: no wait, or the waiting stage failed open)."""
        stages = call.stages
        reached = call.reached
        if settled is not None:
            self._take(call, stages[reached - 1], settled, settles=True)
        # ``call.reached`` is written only where something else reads it: this loop runs
        # before every governed call.
        for stage in stages[reached:] if reached else stages:
            reached += 1
            try:
                verdict = stage.before(call)
            except EnforcementError as exc:
                call.reached = reached
                self._record(call, exc.decision or _denial(stage.name, exc))
                raise
            except Exception:
                call.reached = reached
                self._crashed(call, stage)  # raises, for a stage that fails closed
                continue
            if verdict is not None:  # None, no objection, is the common case
                call.reached = reached
                if isinstance(verdict, Wait):
                    return verdict
                self._take(call, stage, verdict, settles=False)
        call.reached = reached
        if call.approval is not None:
            # Asked for, and no approval stage settled it (none is installed, or it let the
            # request pass unasked): never run such a call.
            unasked = any(stage.name == "approval" for stage in stages)
            decision = Decision(
                "deny",
                stage="approval",
                rule=call.approval.rule,
                reason=f"{call.name} needs an approval, and none was given"
                + ("" if unasked else " (no approval stage is installed: approvals need a hub)"),
            )
            self._record(call, decision)
            raise ApprovalDenied(decision.reason or "", rule=decision.rule, decision=decision)
        return call.decision or ALLOW

    def _take(self, call: CallInfo, stage: Stage, decision: Decision, *, settles: bool) -> None:
        """Act on ``stage``'s ``decision``: record it, and raise its refusal if it denies."""
        if decision.stage is None:
            decision = dataclasses.replace(decision, stage=stage.name)
        outcome = decision.outcome
        if outcome == "allow" and not settles:
            return  # a plain allow is the common case: nothing to record
        self._record(call, decision)
        if outcome == "deny":
            raise stage.refusal(call, decision)
        if outcome == "require_approval":
            call.approval = decision
        elif outcome == "allow" and stage.name == "approval":
            call.approval = None

    def _wait(self, call: CallInfo, wait: Wait) -> Decision | None:
        started = time.monotonic()
        try:
            decision = wait.pending.result(wait.timeout)
        except TimeoutError:
            wait.pending.cancel()  # nobody waits any more: the stage may withdraw its question
            decision = wait.on_timeout
        except CancelledError:
            decision = wait.on_timeout
        except Exception:
            self._crashed(call, call.stages[call.reached - 1])
            return None
        except BaseException:  # interrupted (KeyboardInterrupt): the question is moot
            wait.pending.cancel()
            raise
        return _waited(decision, started)

    async def _await(self, call: CallInfo, wait: Wait) -> Decision | None:
        import asyncio

        started = time.monotonic()
        try:
            # Cancelling the task, or timing out, cancels ``pending`` too.
            decision = await asyncio.wait_for(asyncio.wrap_future(wait.pending), wait.timeout)
        except TimeoutError:
            decision = wait.on_timeout
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # the call itself is being cancelled
            decision = wait.on_timeout  # the stage withdrew its question
        except Exception:
            self._crashed(call, call.stages[call.reached - 1])
            return None
        return _waited(decision, started)

    def _crashed(self, call: CallInfo, stage: Stage) -> None:
        """``stage`` raised while deciding about ``call``: refuse it (raise) or let it go (return),
        as the stage says."""
        self._failures.failed(
            stage,
            "agentops: the %s stage failed on %s; %s",
            stage.name,
            call.name,
            "the call is refused" if stage.fails_closed else "the call goes ahead",
        )
        if not stage.fails_closed:
            return
        reason = f"the {stage.name} stage failed, so the call is refused"
        decision = Decision("deny", stage=stage.name, reason=reason)
        self._record(call, decision)
        raise EnforcementUnavailable(reason, decision=decision)

    def _refused_by_guard(self, call: CallInfo, exc: EnforcementError) -> None:
        self._record(call, exc.decision or _denial("guards", exc))

    def _record(self, call: CallInfo, decision: Decision) -> None:
        call.decision = decision
        call.span.add_event(DECISION_EVENT, **decision.to_wire())

    # -- after a call ---------------------------------------------------------------------------

    def after(self, call: CallInfo, error: BaseException | None) -> None:
        """``call`` has ended (with ``error``, if it raised): run the ``after`` hooks of the
        stages it passed. A hook that fails is logged; it cannot change what happened."""
        stages = call.stages
        if stages is self.stages and not self.has_after:
            return  # the common case: no installed stage has an after hook
        result = None
        for stage in stages[: call.reached]:
            if not stage.has_after:
                continue
            if result is None:
                result = CallResult(call.span, error)
            try:
                stage.after(call, result)
            except Exception:
                self._failures.failed(
                    stage, "agentops: the %s stage failed after %s", stage.name, call.name
                )


def _denial(stage: StageName, exc: EnforcementError) -> Decision:
    """The decision a stage's own ``EnforcementError`` stands for (user guards raise them)."""
    return Decision("deny", stage=stage, rule=exc.rule, reason=str(exc))


def _waited(decision: Decision, started: float) -> Decision:
    waited_ms = round((time.monotonic() - started) * 1000, 1)
    return dataclasses.replace(decision, details={**decision.details, "waited_ms": waited_ms})
