"""What of an org's governance reaches one agent of the registry: the controls, budgets and
policy rules whose scope can hold for a call of that agent.

An agent runs in the environments its profile lists (none listed: any of them), as its team,
carrying its registry tags, so a scope applies when it holds for the agent in at least one of
those environments: a control or budget scoped to ``staging`` reaches an agent enabled for
``prod`` and ``staging``. A call's own tags are not known ahead of it: a scope on a tag the
registry does not give the agent is left out (a run may still carry that tag and meet it).
Scopes match as the SDK matches them (:meth:`ControlScope.applies_to
<agentops_sdk.contract.controls.ControlScope.applies_to>`; rule scopes as the policy engine
reads them, agent names as globs).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from agentops_sdk.contract.budgets import Budget
from agentops_sdk.contract.controls import AgentProfile, Control, ControlScope
from agentops_sdk.contract.patterns import compile_glob
from agentops_sdk.contract.policy import PolicySet, Rule
from agentops_server.services.governance.agents import ENVIRONMENTS

__all__ = ["budgets_for", "controls_for", "rules_for"]


def controls_for(
    profile: AgentProfile, controls: Iterable[Control], now: dt.datetime
) -> list[Control]:
    """The live controls (paused or killed, not expired) whose scope reaches the agent."""
    return [
        control for control in controls if control.live(now) and _reaches(control.scope, profile)
    ]


def budgets_for(profile: AgentProfile, budgets: Iterable[Budget]) -> list[Budget]:
    """The budgets whose scope reaches the agent, as listed."""
    return [budget for budget in budgets if _reaches(budget.scope, profile)]


def rules_for(profile: AgentProfile, policy: PolicySet | None) -> list[Rule]:
    """The rules of ``policy`` (None: no active set) whose scope reaches the agent, in order."""
    if policy is None:
        return []
    return [rule for rule in policy.rules if _rule_reaches(rule, profile)]


def _environments(profile: AgentProfile) -> tuple[str, ...]:
    return profile.environments or ENVIRONMENTS


def _reaches(scope: ControlScope, profile: AgentProfile) -> bool:
    return any(
        scope.applies_to(
            agent=profile.name,
            environment=environment,
            tags=(),
            run_id=None,
            profile=profile,
        )
        for environment in _environments(profile)
    )


def _rule_reaches(rule: Rule, profile: AgentProfile) -> bool:
    scope = rule.scope
    if scope.environment and not set(scope.environment) & set(_environments(profile)):
        return False
    if scope.team and profile.team not in scope.team:
        return False
    if scope.tag and not set(scope.tag) & set(profile.tags):
        return False
    return not scope.agent or any(compile_glob(name)(profile.name) for name in scope.agent)
