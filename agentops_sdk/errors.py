"""Every exception the SDK can raise, in one hierarchy.

The SDK never raises into agent code except for the enforcement errors below, which exist to
stop a call before it happens, and :class:`ConfigurationError`, raised by ``init()`` for bad
options.

::

    AgentOpsError
    ├── ConfigurationError        bad option or environment variable given to init()
    └── EnforcementError          a guard stopped a call before it ran
        ├── PolicyViolation       a policy rule denies the call
        ├── BudgetExceeded        the call would spend past a hard budget
        ├── ApprovalDenied        a human (or a timeout) refused a required approval
        ├── AgentPaused           the agent is paused by an emergency control
        └── AgentKilled           the agent is stopped by the kill switch

Catch exactly what you mean::

    try:
        send_email(to, body)
    except agentops.PolicyViolation as exc:
        log.warning("blocked by %s", exc.rule)
"""

from __future__ import annotations

__all__ = [
    "AgentKilled",
    "AgentOpsError",
    "AgentPaused",
    "ApprovalDenied",
    "BudgetExceeded",
    "ConfigurationError",
    "EnforcementError",
    "PolicyViolation",
]


class AgentOpsError(Exception):
    """Base class of every error the SDK raises."""


class ConfigurationError(AgentOpsError, ValueError):
    """An option passed to ``init()``, or read from the environment, is invalid."""


class EnforcementError(AgentOpsError):
    """A guard stopped a call before it ran.

    ``rule`` names what decided (a policy rule id, a budget name, a control id) when known.
    """

    code = "enforcement"

    def __init__(self, message: str, *, rule: str | None = None) -> None:
        super().__init__(message)
        self.rule = rule


class PolicyViolation(EnforcementError):
    """A policy rule denies the call."""

    code = "policy_violation"


class BudgetExceeded(EnforcementError):
    """The call would spend past a hard budget limit."""

    code = "budget_exceeded"


class ApprovalDenied(EnforcementError):
    """A required human approval was refused or timed out."""

    code = "approval_denied"


class AgentPaused(EnforcementError):
    """The agent is paused by an emergency control."""

    code = "agent_paused"


class AgentKilled(EnforcementError):
    """The agent is stopped by the kill switch."""

    code = "agent_killed"
