"""What an enforcement stage decides about a call, shared by the SDK's enforcer and the hub.

A :class:`Decision` says what should happen to a call (``outcome``), which stage decided
(``stage``), by which rule (``rule``: a policy rule id, a control id, a budget name), and why
(``reason``, shown to the agent when the call is refused). Stages run in the fixed order of
:data:`STAGES`. A decision other than a plain allow is recorded on the call's span as an event
named :data:`DECISION_EVENT` whose attributes are :meth:`Decision.to_wire` (validated by the
wire schema's ``DecisionRecord``).

    Decision("deny", stage="policy", rule="no-deletes", reason="Deleting is not allowed.")
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final, Literal, get_args

__all__ = [
    "ALLOW",
    "DECISION_EVENT",
    "MAX_REASON_CHARS",
    "MAX_RULE_CHARS",
    "OUTCOMES",
    "STAGES",
    "Decision",
    "Outcome",
    "StageName",
]

Outcome = Literal["allow", "deny", "require_approval", "warn"]
"""``allow``: the call may run; ``deny``: it must not; ``require_approval``: a human must agree
first; ``warn``: it may run, and the would-be refusal is recorded (shadow mode)."""
OUTCOMES: Final[tuple[Outcome, ...]] = get_args(Outcome)

StageName = Literal["controls", "policy", "budget", "approval", "guards"]
"""The enforcer's stages. ``guards`` are the user's own (``client.guards.add(...)``)."""
STAGES: Final[tuple[StageName, ...]] = get_args(StageName)
"""The stages in the order every call passes them."""

DECISION_EVENT: Final = "agentops.decision"
"""The name of the span event that records a decision."""
MAX_RULE_CHARS: Final = 256
MAX_REASON_CHARS: Final = 1024

_NO_DETAILS: Mapping[str, Any] = MappingProxyType({})


@dataclasses.dataclass(frozen=True, slots=True)
class Decision:
    """One stage's verdict on one call. Immutable: stages keep ready-made ones and share them."""

    outcome: Outcome
    stage: StageName | None = None
    """Who decided; None for the allow of a call that no stage objected to."""
    rule: str | None = None
    reason: str | None = None
    details: Mapping[str, Any] = dataclasses.field(default_factory=lambda: _NO_DETAILS)
    """What else the deciding stage knows (a policy set's version, a control's scope...):
    JSON values only, as they travel on the wire."""

    def to_wire(self) -> dict[str, Any]:
        """The attributes of the span event recording this decision (bounded in size)."""
        return {
            "outcome": self.outcome,
            "stage": self.stage,
            "rule": None if self.rule is None else self.rule[:MAX_RULE_CHARS],
            "reason": None if self.reason is None else self.reason[:MAX_REASON_CHARS],
            "details": dict(self.details),
        }


ALLOW: Final = Decision("allow")
"""What a call that no stage objected to gets."""
