"""Every exception the SDK can raise, in one hierarchy: see :mod:`agentops_sdk.contract.errors`.

This is their public path (``agentops_sdk.errors.PolicyViolation``, the name spans record).
"""

from __future__ import annotations

from agentops_sdk.contract.errors import (
    AgentKilled,
    AgentOpsError,
    AgentPaused,
    ApprovalDenied,
    BudgetExceeded,
    ConfigurationError,
    EnforcementError,
    EnforcementUnavailable,
    PolicyError,
    PolicyProblem,
    PolicyViolation,
    PricingUnavailable,
)

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
