"""The policy engine: a policy set compiled once, then evaluated against each call.

Pure: no I/O, no clock, no state of its own that a caller could see. The SDK's policy stage
(:mod:`agentops_sdk.enforcement.policy`) evaluates every guarded call with it; the hub uses it
for dry runs and table tests. Both give it a :class:`Call`, the facts of one call::

    policy = compile_policy(load_policy("policy.yaml"))
    evaluation = policy.evaluate(CallFacts(kind="tool", name="delete_user", agent="support",
                                           environment="prod"))
    evaluation.decision     # Decision("deny", stage="policy", rule="no-deletes", ...)

Compiling turns globs and regexes into compiled matchers and indexes the rules by call kind
and exact name. The rules that can apply to a kind of call, for one name, model and scope
(agent, environment, team, tags), are worked out on first sight and cached, so a call usually
costs one dictionary lookup and the ``when`` conditions and limits of a few rules.

Counters are the caller's: a limit on calls per run or per minute asks the call how many calls
the rule applied to before it (:meth:`Call.rule_calls`, :meth:`Call.rule_rate`), and the
:class:`Evaluation` says which counting rules applied to this one, for the caller to count it
if it goes ahead. The SDK keeps them per run and per agent; the hub's dry run replays them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, Final, Literal, Protocol

from agentops_sdk.contract.arguments import canonical_arguments, compile_conditions
from agentops_sdk.contract.decisions import Decision, Outcome
from agentops_sdk.contract.patterns import compile_glob, is_glob
from agentops_sdk.contract.policy import Limit, PolicySet, Rule, Scope

__all__ = [
    "PRECEDENCE",
    "Call",
    "CallFacts",
    "CompiledPolicy",
    "Evaluation",
    "RunMeasure",
    "canonical_arguments",
    "compile_policy",
]

PRECEDENCE: Final[tuple[Outcome, ...]] = ("deny", "require_approval", "warn", "allow")
"""Outcomes from the strictest: of the rules that fire, the first of these decides."""
_RANK: Final = {outcome: rank for rank, outcome in enumerate(PRECEDENCE)}

RunMeasure = Literal["llm_calls", "tool_calls", "steps", "duration", "tokens", "cost"]
"""What a run has done before the call: calls of each kind, seconds since it started, tokens
and USD of its finished LLM calls (cost: None until calls are priced)."""

_CACHE_SIZE: Final = 4096
"""Candidate lists kept per compiled policy (one per kind, name, model and scope seen)."""


class Call(Protocol):
    """The facts of one call that a policy looks at."""

    @property
    def kind(self) -> str:
        """``tool``, ``llm``, ``step`` or ``agent``."""

    @property
    def name(self) -> str:
        """The tool, step or agent name; for LLM calls, the span's name."""

    @property
    def agent(self) -> str: ...

    @property
    def environment(self) -> str: ...

    @property
    def team(self) -> str | None:
        """The agent's team in the hub's registry, if known."""

    @property
    def tags(self) -> tuple[str, ...]: ...

    @property
    def model(self) -> str | None:
        """The model an LLM call asks for, if known."""

    @property
    def arguments(self) -> Mapping[str, Any]:
        """The call's arguments by name (an LLM call's: its request parameters)."""

    @property
    def max_tokens(self) -> int | None:
        """The most output tokens an LLM call asks for; None: not limited."""

    @property
    def cost(self) -> float | None:
        """What the call may cost in USD, priced before it runs; None: not priced."""

    def run_total(self, measure: RunMeasure) -> float | None:
        """What the call's run has done before it (see :data:`RunMeasure`)."""

    def rule_calls(self, rule: str) -> int:
        """How many calls ``rule`` applied to in this run before this one (counted ones)."""

    def rule_rate(self, rule: str) -> int:
        """How many calls ``rule`` applied to for this agent in the last 60 s."""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class CallFacts:
    """A :class:`Call` given as plain values: what the hub builds from a recorded span, and
    what tests write."""

    kind: str
    name: str
    agent: str = "default"
    environment: str = "dev"
    team: str | None = None
    tags: tuple[str, ...] = ()
    model: str | None = None
    arguments: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    max_tokens: int | None = None
    cost: float | None = None
    run: Mapping[str, float | None] = dataclasses.field(default_factory=dict)
    """Run totals by :data:`RunMeasure` (missing: 0, but cost: None)."""
    counts: Mapping[str, int] = dataclasses.field(default_factory=dict)
    """Calls per rule id in this run, before this one."""
    rates: Mapping[str, int] = dataclasses.field(default_factory=dict)
    """Calls per rule id for this agent in the last 60 s, before this one."""

    def run_total(self, measure: RunMeasure) -> float | None:
        """What :attr:`run` says, 0 if it says nothing (cost: None)."""
        return self.run.get(measure, None if measure == "cost" else 0)

    def rule_calls(self, rule: str) -> int:
        """What :attr:`counts` says, 0 if nothing."""
        return self.counts.get(rule, 0)

    def rule_rate(self, rule: str) -> int:
        """What :attr:`rates` says, 0 if nothing."""
        return self.rates.get(rule, 0)


@dataclasses.dataclass(frozen=True, slots=True)
class Evaluation:
    """What a policy decided about one call."""

    decision: Decision | None
    """The strictest decision of the rules that fired; None when none did (the call is
    allowed, and nothing is recorded)."""
    counted: tuple[str, ...] = ()
    """Ids of the rules with per-run or per-minute call limits that applied to this call: if
    it goes ahead, each of their counters goes up by one."""


NOTHING: Final = Evaluation(None)


def compile_policy(policy: PolicySet) -> CompiledPolicy:
    """Compile ``policy`` for evaluation (its regexes and globs compiled, its rules indexed)."""
    return CompiledPolicy(policy)


class CompiledPolicy:
    """A policy set ready to evaluate calls. Immutable once built (but for its cache), and
    safe to share between threads."""

    def __init__(self, policy: PolicySet) -> None:
        self.policy = policy
        self.version = policy.version
        rules = [_CompiledRule(rule, order, policy) for order, rule in enumerate(policy.rules)]
        rules.sort(key=lambda rule: (rule.rank, rule.order))
        self.rules: tuple[_CompiledRule, ...] = tuple(rules)
        """Compiled rules in the order they are tried: strictest outcome first."""
        self.counts = any(rule.counts for rule in rules)
        """Whether some rule limits calls per run or per minute (the caller must count)."""
        self.rate_rules = frozenset(
            rule.id
            for rule in rules
            if rule.source.limit is not None and rule.source.limit.calls_per_minute is not None
        )
        """Ids of the rules that limit calls per minute (the caller keeps their windows)."""
        self.uses_rates = bool(self.rate_rules)
        self.uses_run_totals = any(rule.run_totals for rule in rules)
        self.needs_pricing = tuple(rule.id for rule in rules if rule.priced)
        """Ids of rules with cost limits: they fire only on calls with a known cost."""
        self.uses_team = any(rule.source.scope.team for rule in rules)
        self.uses_tags = any(rule.source.scope.tag for rule in rules)
        scoped = any(rule.scoped for rule in rules)
        self._key = _key_maker(scoped, self.uses_team, self.uses_tags)
        self._by_name: dict[tuple[str, str], tuple[_CompiledRule, ...]] = {}
        self._others: dict[str, tuple[_CompiledRule, ...]] = {}
        for kind in ("tool", "llm", "step", "agent"):
            others = []
            for rule in rules:
                if rule.kinds is not None and kind not in rule.kinds:
                    continue
                if rule.exact_names is None:
                    others.append(rule)
                else:
                    for name in rule.exact_names:
                        self._by_name[kind, name] = (*self._by_name.get((kind, name), ()), rule)
            self._others[kind] = tuple(others)
        self._cache: dict[tuple[Any, ...], tuple[_CompiledRule, ...]] = {}

    def evaluate(self, call: Call) -> Evaluation:
        """Decide about ``call``: the strictest outcome of the rules that fire."""
        key = self._key(call)
        candidates = self._cache.get(key)
        if candidates is None:
            candidates = self._candidates(call, key)
        if not candidates:
            return NOTHING
        arguments: Mapping[str, Any] | None = None
        best: Decision | None = None
        best_rank = 4
        counted: list[str] | None = None
        for rule in candidates:
            if rule.rank >= best_rank and not rule.counts:
                continue  # it could not change the decision, and counts nothing
            if rule.when is not None:
                if arguments is None:
                    arguments = call.arguments
                if not rule.when(arguments):
                    continue
            if rule.counts:
                if counted is None:
                    counted = []
                counted.append(rule.id)
            if rule.rank >= best_rank:
                continue
            decision = rule.fire(call)
            if decision is None:
                continue
            if rule.rank == 0:
                return Evaluation(decision)  # refused: nothing goes ahead to be counted
            best, best_rank = decision, rule.rank
        if best is None and counted is None:
            return NOTHING
        return Evaluation(best, () if counted is None else tuple(counted))

    def _candidates(self, call: Call, key: tuple[Any, ...]) -> tuple[_CompiledRule, ...]:
        """The rules that apply to calls like ``call`` whatever their arguments, in order."""
        kind, name = call.kind, call.name
        indexed = self._by_name.get((kind, name), ())
        others = self._others.get(kind, ())
        found = [
            rule
            for rule in (*indexed, *others)
            if rule.matches(name, call.model)
            and rule.in_scope(call.agent, call.environment, call.team, call.tags)
        ]
        found.sort(key=lambda rule: (rule.rank, rule.order))
        candidates = tuple(found)
        if len(self._cache) >= _CACHE_SIZE:
            self._cache.clear()  # names are few; a flood of new ones must not grow memory
        self._cache[key] = candidates
        return candidates

    def __repr__(self) -> str:
        return f"CompiledPolicy(version={self.version!r}, rules={len(self.rules)})"


# -- compiled rules ---------------------------------------------------------------------------


class _CompiledRule:
    """One rule, compiled: its tests as closures, its decision ready-made where it can be."""

    __slots__ = (
        "counts",
        "exact_names",
        "id",
        "in_scope",
        "kinds",
        "limits",
        "matches",
        "order",
        "outcome",
        "priced",
        "rank",
        "run_totals",
        "scoped",
        "source",
        "version",
        "when",
        "would_be",
    )

    def __init__(self, rule: Rule, order: int, policy: PolicySet) -> None:
        self.source = rule
        self.id = rule.id
        self.order = order
        self.version = policy.version
        shadowed = rule.shadow or policy.shadow
        self.outcome: Outcome = "warn" if shadowed and rule.outcome != "allow" else rule.outcome
        self.would_be: Outcome | None = rule.outcome if self.outcome != rule.outcome else None
        self.rank = _RANK[self.outcome]
        match = rule.match
        kinds = match.kind or (("llm",) if match.model or match.not_model else ())
        self.kinds = frozenset(kinds) if kinds else None
        """The kinds of call it is about (a rule about models is about LLM calls); None: all."""
        self.exact_names = (
            frozenset(match.name)
            if match.name and not any(is_glob(name) for name in match.name)
            else None
        )
        self.matches = _name_and_model_test(
            match.name, match.not_name, match.model, match.not_model
        )
        self.in_scope = _scope_test(rule.scope)
        scope = rule.scope
        self.scoped = bool(scope.environment or scope.team or scope.tag or scope.agent)
        self.when = compile_conditions(rule.when)
        limit = rule.limit
        self.limits = None if limit is None else _limit_checks(limit, rule.id)
        self.counts = limit is not None and (
            limit.calls_per_run is not None or limit.calls_per_minute is not None
        )
        self.run_totals = limit is not None and any(
            getattr(limit, field) is not None for field in _RUN_TOTAL_LIMITS
        )
        self.priced = limit is not None and (
            limit.cost_per_call is not None or limit.cost_per_run is not None
        )

    def fire(self, call: Call) -> Decision | None:
        """The rule's decision on ``call`` (which it applies to), or None: within its limits."""
        exceeded = None
        if self.limits is not None:
            for check in self.limits:
                exceeded = check(call)
                if exceeded is not None:
                    break
            else:
                return None
        details: dict[str, Any] = {"policy_version": self.version}
        if exceeded is not None:
            details.update(exceeded)
        if self.would_be is not None:
            details["would_be"] = self.would_be
        if self.outcome == "require_approval" or self.would_be == "require_approval":
            terms = self.source.approval_terms
            frozen = canonical_arguments(call.arguments)
            details["approval"] = {
                "expires_in": terms.expires_in,
                "on_expiry": terms.on_expiry,
                "on_reject": terms.on_reject,
                "escalate_after": terms.escalate_after,
                "allow_self_approval": terms.allow_self_approval,
                "arguments_sha256": None if frozen is None else frozen[1],
            }
        return Decision(
            self.outcome,
            stage="policy",
            rule=self.id,
            reason=self.source.message or _reason(self, call, details),
            details=MappingProxyType(details),
        )


def _reason(rule: _CompiledRule, call: Call, details: Mapping[str, Any]) -> str:
    """What the agent is told when the rule has no message of its own."""
    what = f"{call.kind} {call.name!r}"
    outcome = rule.would_be or rule.outcome
    verdict = {
        "deny": "is denied",
        "require_approval": "needs a human's approval",
        "warn": "is flagged",
        "allow": "is allowed",
    }[outcome]
    reason = f"{what} {verdict} (policy rule {rule.id!r}"
    if "limit" in details:
        value = details["value"]
        reason += f": {details['limit']} {'not set' if value is None else f'{value:g}'}"
        reason += f", at most {details['max']:g}"
    reason += ")"
    if rule.would_be is not None:
        reason += "; shadow mode, nothing was blocked"
    return reason


# -- names, models, scopes --------------------------------------------------------------------


def _any_glob(patterns: Sequence[str]) -> Callable[[str], bool]:
    tests = [compile_glob(pattern) for pattern in patterns]
    if len(tests) == 1:
        return tests[0]
    return lambda value: any(test(value) for test in tests)


def _name_and_model_test(
    names: Sequence[str], not_names: Sequence[str], models: Sequence[str], not_models: Sequence[str]
) -> Callable[[str, str | None], bool]:
    name_in = _any_glob(names) if names else None
    name_out = _any_glob(not_names) if not_names else None
    model_in = _any_glob(models) if models else None
    model_out = _any_glob(not_models) if not_models else None

    def matches(name: str, model: str | None) -> bool:
        if name_in is not None and not name_in(name):
            return False
        if name_out is not None and name_out(name):
            return False
        if model_in is not None and (model is None or not model_in(model)):
            return False
        # An unknown model is in no allow list: ``not_model`` refuses it.
        return model_out is None or model is None or not model_out(model)

    return matches


def _scope_test(scope: Scope) -> Callable[[str, str, str | None, tuple[str, ...]], bool]:
    environments = frozenset(scope.environment)
    teams = frozenset(scope.team)
    tags = frozenset(scope.tag)
    agent = _any_glob(scope.agent) if scope.agent else None

    def in_scope(name: str, environment: str, team: str | None, call_tags: tuple[str, ...]) -> bool:
        if environments and environment not in environments:
            return False
        if teams and team not in teams:
            return False
        if tags and tags.isdisjoint(call_tags):
            return False
        return agent is None or agent(name)

    return in_scope


def _key_maker(scoped: bool, uses_team: bool, uses_tags: bool) -> Callable[[Call], tuple[Any, ...]]:
    """What the candidate cache is keyed by: only the facts some rule's scope looks at (the
    team and the tags cost a look-up in the hub's registry)."""
    if not scoped:
        return lambda call: (call.kind, call.name, call.model)
    if uses_team and uses_tags:
        return lambda call: (
            call.kind,
            call.name,
            call.model,
            call.agent,
            call.environment,
            call.team,
            call.tags,
        )
    if uses_tags:
        return lambda call: (
            call.kind,
            call.name,
            call.model,
            call.agent,
            call.environment,
            call.tags,
        )
    if uses_team:
        return lambda call: (
            call.kind,
            call.name,
            call.model,
            call.agent,
            call.environment,
            call.team,
        )
    return lambda call: (call.kind, call.name, call.model, call.agent, call.environment)


# -- limits -----------------------------------------------------------------------------------

LimitCheck = Callable[[Call], "dict[str, Any] | None"]
"""None if the call is within the limit, else what went past it."""
_LimitMaker = Callable[[str, float, str], LimitCheck]
"""Makes the check of one limit from its name, its maximum and the rule's id."""

_RUN_TOTAL_LIMITS: Final = (
    "llm_calls_per_run",
    "tool_calls_per_run",
    "steps_per_run",
    "duration_per_run",
    "tokens_per_run",
    "cost_per_run",
)
_KIND_COUNTED: Final[dict[str, tuple[RunMeasure, str]]] = {
    "llm_calls_per_run": ("llm_calls", "llm"),
    "tool_calls_per_run": ("tool_calls", "tool"),
    "steps_per_run": ("steps", "step"),
}


def _past(label: str, maximum: float, value: float) -> dict[str, Any]:
    return {"limit": label, "max": maximum, "value": value}


def _limit_checks(limit: Limit, rule: str) -> tuple[LimitCheck, ...]:
    checks: list[LimitCheck] = []
    for label in type(limit).model_fields:
        maximum = getattr(limit, label)
        if maximum is not None:
            checks.append(_LIMITS[label](label, maximum, rule))
    return tuple(checks)


def _calls_per_run(label: str, maximum: float, rule: str) -> LimitCheck:
    def check(call: Call) -> dict[str, Any] | None:
        made = call.rule_calls(rule) + 1
        return _past(label, maximum, made) if made > maximum else None

    return check


def _calls_per_minute(label: str, maximum: float, rule: str) -> LimitCheck:
    def check(call: Call) -> dict[str, Any] | None:
        made = call.rule_rate(rule) + 1
        return _past(label, maximum, made) if made > maximum else None

    return check


def _kind_calls(label: str, maximum: float, _rule: str) -> LimitCheck:
    measure, kind = _KIND_COUNTED[label]

    def check(call: Call) -> dict[str, Any] | None:
        made = (call.run_total(measure) or 0) + (1 if call.kind == kind else 0)
        return _past(label, maximum, made) if made > maximum else None

    return check


def _duration(label: str, maximum: float, _rule: str) -> LimitCheck:
    def check(call: Call) -> dict[str, Any] | None:
        elapsed = call.run_total("duration") or 0
        return _past(label, maximum, round(elapsed, 3)) if elapsed > maximum else None

    return check


def _spent(measure: RunMeasure) -> _LimitMaker:
    def make(label: str, maximum: float, _rule: str) -> LimitCheck:
        def check(call: Call) -> dict[str, Any] | None:
            spent = call.run_total(measure)
            # Spent up to the limit: the next call would go past it.
            return _past(label, maximum, spent) if spent is not None and spent >= maximum else None

        return check

    return make


def _max_tokens(label: str, maximum: float, _rule: str) -> LimitCheck:
    def check(call: Call) -> dict[str, Any] | None:
        if call.kind != "llm":
            return None
        asked = call.max_tokens
        if asked is None:
            return {"limit": label, "max": maximum, "value": None}
        return _past(label, maximum, asked) if asked > maximum else None

    return check


def _cost_per_call(label: str, maximum: float, _rule: str) -> LimitCheck:
    def check(call: Call) -> dict[str, Any] | None:
        cost = call.cost
        return _past(label, maximum, cost) if cost is not None and cost > maximum else None

    return check


_LIMITS: Final[dict[str, _LimitMaker]] = {
    "calls_per_run": _calls_per_run,
    "calls_per_minute": _calls_per_minute,
    "llm_calls_per_run": _kind_calls,
    "tool_calls_per_run": _kind_calls,
    "steps_per_run": _kind_calls,
    "duration_per_run": _duration,
    "tokens_per_run": _spent("tokens"),
    "max_tokens": _max_tokens,
    "cost_per_call": _cost_per_call,
    "cost_per_run": _spent("cost"),
}
