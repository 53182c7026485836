"""Policy sets: what an org's agents may do, as a document both the SDK and the hub validate.

A policy set is JSON or YAML::

    version: 1
    rules:
      - id: no-deletes
        match: {kind: tool, name: "delete_*"}
        outcome: deny
        message: Deleting is not allowed for agents.
      - id: external-mail
        match: {kind: tool, name: send_email}
        when: {argument: to, not_regex: '@example\\.com$'}
        outcome: require_approval
      - id: search-budget
        match: {kind: tool, name: search}
        limit: {calls_per_run: 3}
        outcome: deny
      - id: no-gpt4
        match: {kind: llm, model: gpt-4}
        outcome: deny

A rule applies to a call when its ``scope`` (environment, team, tag, agent; none: the whole
org), its ``match`` (kind, names, models) and its ``when`` conditions on the call's arguments
all hold; a rule with a ``limit`` then fires only when the call would go past it; every other
rule fires whenever it applies. Of the rules that fire, the strictest outcome decides: deny >
require_approval > warn > allow (first in the document among equals). docs/policies.md is the
full reference; :mod:`agentops_sdk.contract.policy_engine` evaluates a set.

:func:`load_policy` reads a file (YAML needs PyYAML: ``pip install 'agentops-hub[policy]'``);
:func:`parse_policy` takes the decoded document. Both raise
:class:`~agentops_sdk.contract.errors.PolicyError` listing every problem with the rule id and
the field it is in.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Final, Literal, get_args
from uuid import UUID

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    JsonValue,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from agentops_sdk.contract.decisions import Outcome
from agentops_sdk.contract.errors import PolicyError, PolicyProblem
from agentops_sdk.contract.patterns import regex_problem

__all__ = [
    "CALL_KINDS",
    "AllOf",
    "AnyOf",
    "Approval",
    "ArgumentTest",
    "CallKind",
    "Condition",
    "EffectivePolicy",
    "Limit",
    "Match",
    "PolicySet",
    "Range",
    "Rule",
    "Scope",
    "load_policy",
    "parse_policy",
]

CallKind = Literal["tool", "llm", "step", "agent"]
CALL_KINDS: Final[tuple[CallKind, ...]] = get_args(CallKind)
MAX_RULES: Final = 10_000
DEFAULT_APPROVAL_EXPIRY: Final = 3600.0
"""How long a human has to answer an approval request, in seconds, unless a rule says."""

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)?\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


def _listed(value: Any) -> Any:
    """One name stands for a list of one."""
    return [value] if isinstance(value, str) else value


def _seconds(value: Any) -> Any:
    """``90``, ``"90s"``, ``"15m"``, ``"1h"``, ``"2d"`` -> seconds."""
    if isinstance(value, str):
        found = _DURATION.match(value)
        if found is None:
            raise ValueError(f"a duration is seconds or a number with s, m, h or d, not {value!r}")
        return float(found.group(1)) * _UNITS[found.group(2)]
    return value


RuleId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$", max_length=128)]
Name = Annotated[str, Field(min_length=1, max_length=256)]
Names = Annotated[tuple[Name, ...], BeforeValidator(_listed)]
Text = Annotated[str, Field(max_length=1024)]
Seconds = Annotated[float, BeforeValidator(_seconds), Field(gt=0, allow_inf_nan=False)]
Count = Annotated[int, Field(ge=0)]
Number = Annotated[float, Field(allow_inf_nan=False)]


class _Document(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Scope(_Document):
    """Where a rule applies. Every field given must hold (one of its values); none: the org."""

    environment: Names = ()
    team: Names = ()
    """Teams of the hub's agent registry."""
    tag: Names = ()
    """A tag of the call, its run, or the agent in the hub's registry."""
    agent: Names = ()
    """Agent names, or globs of them."""


class Match(_Document):
    """Which calls a rule is about. Every field given must hold; none: every call."""

    kind: Annotated[tuple[CallKind, ...], BeforeValidator(_listed)] = ()
    name: Names = ()
    """Tool, step or agent names (for LLM calls, the span's name), or globs of them."""
    not_name: Names = ()
    """Names (or globs) the call's name must not match: ``kind: tool`` with ``not_name`` is
    an allow list of tools."""
    model: Names = ()
    """Models of LLM calls (or globs): a call whose model is unknown matches none. A rule that
    names models (or ``not_model``) is about LLM calls only."""
    not_model: Names = ()
    """Models (or globs) an LLM call's model must not match (an unknown model matches none of
    them, so an allow list of models refuses it)."""

    @model_validator(mode="after")
    def _models_are_for_llm_calls(self) -> Match:
        if (self.model or self.not_model) and self.kind and "llm" not in self.kind:
            raise ValueError("model and not_model apply to llm calls: add llm to kind")
        return self


class Range(_Document):
    """Bounds a number must be within for the test to hold; at least one."""

    gt: Number | None = None
    ge: Number | None = None
    lt: Number | None = None
    le: Number | None = None

    @model_validator(mode="after")
    def _has_a_bound(self) -> Range:
        if self.gt is None and self.ge is None and self.lt is None and self.le is None:
            raise ValueError("give at least one of gt, ge, lt, le")
        return self


TESTS: Final = (
    "exists",
    "equals",
    "not_equals",
    "in",
    "not_in",
    "regex",
    "not_regex",
    "gt",
    "ge",
    "lt",
    "le",
    "length",
)
"""The tests an :class:`ArgumentTest` may make, in the order they are checked."""


class ArgumentTest(_Document):
    """Tests on one argument of the call, found by ``argument`` (a dotted path: ``to``,
    ``recipient.email``, ``items.0.id``). Every test given must hold.

    An argument that is absent (or null) fails the positive tests (equals, in, regex, the
    bounds, length) and passes the negated ones (not_equals, not_in, not_regex). A value a
    test cannot read (a bound on a word, a length of a number, a text too long to search
    safely) counts as passing it: a rule never lets a call through because it could not read
    an argument. A list passes a test if any of its items does; regexes search strings, and
    other values in their JSON text. docs/policies.md has the whole table.
    """

    argument: Annotated[str, Field(min_length=1, max_length=256)]
    exists: bool | None = None
    equals: JsonValue = None
    not_equals: JsonValue = None
    in_: tuple[JsonValue, ...] | None = Field(default=None, alias="in")
    not_in: tuple[JsonValue, ...] | None = None
    regex: str | None = None
    not_regex: str | None = None
    gt: Number | None = None
    ge: Number | None = None
    lt: Number | None = None
    le: Number | None = None
    length: Range | None = None

    @field_validator("regex", "not_regex")
    @classmethod
    def _safe_regex(cls, pattern: str | None) -> str | None:
        if pattern is not None:
            problem = regex_problem(pattern)
            if problem is not None:
                raise ValueError(problem)
        return pattern

    @model_validator(mode="after")
    def _tests_something(self) -> ArgumentTest:
        if not self.tests():
            raise ValueError(f"give at least one test: {', '.join(TESTS)}")
        return self

    def tests(self) -> list[tuple[str, Any]]:
        """The tests given, as ``(name, operand)`` (``equals: null`` is a test too)."""
        given = self.model_fields_set
        return [
            (name, getattr(self, "in_" if name == "in" else name))
            for name in TESTS
            if ("in_" if name == "in" else name) in given
        ]


_TAGS: Final = frozenset({"argument test", "any of", "all of"})
"""How the condition union tags its members (and what error locations leave out)."""


def _condition_kind(value: Any) -> str:
    if isinstance(value, Mapping):
        if "any" in value:
            return "any of"
        if "all" in value:
            return "all of"
    elif isinstance(value, AnyOf | AllOf):
        return "any of" if isinstance(value, AnyOf) else "all of"
    return "argument test"


class AnyOf(_Document):
    """Holds when one of its conditions holds."""

    any: tuple[Condition, ...] = Field(min_length=1)


class AllOf(_Document):
    """Holds when all of its conditions hold."""

    all: tuple[Condition, ...] = Field(min_length=1)


Condition = Annotated[
    Annotated[ArgumentTest, Tag("argument test")]
    | Annotated[AnyOf, Tag("any of")]
    | Annotated[AllOf, Tag("all of")],
    Discriminator(_condition_kind),
]
"""A test on an argument, or ``{any: [...]}`` / ``{all: [...]}`` of conditions."""

AnyOf.model_rebuild()
AllOf.model_rebuild()


def _conditions(value: Any) -> Any:
    """``when`` is one condition or a list of them (all must hold)."""
    return [value] if isinstance(value, Mapping | BaseModel) else value


class Limit(_Document):
    """A rule with a limit fires only when the call would go past one of these (any of them).

    Counts include the call being decided: ``calls_per_run: 3`` lets three calls through and
    refuses the fourth. Tokens and cost are what the run's finished calls used.
    """

    calls_per_run: Count | None = None
    """Calls this rule applies to, in one run."""
    calls_per_minute: Count | None = None
    """Calls this rule applies to, by one agent, in the last 60 seconds."""
    llm_calls_per_run: Count | None = None
    tool_calls_per_run: Count | None = None
    steps_per_run: Count | None = None
    duration_per_run: Seconds | None = None
    """Seconds since the run started (``300``, ``"5m"``)."""
    tokens_per_run: Count | None = None
    """Input and output tokens of the run's finished LLM calls: reaching it stops the next."""
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    """The most output tokens one LLM call may ask for; a call that sets no maximum asks for
    as many as the model gives, which is more."""
    cost_per_call: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    """USD one call may cost, as priced before it runs (once the SDK prices calls)."""
    cost_per_run: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    """USD the run's finished calls may cost (once the SDK prices calls)."""

    @model_validator(mode="after")
    def _limits_something(self) -> Limit:
        if not self.model_fields_set:
            raise ValueError(f"give at least one limit: {', '.join(type(self).model_fields)}")
        return self


class Approval(_Document):
    """What a ``require_approval`` rule asks of its approval request."""

    expires_in: Annotated[Seconds, Field(le=30 * 86400)] = DEFAULT_APPROVAL_EXPIRY
    """How long a human has to answer (``3600``, ``"1h"``; at most 30 days)."""
    on_expiry: Literal["deny", "allow"] = "deny"
    """What an unanswered request comes to (a request whose arguments could not be frozen
    comes to ``deny`` whatever this says: it never goes ahead unread)."""
    on_reject: Literal["raise", "result"] = "raise"
    """How a rejection reaches the agent: ``raise`` ``ApprovalDenied`` with the reviewer's
    reason, or ``result``: the call does not run and returns the reason as its result, so the
    model can adapt instead of the run crashing."""
    escalate_after: Annotated[Seconds, Field(le=30 * 86400)] | None = None
    """Escalate a request still pending after this long (``"15m"``): the org's admins and
    owners are notified. None: no escalation."""
    allow_self_approval: bool = False
    """Whether the owner of the agent (its registry ``owner``) may approve its own agent's
    request; by default someone else must."""


class Rule(_Document):
    """One rule: where it applies, to which calls, under what conditions, and what follows."""

    id: RuleId
    description: Text | None = None
    scope: Scope = Scope()
    match: Match = Match()
    when: Annotated[tuple[Condition, ...], BeforeValidator(_conditions)] = ()
    limit: Limit | None = None
    outcome: Outcome
    message: Text | None = None
    """What the agent is told (for a denied tool, the model sees it as the tool's error)."""
    shadow: bool = False
    """Record what the rule would decide as a warning, and block nothing (try a rule out)."""
    approval: Approval | None = None
    """For ``require_approval``: expiry and what it comes to (default: 1 h, then deny)."""

    @model_validator(mode="after")
    def _consistent(self) -> Rule:
        if self.approval is not None and self.outcome != "require_approval":
            raise ValueError("approval settings go with outcome require_approval")
        limit = self.limit
        if (
            limit is not None
            and limit.max_tokens is not None
            and self.match.kind
            and "llm" not in self.match.kind
        ):
            raise ValueError("max_tokens limits llm calls: add llm to match.kind")
        return self

    @property
    def approval_terms(self) -> Approval:
        """The approval settings in force (the defaults when the rule gives none)."""
        return self.approval or _DEFAULT_APPROVAL


_DEFAULT_APPROVAL = Approval()


class PolicySet(_Document):
    """A versioned list of rules: what one org (or one local file) enforces."""

    version: Annotated[int, Field(ge=0)] | Annotated[str, Field(min_length=1, max_length=64)]
    """The set's version, named by every decision it makes (the hub numbers its versions)."""
    name: Text | None = None
    description: Text | None = None
    shadow: bool = False
    """Every rule in shadow mode: record, block nothing."""
    rules: tuple[Rule, ...] = Field(default=(), max_length=MAX_RULES)

    @field_validator("rules")
    @classmethod
    def _unique_ids(cls, rules: tuple[Rule, ...]) -> tuple[Rule, ...]:
        seen: set[str] = set()
        for rule in rules:
            if rule.id in seen:
                raise ValueError(f"rule id {rule.id!r} is used twice")
            seen.add(rule.id)
        return rules


class EffectivePolicy(_Document):
    """What an org's SDKs enforce, as the hub serves it (``GET /api/v1/policies/effective``,
    with :attr:`etag`) and pushes it (a ``policies`` event on ``GET /api/v1/stream``)."""

    org_id: UUID
    version: Annotated[int, Field(ge=0)]
    """The org's policy revision: bumped whenever its active set changes (activated, rolled
    back, deactivated), so it grows even when an older set comes back."""
    policy: PolicySet | None = None
    """The active set (its ``version`` is the hub's version number); None: the org has no
    active set, and an SDK enforces its local policy file, if it has one."""
    activated_at: datetime | None = None

    @property
    def etag(self) -> str:
        """The ETag the hub serves this with (and an SDK's ``If-None-Match``)."""
        return f'"{self.org_id}-policies-{self.version}"'

    def to_json(self) -> str:
        """The JSON the hub sends: each rule as written (``in``, not ``in_``; no defaults
        spelled out, which would turn ``equals: null`` into a test)."""
        return self.model_dump_json(by_alias=True, exclude_unset=True)


def parse_policy(document: Any) -> PolicySet:
    """Validate a decoded policy document (a mapping, as JSON or YAML decode it)."""
    try:
        return PolicySet.model_validate(document)
    except ValidationError as exc:
        raise PolicyError("the policy set is invalid", _problems(exc, document)) from None


def load_policy(source: str | Path, *, format: Literal["json", "yaml"] | None = None) -> PolicySet:
    """Read and validate a policy file. ``format`` defaults to the file's suffix (``.yaml``,
    ``.yml``: YAML, otherwise JSON). YAML needs PyYAML (``pip install 'agentops-hub[policy]'``)."""
    path = Path(source)
    if format is None:
        format = "yaml" if path.suffix.lower() in {".yaml", ".yml"} else "json"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(f"cannot read the policy file {path}: {exc.strerror or exc}") from None
    return parse_policy(decode_policy(text, format, origin=str(path)))


def decode_policy(text: str, format: Literal["json", "yaml"], *, origin: str = "policy") -> Any:
    """The document in ``text`` (JSON or YAML), not validated yet."""
    if format == "json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise PolicyError(
                f"{origin} is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
            ) from None
    try:
        import yaml
    except ImportError:
        raise PolicyError(
            f"{origin} is YAML, and reading YAML needs PyYAML: pip install 'agentops-hub[policy]'"
            " (or write the policy as JSON)"
        ) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PolicyError(f"{origin} is not valid YAML: {exc}") from None


def _problems(exc: ValidationError, document: Any) -> tuple[PolicyProblem, ...]:
    """Each error of ``exc`` with the id of the rule it is in and its field's path."""
    rules = document.get("rules") if isinstance(document, Mapping) else None
    errors = exc.errors(include_url=False)
    problems = []
    for error in errors:
        if error["type"] == "too_short" and any(
            other["loc"][: len(error["loc"])] == error["loc"] and other is not error
            for other in errors
        ):
            continue  # a list whose items failed is also reported short: say only why they failed
        location = [part for part in error["loc"] if part not in _TAGS]
        rule_id = None
        if len(location) >= 2 and location[0] == "rules" and isinstance(location[1], int):
            raw_rule = _item(rules, location[1])
            if isinstance(raw_rule, Mapping) and isinstance(raw_rule.get("id"), str):
                rule_id = raw_rule["id"]
            if (
                len(location) >= 4
                and location[2] == "when"
                and isinstance(raw_rule, Mapping)
                and isinstance(raw_rule.get("when"), Mapping)
            ):
                del location[3]  # one condition was written, not a list of them
        message = error["msg"].removeprefix("Value error, ")
        pointer = "/" + "/".join(str(part) for part in location)
        problems.append(PolicyProblem(rule=rule_id, field=pointer, message=message))
    return tuple(problems)


def _item(items: Any, index: int) -> Any:
    if isinstance(items, Sequence) and not isinstance(items, str) and 0 <= index < len(items):
        return items[index]
    return None
