"""AgentOps SDK: see every run, LLM call and tool call of your agents, and govern them.

    import agentops_sdk as agentops

    agentops.init()                       # AGENTOPS_HUB_URL / AGENTOPS_API_KEY, or a local file

    @agentops.tool
    def search(query: str) -> list[str]: ...

    @agentops.agent
    def researcher(topic: str) -> str:
        return summarise(search(topic))

Before ``init()``, or with ``AGENTOPS_ENABLED=false``, the decorators cost almost nothing and
record nothing. The SDK never raises into your code, except the enforcement errors
(``PolicyViolation``, ``BudgetExceeded``...) whose whole point is to stop a call.

Each public name is loaded on first use, so importing the package (as the hub does, for the
wire schema in :mod:`agentops_sdk.contract`) loads none of the SDK's runtime.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from agentops_sdk._version import __version__

# Loaded now, as before: importing the submodule ``agentops_sdk.stats`` later would replace the
# function ``stats`` below with the module of the same name.
from agentops_sdk.stats import FlushResult, Stats

if TYPE_CHECKING:
    from agentops_sdk.client import Client, get_client, init
    from agentops_sdk.config import Options
    from agentops_sdk.context import bind_context, current_run_id, current_span
    from agentops_sdk.decorators import agent, llm, resume_run, run, span, step, tool
    from agentops_sdk.enforcement.controls import ControlsStatus
    from agentops_sdk.errors import (
        AgentKilled,
        AgentOpsError,
        AgentPaused,
        ApprovalDenied,
        BudgetExceeded,
        ConfigurationError,
        EnforcementError,
        EnforcementUnavailable,
        PolicyError,
        PolicyViolation,
    )
    from agentops_sdk.spans import Span

__all__ = [
    "AgentKilled",
    "AgentOpsError",
    "AgentPaused",
    "ApprovalDenied",
    "BudgetExceeded",
    "Client",
    "ConfigurationError",
    "ControlsStatus",
    "EnforcementError",
    "EnforcementUnavailable",
    "FlushResult",
    "Options",
    "PolicyError",
    "PolicyViolation",
    "Span",
    "Stats",
    "__version__",
    "agent",
    "bind_context",
    "controls_status",
    "current_run_id",
    "current_span",
    "flush",
    "get_client",
    "init",
    "llm",
    "resume_run",
    "run",
    "shutdown",
    "span",
    "stats",
    "step",
    "tool",
]

_HOMES = {
    "agentops_sdk.client": ("Client", "get_client", "init"),
    "agentops_sdk.config": ("Options",),
    "agentops_sdk.context": ("bind_context", "current_run_id", "current_span"),
    "agentops_sdk.enforcement.controls": ("ControlsStatus",),
    "agentops_sdk.decorators": ("agent", "llm", "resume_run", "run", "span", "step", "tool"),
    "agentops_sdk.errors": (
        "AgentKilled",
        "AgentOpsError",
        "AgentPaused",
        "ApprovalDenied",
        "BudgetExceeded",
        "ConfigurationError",
        "EnforcementError",
        "EnforcementUnavailable",
        "PolicyError",
        "PolicyViolation",
    ),
    "agentops_sdk.spans": ("Span",),
}
_HOME_OF = {name: module for module, names in _HOMES.items() for name in names}


def __getattr__(name: str) -> Any:
    module = _HOME_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups are plain attribute reads
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


_NOTHING = FlushResult(completed=True, sent=0, spooled=0, dropped=0, pending=0)


def flush(timeout: float | None = None) -> FlushResult:
    """Deliver what is queued; return within ``timeout`` seconds saying what was sent/pending."""
    from agentops_sdk.client import get_client

    client = get_client()
    return _NOTHING if client is None else client.flush(timeout)


def shutdown(timeout: float | None = None) -> FlushResult:
    """Flush and stop the SDK (it also runs at exit, within ``shutdown_timeout``)."""
    from agentops_sdk.client import get_client

    client = get_client()
    return _NOTHING if client is None else client.shutdown(timeout)


def stats() -> Stats:
    """Delivery counters: queued, sent, dropped by reason, retried, spooled."""
    from agentops_sdk.client import get_client

    client = get_client()
    if client is None:
        from agentops_sdk.stats import Counters

        return Counters().snapshot(queued=0)
    return client.stats()


def controls_status() -> ControlsStatus:
    """The SDK's copy of the hub's emergency controls: where it was last confirmed (``stream``,
    ``poll``, ``disk`` or ``none``), how many seconds ago, its version, and whether it is stale
    (older than ``max_staleness``, so ``on_stale`` applies).

        status = agentops.controls_status()
        if status.stale:
            log.warning("controls %ss old, from %s", status.age, status.source)
    """
    from agentops_sdk.client import get_client
    from agentops_sdk.enforcement.controls import OFF

    client = get_client()
    return OFF if client is None or client.controls is None else client.controls.status()
