"""Table tests of a policy set (``agentops_sdk.contract.policy_tests``): what the hub runs on
every save, and what an agent's own tests can run."""

from __future__ import annotations

from typing import Any

import pytest

from agentops_sdk.contract.errors import PolicyError
from agentops_sdk.contract.policy import parse_policy
from agentops_sdk.contract.policy_engine import compile_policy
from agentops_sdk.contract.policy_tests import parse_policy_tests, run_policy_tests

POLICY = compile_policy(
    parse_policy(
        {
            "version": 1,
            "rules": [
                {
                    "id": "no-deletes",
                    "match": {"kind": "tool", "name": "delete_*"},
                    "outcome": "deny",
                },
                {
                    "id": "cap",
                    "match": {"kind": "llm"},
                    "limit": {"max_tokens": 500},
                    "outcome": "deny",
                },
                {
                    "id": "search-budget",
                    "match": {"kind": "tool", "name": "search"},
                    "limit": {"calls_per_run": 3},
                    "outcome": "deny",
                },
            ],
        }
    )
)


def row(name: str, given: dict[str, Any], expect: Any) -> dict[str, Any]:
    return {"name": name, "given": given, "expect": expect}


def test_tests_that_hold_pass_and_expect_may_be_an_outcome_alone() -> None:
    tests = parse_policy_tests(
        [
            row(
                "delete",
                {"kind": "tool", "name": "delete_user"},
                {"outcome": "deny", "rule": "no-deletes"},
            ),
            row("read", {"kind": "tool", "name": "read_user"}, "allow"),
            row(
                "llm within the cap",
                {"kind": "llm", "name": "chat", "arguments": {"max_tokens": 100}},
                "allow",
            ),
            row(
                "fourth search",
                {"kind": "tool", "name": "search", "counts": {"search-budget": 3}},
                "deny",
            ),
        ]
    )

    assert run_policy_tests(POLICY, tests) == ()


def test_a_failing_test_says_what_it_expected_and_what_the_policy_decided() -> None:
    tests = parse_policy_tests(
        [
            row("read is denied", {"kind": "tool", "name": "read_user"}, "deny"),
            row(
                "wrong rule",
                {"kind": "llm", "name": "chat"},
                {"outcome": "deny", "rule": "no-deletes"},
            ),
        ]
    )

    failures = run_policy_tests(POLICY, tests)

    assert [(f.index, f.name, f.outcome, f.rule) for f in failures] == [
        (0, "read is denied", "allow", None),
        (1, "wrong rule", "deny", "cap"),  # no max_tokens asked: over any cap
    ]
    assert failures[1].to_json()["expected"] == {"outcome": "deny", "rule": "no-deletes"}


def test_malformed_tests_raise_a_policy_error_pointing_at_the_test_and_field() -> None:
    with pytest.raises(PolicyError) as raised:
        parse_policy_tests([row("typo", {"kind": "tool", "nmae": "x"}, "maybe")])

    problems = {(p.rule, p.field) for p in raised.value.problems}
    assert ("typo", "/0/given/name") in problems
    assert ("typo", "/0/given/nmae") in problems
    assert ("typo", "/0/expect/outcome") in problems
