"""Policy documents: what a valid one means, and errors that point at the rule and the field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from agentops_sdk.contract.policy import ArgumentTest, load_policy, parse_policy
from agentops_sdk.errors import ConfigurationError, PolicyError, PolicyProblem


def problems_of(document: Any) -> list[tuple[str | None, str]]:
    with pytest.raises(PolicyError) as raised:
        parse_policy(document)
    return [(problem.rule, problem.field) for problem in raised.value.problems]


def test_one_name_stands_for_a_list_of_one_and_a_condition_for_a_list_of_one() -> None:
    policy = parse_policy(
        {
            "version": 1,
            "rules": [
                {
                    "id": "mail",
                    "scope": {"environment": "prod", "agent": ["support*", "billing"]},
                    "match": {"kind": "tool", "name": "send_email"},
                    "when": {"argument": "to", "not_regex": r"@example\.com$"},
                    "outcome": "require_approval",
                }
            ],
        }
    )

    [rule] = policy.rules
    assert rule.scope.environment == ("prod",)
    assert rule.scope.agent == ("support*", "billing")
    assert rule.match.kind == ("tool",)
    assert rule.match.name == ("send_email",)
    assert rule.when == (ArgumentTest(argument="to", not_regex=r"@example\.com$"),)
    assert rule.approval is None
    assert rule.approval_terms.expires_in == 3600.0
    assert rule.approval_terms.on_expiry == "deny"


@pytest.mark.parametrize(
    ("written", "seconds"),
    [(90, 90.0), ("90s", 90.0), ("15m", 900.0), ("1h", 3600.0), ("2d", 172800.0)],
)
def test_durations_are_seconds_or_a_number_with_a_unit(written: Any, seconds: float) -> None:
    policy = parse_policy(
        {
            "version": 1,
            "rules": [
                {"id": "r", "outcome": "require_approval", "approval": {"expires_in": written}},
                {"id": "d", "outcome": "deny", "limit": {"duration_per_run": written}},
            ],
        }
    )

    assert policy.rules[0].approval_terms.expires_in == seconds
    limit = policy.rules[1].limit
    assert limit is not None
    assert limit.duration_per_run == seconds


def test_in_and_equals_null_are_tests_like_the_others() -> None:
    condition = (
        parse_policy(
            {
                "version": 1,
                "rules": [
                    {
                        "id": "r",
                        "outcome": "deny",
                        "when": {"argument": "x", "in": [1, "a"], "equals": None},
                    }
                ],
            }
        )
        .rules[0]
        .when[0]
    )

    assert isinstance(condition, ArgumentTest)
    assert condition.tests() == [("equals", None), ("in", (1, "a"))]


def test_every_problem_is_reported_with_its_rule_and_field() -> None:
    document = {
        "version": 1,
        "rules": [
            {"id": "mail", "outcome": "deny", "when": {"argument": "to", "regex": "(a+)+"}},
            {"id": "typo", "outcome": "deny", "macth": {"kind": "tool"}},
            {"id": "kinds", "outcome": "deny", "match": {"kind": "robot"}},
            {"id": "models", "outcome": "deny", "match": {"kind": "tool", "model": "gpt-4"}},
            {"id": "cap", "outcome": "deny", "match": {"kind": "step"}, "limit": {"max_tokens": 5}},
            {"id": "nested", "outcome": "deny", "when": [{"any": [{"argument": "n", "gt": "x"}]}]},
            {"id": "empty", "outcome": "deny", "limit": {}},
            {"id": "odd", "outcome": "warn", "approval": {"expires_in": "1h"}},
            {"id": "late", "outcome": "require_approval", "approval": {"expires_in": "soon"}},
            {"outcome": "deny"},
        ],
    }

    assert problems_of(document) == [
        ("mail", "/rules/0/when/regex"),
        ("typo", "/rules/1/macth"),
        ("kinds", "/rules/2/match/kind/0"),
        ("models", "/rules/3/match"),
        ("cap", "/rules/4"),
        ("nested", "/rules/5/when/0/any/0/gt"),
        ("empty", "/rules/6/limit"),
        ("odd", "/rules/7"),
        ("late", "/rules/8/approval/expires_in"),
        (None, "/rules/9/id"),
    ]


def test_a_rule_id_is_used_once() -> None:
    document = {
        "version": 1,
        "rules": [{"id": "a", "outcome": "deny"}, {"id": "a", "outcome": "warn"}],
    }

    with pytest.raises(PolicyError, match="rule id 'a' is used twice"):
        parse_policy(document)


def test_the_set_needs_a_version_and_says_so() -> None:
    assert problems_of({"rules": []}) == [(None, "/version")]


def test_a_policy_error_is_a_configuration_error_that_lists_its_problems() -> None:
    error = PolicyError("the policy set is invalid", (PolicyProblem("r", "/rules/0/x", "bad"),))

    assert isinstance(error, ConfigurationError)
    assert str(error) == "the policy set is invalid:\n  rule 'r', /rules/0/x: bad"


def test_a_json_file_that_is_not_json_says_where(tmp_path: Path) -> None:
    path = tmp_path / "policy.json"
    path.write_text('{"version": 1,\n "rules": [}')

    with pytest.raises(PolicyError, match=r"not valid JSON: .* \(line 2, column 12\)"):
        load_policy(path)


def test_a_file_is_read_as_json_unless_its_suffix_says_yaml(tmp_path: Path) -> None:
    path = tmp_path / "policy.rules"
    path.write_text(json.dumps({"version": 3, "rules": [{"id": "a", "outcome": "warn"}]}))

    assert load_policy(path).version == 3


@pytest.mark.extras
def test_a_yaml_file_is_read_with_pyyaml(tmp_path: Path) -> None:
    path = tmp_path / "policy.yml"
    path.write_text("version: 2\nrules:\n  - {id: a, outcome: warn, when: {argument: n, ge: 5}}\n")

    policy = load_policy(path)

    assert policy.version == 2
    assert policy.rules[0].when == (ArgumentTest(argument="n", ge=5),)


@pytest.mark.extras
def test_yaml_that_is_not_yaml_is_a_policy_error(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("version: 1\nrules: [\n")

    with pytest.raises(PolicyError, match="not valid YAML"):
        load_policy(path)
