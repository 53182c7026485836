"""Every exception the SDK can raise, in one hierarchy.

The SDK never raises into agent code except for the enforcement errors below, which exist to
stop a call before it happens, and :class:`ConfigurationError`, raised by ``init()`` for bad
options.

::

    AgentOpsError
    ├── ConfigurationError        bad option or environment variable given to init()
    │   ├── PolicyError           a policy set that cannot be read or is invalid
    │   └── PricingUnavailable    local pricing asked for without the pricing extra
    └── EnforcementError          a stage of the enforcer stopped a call before it ran
        ├── PolicyViolation       a policy rule denies the call
        ├── BudgetExceeded        the call would spend past a hard budget
        ├── ApprovalDenied        a human (or a timeout) refused a required approval
        ├── AgentPaused           the agent is paused by an emergency control
        ├── AgentKilled           the agent is stopped by the kill switch
        └── EnforcementUnavailable  a stage that must decide failed, so the call is refused

Catch exactly what you mean::

    try:
        send_email(to, body)
    except agentops.PolicyViolation as exc:
        log.warning("blocked by %s", exc.rule)

The public path of these classes is ``agentops_sdk.errors`` (and ``agentops_sdk`` for most).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agentops_sdk.contract.decisions import Decision

__all__ = [
    "AgentKilled",
    "AgentOpsError",
    "AgentPaused",
    "ApprovalDenied",
    "BudgetExceeded",
    "ConfigurationError",
    "EnforcementError",
    "EnforcementUnavailable",
    "PolicyError",
    "PolicyProblem",
    "PolicyViolation",
    "PricingUnavailable",
]


class AgentOpsError(Exception):
    """Base class of every error the SDK raises."""


class ConfigurationError(AgentOpsError, ValueError):
    """An option passed to ``init()``, or read from the environment, is invalid."""


@dataclasses.dataclass(frozen=True, slots=True)
class PolicyProblem:
    """One thing wrong with a policy set: where, and what."""

    rule: str | None
    """The id of the rule it is in; None for the set itself (or a rule without a valid id)."""
    field: str
    """Where in the document, as a JSON pointer: ``/rules/1/when/not_regex``."""
    message: str

    def __str__(self) -> str:
        where = self.field if self.rule is None else f"rule {self.rule!r}, {self.field}"
        return f"{where}: {self.message}"


class PolicyError(ConfigurationError):
    """A policy set cannot be read (no such file, not JSON or YAML, YAML without PyYAML) or is
    invalid; ``problems`` lists what is wrong, each with its rule id and field."""

    def __init__(self, message: str, problems: tuple[PolicyProblem, ...] = ()) -> None:
        self.problems = problems
        details = "".join(f"\n  {problem}" for problem in problems)
        super().__init__(f"{message}{':' if problems else ''}{details}")


class PricingUnavailable(ConfigurationError):
    """Local pricing (:mod:`agentops_sdk.pricing`) needs the ``genai-prices`` package:
    ``pip install "agentops-hub[pricing]"``."""


class EnforcementError(AgentOpsError):
    """A stage of the enforcer stopped a call before it ran.

    ``rule`` names what decided (a policy rule id, a budget name, a control id) when known;
    ``decision`` is the whole :class:`~agentops_sdk.contract.decisions.Decision` when a
    built-in stage refused (a user guard raises its error itself and leaves it ``None``).
    """

    code = "enforcement"

    def __init__(
        self, message: str, *, rule: str | None = None, decision: Decision | None = None
    ) -> None:
        super().__init__(message)
        self.rule = rule
        self.decision = decision


class PolicyViolation(EnforcementError):
    """A policy rule denies the call."""

    code = "policy_violation"


class BudgetExceeded(EnforcementError):
    """The call would spend past a hard budget limit."""

    code = "budget_exceeded"


class ApprovalDenied(EnforcementError):
    """A required human approval was refused or timed out.

    ``result`` is set when the rule's ``on_reject`` is ``result``: the text a decorated tool or
    step returns instead of running (calls that cannot return it raise this error).
    """

    code = "approval_denied"

    def __init__(
        self,
        message: str,
        *,
        rule: str | None = None,
        decision: Decision | None = None,
        result: str | None = None,
    ) -> None:
        super().__init__(message, rule=rule, decision=decision)
        self.result = result


class AgentPaused(EnforcementError):
    """The agent is paused by an emergency control."""

    code = "agent_paused"


class AgentKilled(EnforcementError):
    """The agent is stopped by the kill switch."""

    code = "agent_killed"


class EnforcementUnavailable(EnforcementError):
    """A stage that fails closed (controls, budgets) crashed: the call is refused, not waved
    through. The crash is in the SDK's log."""

    code = "enforcement_unavailable"


# Spans record an error by its class's qualified name, and the hub shows it: that name is the
# public path, wherever the class is defined.
for _error in (
    AgentOpsError,
    ConfigurationError,
    PolicyError,
    EnforcementError,
    PolicyViolation,
    BudgetExceeded,
    ApprovalDenied,
    AgentPaused,
    AgentKilled,
    EnforcementUnavailable,
):
    _error.__module__ = "agentops_sdk.errors"
del _error
