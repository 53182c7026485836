"""The user's guards: the enforcer's last stage, after controls, policy, budget and approval.

A guard looks at a :class:`CallInfo` and either returns (the call may go ahead) or raises an
:class:`~agentops_sdk.errors.EnforcementError` (the call must not happen; the error reaches the
agent and the span is recorded as ``blocked``, with the refusal as a decision event). Guards run
in the order they were added; the first to raise wins.

A guard is any callable taking a ``CallInfo``. One that must wait (an approval of your own) may
also offer ``acheck(call)``, a coroutine used instead when the guarded function is async.

A guard that fails with anything other than an ``EnforcementError`` has a bug: the error is
logged (once a minute at most per guard) and the call goes ahead, because the SDK must never
break the agent it watches. (The built-in stages before it decide for themselves: see
:mod:`agentops_sdk.enforcement`.)

    def no_deletes(call: CallInfo) -> None:
        if call.kind == "tool" and call.name.startswith("delete_"):
            raise agentops.PolicyViolation(f"{call.name} is not allowed", rule="no-deletes")

    agentops.get_client().guards.add(no_deletes)
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Awaitable, Callable

from agentops_sdk.contract.errors import EnforcementError
from agentops_sdk.enforcement.call import CallInfo
from agentops_sdk.enforcement.failures import FailureLog

__all__ = ["CallInfo", "Guard", "GuardChain"]

Guard = Callable[[CallInfo], object]
"""A guard returns nothing (or, for ``async def`` guards, a coroutine) or raises."""


class GuardChain:
    """The ordered guards of one client. ``active`` is False while the chain is empty."""

    def __init__(self) -> None:
        self._guards: tuple[Guard, ...] = ()
        self._lock = threading.Lock()
        self._failures = FailureLog()
        self.active = False
        self.on_change: Callable[[], None] | None = None
        """Called after each change (the enforcer learns whether it has anything to run)."""

    def add(self, guard: Guard) -> Callable[[], None]:
        """Add ``guard`` at the end of the chain; return a function that removes it."""
        with self._lock:
            self._guards += (guard,)
            self.active = True
        self._changed()

        def remove() -> None:
            with self._lock:
                self._guards = tuple(g for g in self._guards if g is not guard)
                self.active = bool(self._guards)
            self._changed()

        return remove

    def check(self, call: CallInfo) -> None:
        """Run every guard; an ``EnforcementError`` from one propagates.

        A coroutine guard (``async def``) cannot run for a sync call: it is logged and skipped.
        """
        for guard in self._guards:
            try:
                outcome = guard(call)
                if inspect.isawaitable(outcome):
                    _discard(outcome)
                    self._failures.failed(
                        guard,
                        "agentops guard %r is async and cannot check the sync call %s; give it "
                        "a sync __call__ and an async acheck",
                        guard,
                        call.name,
                    )
            except EnforcementError:
                raise
            except Exception:
                self._failures.failed(guard, "agentops guard %r failed; the call goes ahead", guard)

    async def acheck(self, call: CallInfo) -> None:
        """Like :meth:`check`, awaiting guards' ``acheck`` and coroutine guards."""
        for guard in self._guards:
            try:
                asynchronous: Callable[[CallInfo], Awaitable[None]] | None = getattr(
                    guard, "acheck", None
                )
                if asynchronous is not None and inspect.iscoroutinefunction(asynchronous):
                    await asynchronous(call)
                else:
                    outcome = guard(call)
                    if inspect.isawaitable(outcome):
                        await outcome
            except EnforcementError:
                raise
            except Exception:
                self._failures.failed(guard, "agentops guard %r failed; the call goes ahead", guard)

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()


def _discard(awaitable: Awaitable[object]) -> None:
    close = getattr(awaitable, "close", None)
    if close is not None:
        close()  # no "coroutine was never awaited" warning: we said why above
