"""The shape of an enforcement stage, and of a decision it must wait for."""

from __future__ import annotations

import dataclasses
from concurrent.futures import Future
from typing import TYPE_CHECKING, ClassVar

from agentops_sdk.contract.decisions import Decision, StageName
from agentops_sdk.contract.errors import EnforcementError

if TYPE_CHECKING:
    from agentops_sdk.enforcement.call import CallInfo, CallResult
    from agentops_sdk.enforcement.link import Snapshot

__all__ = ["TIMED_OUT", "Stage", "Wait"]

TIMED_OUT = Decision("deny", reason="no decision came in time")
"""What a :class:`Wait` decides when its time runs out, unless it says otherwise."""


@dataclasses.dataclass(frozen=True, slots=True)
class Wait:
    """A decision that is not made yet: the call waits until ``pending`` has one.

    Whoever decides (the hub link's thread when a reviewer answers or a pause is lifted) sets
    the future's result; a sync call blocks on it, an async call awaits it, and a call that
    waited ``timeout`` seconds gets ``on_timeout``. When nobody waits any more (time ran out,
    the call was cancelled) the future is cancelled, so the stage can withdraw its question.
    """

    pending: Future[Decision]
    timeout: float | None = None
    """Seconds to wait at most; None waits as long as it takes."""
    on_timeout: Decision = TIMED_OUT


class Stage:
    """One step every guarded call passes before it runs, in the fixed order of ``STAGES``.

    Subclasses set ``name`` (their place in the order) and override what they need:

    - ``before(call)`` returns a :class:`~agentops_sdk.contract.decisions.Decision`, a
      :class:`Wait`, or None (no objection). It runs on the caller's thread, before every call,
      so it reads state held in memory (the hub link's snapshot) and does no I/O.
    - ``after(call, result)`` runs when a call that passed ``before`` ends, however it ended
      (refused by a later stage too): a budget reconciles its reservation there.
    - ``error`` is the exception a ``deny`` raises; ``refusal()`` may choose per decision.
    - ``fails_closed``: if ``before`` crashes, True refuses the call with
      ``EnforcementUnavailable`` (a kill switch that cannot answer must not wave calls through);
      False lets it go ahead. Either way the crash is logged, once a minute at most.
    - ``topics``: what the stage reads from the hub; installing it starts the hub link.
    - ``after_fork()``: in a forked child, replace any lock the stage holds (a parent's thread
      may have held it at the fork).
    - ``close()``: the client is shutting down (a budget stage releases its leases).
    - ``engaged(snapshot)``: False while the stage has nothing to decide (a policy stage with no
      policy set): the enforcer leaves an idle stage out of the chain, so calls do not pay for
      it, and puts it back on the hub link update that engages it.
    """

    name: ClassVar[StageName]
    error: ClassVar[type[EnforcementError]] = EnforcementError
    fails_closed: ClassVar[bool] = True
    topics: ClassVar[frozenset[str]] = frozenset()

    has_after: bool = False
    """Whether ``after`` does anything (calls skip it otherwise); set for each subclass, and
    changed on a stage by its ``engaged`` when it has an ``after`` hook only at times (a policy
    stage sums costs only while its set limits cost)."""

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        cls.has_after = cls.after is not Stage.after  # once per class, not once per call

    def before(self, call: CallInfo) -> Decision | Wait | None:
        """Decide about ``call`` before it runs; None has no objection."""
        return None

    def after(self, call: CallInfo, result: CallResult) -> None:
        """``call``, which passed ``before``, has ended as ``result`` says."""

    def engaged(self, snapshot: Snapshot) -> bool:
        """Whether the stage has anything to decide while the hub link holds ``snapshot``.

        Asked when the stage is installed and after every update of the link (on its thread,
        before any call sees the new snapshot's effects): cheap, and it must not raise."""
        return True

    def after_fork(self) -> None:
        """In a forked child: replace any lock a parent's thread may have held at the fork."""

    def close(self) -> None:
        """The client is shutting down: give back what the stage holds (a budget's leases)."""

    def refusal(self, call: CallInfo, decision: Decision) -> EnforcementError:
        """The error that stops ``call``, which this stage denied with ``decision``."""
        message = decision.reason or f"{call.name} was refused by the {self.name} stage"
        return self.error(message, rule=decision.rule, decision=decision)
