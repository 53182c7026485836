"""The guard chain: the one "before call" hook every decorated and integration call passes.

A guard looks at a :class:`CallInfo` and either returns (the call may go ahead) or raises an
:class:`~agentops_sdk.errors.EnforcementError` (the call must not happen; the error reaches the
agent and the span is recorded as ``blocked``). Kill switches, policies, budgets and approvals
are guards. Guards run in the order they were added; the first to raise wins.

A guard is any callable taking a ``CallInfo``. One that must wait (an approval) may also offer
``acheck(call)``, a coroutine used instead when the guarded function is async.

A guard that fails with anything other than an ``EnforcementError`` has a bug: the error is
logged and the call goes ahead, because the SDK must never break the agent it watches.

    def no_deletes(call: CallInfo) -> None:
        if call.kind == "tool" and call.name.startswith("delete_"):
            raise agentops.PolicyViolation(f"{call.name} is not allowed", rule="no-deletes")

    agentops.get_client().guards.add(no_deletes)
"""

from __future__ import annotations

import inspect
import logging
import threading
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from agentops_sdk.errors import EnforcementError

if TYPE_CHECKING:
    from agentops_sdk.spans import Span

__all__ = ["CallInfo", "Guard", "GuardChain"]

logger = logging.getLogger("agentops_sdk")

Guard = Callable[["CallInfo"], object]
"""A guard returns nothing (or, for ``async def`` guards, a coroutine) or raises."""


class CallInfo:
    """What a guard knows about a call that is about to run."""

    __slots__ = ("_arguments", "_param_names", "args", "kwargs", "span")

    def __init__(
        self,
        span: Span,
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
        param_names: tuple[str, ...] = (),
    ) -> None:
        self.span = span
        self.args = args
        self.kwargs = kwargs
        self._param_names = param_names
        self._arguments: dict[str, Any] | None = None

    @property
    def kind(self) -> str:
        """``agent``, ``tool``, ``step`` or ``llm``."""
        return self.span.kind

    @property
    def name(self) -> str:
        """The tool, step or agent name; for LLM calls, the span name."""
        return self.span.name

    @property
    def agent(self) -> str:
        """The agent whose run this call belongs to."""
        return self.span.run.agent

    @property
    def environment(self) -> str:
        """``prod``, ``staging``, ``test`` or ``dev``."""
        return self.span.run.environment

    @property
    def tags(self) -> tuple[str, ...]:
        """The call's own tags followed by its run's, each once (a run's root shares its tags)."""
        return tuple(dict.fromkeys(self.span.tags + self.span.run.tags))

    @property
    def model(self) -> str | None:
        """The model of an LLM call, when known before the call."""
        return self.span.model

    @property
    def arguments(self) -> dict[str, Any]:
        """The call's arguments by parameter name (positional ones named from the signature)."""
        if self._arguments is None:
            named = {
                name: value
                for name, value in zip(self._param_names, self.args, strict=False)
                if name  # "" stands for self/cls
            }
            extra = self.args[len(self._param_names) :]
            if extra:
                named["*args"] = extra
            named.update(self.kwargs)
            self._arguments = named
        return self._arguments


class GuardChain:
    """The ordered guards of one client. ``active`` is False while the chain is empty."""

    def __init__(self) -> None:
        self._guards: tuple[Guard, ...] = ()
        self._lock = threading.Lock()
        self.active = False

    def add(self, guard: Guard) -> Callable[[], None]:
        """Add ``guard`` at the end of the chain; return a function that removes it."""
        with self._lock:
            self._guards += (guard,)
            self.active = True

        def remove() -> None:
            with self._lock:
                self._guards = tuple(g for g in self._guards if g is not guard)
                self.active = bool(self._guards)

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
                    logger.error(
                        "agentops guard %r is async and cannot check the sync call %s; give it "
                        "a sync __call__ and an async acheck",
                        guard,
                        call.name,
                    )
            except EnforcementError:
                raise
            except Exception:
                logger.exception("agentops guard %r failed; the call goes ahead", guard)

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
                logger.exception("agentops guard %r failed; the call goes ahead", guard)


def _discard(awaitable: Awaitable[object]) -> None:
    close = getattr(awaitable, "close", None)
    if close is not None:
        close()  # no "coroutine was never awaited" warning: we said why above
