"""Where the current span lives, and how it travels into other threads.

The current span is a ``contextvars.ContextVar``, so it follows nested calls, ``await``, asyncio
tasks and ``asyncio.gather`` by itself. Threads do not inherit context: wrap what you hand to a
thread pool with :func:`bind_context` so its spans join the run that submitted it.

    with ThreadPoolExecutor() as pool:
        pages = list(pool.map(agentops.bind_context(fetch_page), urls))
"""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, ParamSpec, TypeVar

if TYPE_CHECKING:
    from agentops_sdk.spans import Span

__all__ = ["CURRENT", "RESUMING", "bind_context", "current_run_id", "current_span"]

P = ParamSpec("P")
R = TypeVar("R")

CURRENT: contextvars.ContextVar[Span | None] = contextvars.ContextVar(
    "agentops_current_span", default=None
)
"""The span whose code is running in this context; its ``run`` is the current run."""
RESUMING: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "agentops_resumed_run", default=None
)
"""The id a run started in this context takes (``agentops.resume_run``); None: a new one."""


def bind_context(fn: Callable[P, R]) -> Callable[P, R]:
    """Return ``fn`` bound to the caller's context, for running in another thread.

    The context is captured now; each call runs in a fresh copy of it, so concurrent calls in
    several threads are safe and changes made inside one never leak out.
    """
    captured = contextvars.copy_context()

    @functools.wraps(fn)
    def bound(*args: P.args, **kwargs: P.kwargs) -> R:
        return captured.copy().run(fn, *args, **kwargs)

    return bound


def current_span() -> Span:
    """The span of the code running now; a do-nothing span outside any."""
    from agentops_sdk.spans import NOOP_SPAN

    return CURRENT.get() or NOOP_SPAN


def current_run_id() -> str | None:
    """The id of the current run (a UUID string), or None outside any run.

    Keep it to resume the run in another process with ``agentops.resume_run(run_id)``: an
    approval asked in the run is then found again, not asked twice.
    """
    span = CURRENT.get()
    if span is None:
        return None
    from agentops_sdk.ids import format_id

    return format_id(span.run.id)
