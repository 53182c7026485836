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
"""

from __future__ import annotations

from agentops_sdk._version import __version__
from agentops_sdk.client import Client, get_client, init
from agentops_sdk.config import Options
from agentops_sdk.context import bind_context, current_span
from agentops_sdk.decorators import agent, llm, run, span, step, tool
from agentops_sdk.errors import (
    AgentKilled,
    AgentOpsError,
    AgentPaused,
    ApprovalDenied,
    BudgetExceeded,
    ConfigurationError,
    EnforcementError,
    PolicyViolation,
)
from agentops_sdk.spans import Span
from agentops_sdk.stats import FlushResult, Stats

__all__ = [
    "AgentKilled",
    "AgentOpsError",
    "AgentPaused",
    "ApprovalDenied",
    "BudgetExceeded",
    "Client",
    "ConfigurationError",
    "EnforcementError",
    "FlushResult",
    "Options",
    "PolicyViolation",
    "Span",
    "Stats",
    "__version__",
    "agent",
    "bind_context",
    "current_span",
    "flush",
    "get_client",
    "init",
    "llm",
    "run",
    "shutdown",
    "span",
    "stats",
    "step",
    "tool",
]

_NOTHING = FlushResult(completed=True, sent=0, spooled=0, dropped=0, pending=0)


def flush(timeout: float | None = None) -> FlushResult:
    """Deliver what is queued; return within ``timeout`` seconds saying what was sent/pending."""
    client = get_client()
    return _NOTHING if client is None else client.flush(timeout)


def shutdown(timeout: float | None = None) -> FlushResult:
    """Flush and stop the SDK (it also runs at exit, within ``shutdown_timeout``)."""
    client = get_client()
    return _NOTHING if client is None else client.shutdown(timeout)


def stats() -> Stats:
    """Delivery counters: queued, sent, dropped by reason, retried, spooled."""
    client = get_client()
    if client is None:
        from agentops_sdk.stats import Counters

        return Counters().snapshot(queued=0)
    return client.stats()
