"""Which controls, budgets and policy rules reach an agent of the registry (its page shows
them): a scope reaches it when it holds in one of the agent's environments, with its team and
registry tags."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

from agentops_sdk.contract.budgets import Budget
from agentops_sdk.contract.controls import AgentProfile, Control, ControlScope
from agentops_sdk.contract.policy import PolicySet
from agentops_server.services.governance.applicable import budgets_for, controls_for, rules_for

NOW = dt.datetime(2026, 12, 1, 12, tzinfo=dt.UTC)
HELPER = AgentProfile(
    name="helper-eu", team="support", tags=("customer",), environments=("prod", "staging")
)


def budget(kind: str, value: str | None = None) -> Budget:
    return Budget(
        id=uuid.uuid4(),
        name=f"{kind}:{value}",
        scope=ControlScope(kind=kind, value=value),  # type: ignore[arg-type]
        limit_usd=Decimal(10),
        period="daily",
    )


def control(kind: str, value: str | None, **fields: Any) -> Control:
    return Control(
        id=uuid.uuid4(),
        scope=ControlScope(kind=kind, value=value),  # type: ignore[arg-type]
        state=fields.pop("state", "paused"),
        reason="why",
        actor="ops@example.com",
        version=1,
        created_at=NOW,
        updated_at=NOW,
        **fields,
    )


def test_a_budget_reaches_the_agent_through_any_of_its_environments_team_or_tags() -> None:
    budgets = [
        budget("org"),
        budget("environment", "staging"),
        budget("environment", "dev"),
        budget("team", "support"),
        budget("team", "billing"),
        budget("tag", "customer"),
        budget("tag", "internal"),
        budget("agent", "helper-eu"),
        budget("agent", "helper-us"),
    ]

    reached = [found.name for found in budgets_for(HELPER, budgets)]

    assert reached == [
        "org:None",
        "environment:staging",
        "team:support",
        "tag:customer",
        "agent:helper-eu",
    ]


def test_an_agent_enabled_everywhere_is_reached_by_every_environment() -> None:
    anywhere = AgentProfile(name="roamer")

    assert len(budgets_for(anywhere, [budget("environment", "dev")])) == 1


def test_only_live_controls_reach_the_agent() -> None:
    controls = [
        control("team", "support"),
        control("agent", "helper-eu", state="active"),  # lifted
        control("tag", "customer", expires_at=NOW - dt.timedelta(minutes=1)),
        control("environment", "dev", state="killed"),
    ]

    reached = controls_for(HELPER, controls, NOW)

    assert [found.scope.value for found in reached] == ["support"]


def test_rules_reach_the_agent_by_name_glob_environment_team_and_tag() -> None:
    policy = PolicySet.model_validate(
        {
            "version": 1,
            "rules": [
                {"id": "everyone", "outcome": "deny"},
                {"id": "helpers", "scope": {"agent": ["helper-*"]}, "outcome": "deny"},
                {"id": "others", "scope": {"agent": ["billing-*"]}, "outcome": "deny"},
                {"id": "staging", "scope": {"environment": ["staging"]}, "outcome": "deny"},
                {"id": "dev", "scope": {"environment": ["dev"]}, "outcome": "deny"},
                {
                    "id": "support-customers",
                    "scope": {"team": ["support"], "tag": ["customer"]},
                    "outcome": "deny",
                },
                {
                    "id": "support-internal",
                    "scope": {"team": ["support"], "tag": ["internal"]},
                    "outcome": "deny",
                },
            ],
        }
    )

    reached = [rule.id for rule in rules_for(HELPER, policy)]

    assert reached == ["everyone", "helpers", "staging", "support-customers"]
    assert rules_for(HELPER, None) == []
