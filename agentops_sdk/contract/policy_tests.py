"""Table tests of a policy set: ``given`` a call, ``expect`` an outcome (and the rule).

The hub stores them with each version of an org's policy set and runs them on every save (a
failing test refuses the save); an agent's own tests can run them too::

    tests = parse_policy_tests([
        {"name": "deletes are refused",
         "given": {"kind": "tool", "name": "delete_user", "arguments": {"id": 7}},
         "expect": {"outcome": "deny", "rule": "no-deletes"}},
        {"name": "search is fine", "given": {"kind": "tool", "name": "search"},
         "expect": "allow"},
    ])
    assert run_policy_tests(compile_policy(policy_set), tests) == ()

``given`` holds the facts of a call as :class:`~agentops_sdk.contract.policy_engine.CallFacts`
does (kind, name, agent, environment, team, tags, model, arguments, max_tokens, cost, run
totals, per-rule counts and rates); ``expect`` an outcome, or ``{outcome, rule}`` to also name
the rule that must decide. A call no rule fires on is ``allow`` with no rule. docs/policies.md
has the format.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Final

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, JsonValue, ValidationError

from agentops_sdk.contract.decisions import Outcome
from agentops_sdk.contract.errors import PolicyError, PolicyProblem
from agentops_sdk.contract.llm_requests import max_tokens_of
from agentops_sdk.contract.policy import CallKind, RuleId
from agentops_sdk.contract.policy_engine import CallFacts, CompiledPolicy, RunMeasure

__all__ = [
    "MAX_TESTS",
    "Expectation",
    "GivenCall",
    "PolicyTest",
    "TestFailure",
    "parse_policy_tests",
    "run_policy_tests",
]

MAX_TESTS: Final = 1000

Name = Annotated[str, Field(min_length=1, max_length=256)]


class _Table(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GivenCall(_Table):
    """The facts of one call, as a test gives them (what is left out is the default)."""

    kind: CallKind
    name: Name
    agent: Name = "default"
    environment: Annotated[str, Field(max_length=64)] = "dev"
    team: Name | None = None
    tags: tuple[Name, ...] = ()
    model: Name | None = None
    arguments: dict[str, JsonValue] = Field(default_factory=dict)
    max_tokens: Annotated[int, Field(ge=0)] | None = None
    """None: read from the arguments (``max_tokens``...), as the SDK does."""
    cost: Annotated[float, Field(ge=0)] | None = None
    run: dict[RunMeasure, Annotated[float, Field(ge=0)]] = Field(default_factory=dict)
    """Run totals before this call: ``llm_calls``, ``tool_calls``, ``steps``, ``duration``
    (seconds), ``tokens``, ``cost``."""
    counts: dict[RuleId, Annotated[int, Field(ge=0)]] = Field(default_factory=dict)
    """Calls each rule applied to earlier in this run."""
    rates: dict[RuleId, Annotated[int, Field(ge=0)]] = Field(default_factory=dict)
    """Calls each rule applied to for this agent in the last minute."""

    def facts(self) -> CallFacts:
        """The call as the policy engine reads it."""
        max_tokens = self.max_tokens
        run: dict[str, float | None] = dict(self.run.items())
        return CallFacts(
            kind=self.kind,
            name=self.name,
            agent=self.agent,
            environment=self.environment,
            team=self.team,
            tags=self.tags,
            model=self.model,
            arguments=self.arguments,
            max_tokens=max_tokens if max_tokens is not None else max_tokens_of(self.arguments),
            cost=self.cost,
            run=run,
            counts=self.counts,
            rates=self.rates,
        )


def _outcome_alone(value: Any) -> Any:
    """``expect: deny`` stands for ``expect: {outcome: deny}``."""
    return {"outcome": value} if isinstance(value, str) else value


class Expectation(_Table):
    """What a test expects: the outcome, and the rule that decides it when ``rule`` is given."""

    outcome: Outcome
    rule: RuleId | None = None


class PolicyTest(_Table):
    """One row of the table: a name, a call, what the policy must decide about it."""

    name: Annotated[str, Field(min_length=1, max_length=200)]
    given: GivenCall
    expect: Annotated[Expectation, BeforeValidator(_outcome_alone)]


class _Tests(_Table):
    tests: tuple[PolicyTest, ...] = Field(default=(), max_length=MAX_TESTS)


@dataclasses.dataclass(frozen=True, slots=True)
class TestFailure:
    """A test whose call the policy decided otherwise."""

    __test__ = False  # not a pytest test class

    index: int
    name: str
    expected: Expectation
    outcome: Outcome
    rule: str | None
    reason: str | None

    def to_json(self) -> dict[str, Any]:
        """The failure as JSON (what the hub answers when a save is refused)."""
        return {
            "index": self.index,
            "name": self.name,
            "expected": self.expected.model_dump(),
            "got": {"outcome": self.outcome, "rule": self.rule, "reason": self.reason},
        }


def parse_policy_tests(tests: Any) -> tuple[PolicyTest, ...]:
    """Validate decoded table tests (a list). Raises
    :class:`~agentops_sdk.contract.errors.PolicyError` with one problem per error, its field a
    JSON pointer into the list (``/2/given/kind``) and ``rule`` the test's name."""
    try:
        return _Tests.model_validate({"tests": tests}).tests
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_url=False):
            location = list(error["loc"][1:])
            name = None
            if location and isinstance(location[0], int) and isinstance(tests, Sequence):
                raw = tests[location[0]] if location[0] < len(tests) else None
                if isinstance(raw, Mapping) and isinstance(raw.get("name"), str):
                    name = raw["name"]
            pointer = "/" + "/".join(str(part) for part in location)
            message = error["msg"].removeprefix("Value error, ")
            problems.append(PolicyProblem(rule=name, field=pointer, message=message))
        raise PolicyError("the policy tests are invalid", tuple(problems)) from None


def run_policy_tests(
    policy: CompiledPolicy, tests: Sequence[PolicyTest]
) -> tuple[TestFailure, ...]:
    """Evaluate each test's call against ``policy``; the tests it fails (none: all pass)."""
    failures = []
    for index, test in enumerate(tests):
        decision = policy.evaluate(test.given.facts()).decision
        outcome = "allow" if decision is None else decision.outcome
        rule = None if decision is None else decision.rule
        expected = test.expect
        if outcome != expected.outcome or (expected.rule is not None and rule != expected.rule):
            reason = None if decision is None else decision.reason
            failures.append(TestFailure(index, test.name, expected, outcome, rule, reason))
    return tuple(failures)
