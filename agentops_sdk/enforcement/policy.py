"""The policy stage: every guarded call is checked against the org's policy set before it runs.

It runs after controls, in the enforcer's fixed order. The set in force is the hub's, once the
hub link's snapshot holds one (topic ``policies``, a
:class:`~agentops_sdk.contract.policy_engine.CompiledPolicy`; None while the org has no active
set), else the local file given as ``init(policy_file=...)`` or ``AGENTOPS_POLICY_FILE``, which
needs no hub at all (and is what an agent's own unit tests load)::

    agentops.init(policy_file="policy.yaml")

    @agentops.tool
    def delete_user(user_id: str) -> None: ...

    delete_user("u1")          # raises agentops.PolicyViolation("Deleting is not allowed...")

What a decision leads to:

- ``deny`` raises :class:`~agentops_sdk.errors.PolicyViolation` with the rule's message before
  the call runs (integrations make sure the tool or the request never happens);
- ``warn`` (and any rule in shadow mode) is recorded and blocks nothing;
- ``require_approval`` is handed to the approval stage
  (:mod:`agentops_sdk.enforcement.approvals`), installed whenever the client has a hub: the
  call waits for a reviewer on the hub. Without a hub (a local policy file alone) no such
  stage is installed, so the enforcer refuses the call with
  :class:`~agentops_sdk.errors.ApprovalDenied`. The decision carries what an approval request
  needs: the rule, its ``approval`` terms (``expires_in``, ``on_expiry``, ``on_reject``,
  ``escalate_after``, ``allow_self_approval``), and ``arguments_sha256``, the hash of the
  call's arguments in canonical JSON
  (:func:`~agentops_sdk.contract.policy_engine.canonical_arguments`).

Every decision but a plain allow is recorded on the call's span with the rule, the policy
set's version and how long the evaluation took (``latency_us``).

The stage counts what the engine's limits need, in memory: calls of each kind per run, calls
per rule per run (on the run), and calls per rule per agent in the last minute (on the stage).
A call is counted when the policy lets it pass (a later stage may still refuse it). A set with
per-run or per-minute call limits is evaluated and counted under the run's lock, so two
threads of one run never both take the last allowed call.

Cost limits are priced in the process: at the org's own prices the hub sent with its budget
set when the budget stage shares its pricer (``costs``), else with the price data of
:mod:`agentops_sdk.pricing` (the ``pricing`` extra). ``cost_per_call`` sees an LLM call's worst
case before it runs, as a budget reserves it
(:class:`~agentops_sdk.enforcement.budget_costs.WorstCase`: input bounded from the request,
output by its maximum, at the dearest rate), so a call that may cost more is refused before
any request is sent; ``cost_per_run`` sees what the run's finished LLM calls cost: the run
keeps each call's model, provider, usage and cost (:attr:`~agentops_sdk.spans.Run.calls`),
and the stage sums them when a limit first asks (the span's cost, else its usage priced by that
pricer), so calls that ended before a cost-limited set arrived count too. A
model that cannot be priced has an unknown cost, which no cost limit fires on.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import importlib.util
import logging
import threading
import time
from collections.abc import Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final

from agentops_sdk.contract.errors import PolicyViolation
from agentops_sdk.contract.llm_requests import max_tokens_of
from agentops_sdk.enforcement.stage import Stage

if TYPE_CHECKING:
    from agentops_sdk.contract.controls import AgentProfile, ControlSet
    from agentops_sdk.contract.decisions import Decision
    from agentops_sdk.contract.policy import EffectivePolicy
    from agentops_sdk.contract.policy_engine import CompiledPolicy, Evaluation, RunMeasure
    from agentops_sdk.enforcement.budget_costs import WorstCase
    from agentops_sdk.enforcement.call import CallInfo
    from agentops_sdk.enforcement.link import HubLink, Snapshot
    from agentops_sdk.spans import Run

__all__ = ["TOPIC", "PolicyStage", "hub_policy"]

logger = logging.getLogger("agentops_sdk")

TOPIC: Final = "policies"
"""The hub link topic whose value is the hub's compiled policy set."""

_KIND_MEASURES: Final[dict[str, RunMeasure]] = {
    "llm": "llm_calls",
    "tool": "tool_calls",
    "step": "steps",
}
_WINDOW: Final = 60.0
"""Seconds a per-minute rate looks back."""
_MAX_WINDOW_CALLS: Final = 10_000
"""Calls remembered per agent and rule for rates (past any sane per-minute limit)."""


class PolicyStage(Stage):
    """Checks each call against the policy set in force (the hub's, else ``local``)."""

    name = "policy"
    error = PolicyViolation
    topics = frozenset({TOPIC})

    def __init__(
        self, link: HubLink, local: CompiledPolicy | None = None, costs: WorstCase | None = None
    ) -> None:
        self.link = link
        self.local = local
        """The set from the local policy file, in force until the hub sends one."""
        self.costs = costs
        """What prices calls before they run, for cost limits (made when first needed)."""
        self._lock = threading.Lock()
        self._rates: dict[tuple[str, str], collections.deque[float]] = {}
        self._profiles: tuple[object, Mapping[str, AgentProfile]] = (None, {})
        self._noticed: CompiledPolicy | None = None
        self._generation = 0

    @property
    def policy(self) -> CompiledPolicy | None:
        """The set in force now."""
        hub = self.link.snapshot.values.get(TOPIC)
        return self.local if hub is None else hub

    def engaged(self, snapshot: Snapshot) -> bool:
        """Idle while no set is in force: neither a local file nor one from the hub."""
        hub: CompiledPolicy | None = snapshot.values.get(TOPIC)
        policy = self.local if hub is None else hub
        return policy is not None

    def before(self, call: CallInfo) -> Decision | None:
        """The policy's decision on ``call``; None when no rule fired."""
        policy = self.policy
        if policy is None:
            return None
        if policy is not self._noticed:
            self._notice(policy)
        tally = self._tally(call.span.run)
        facts = _Facts(call, self, tally)
        started = time.perf_counter_ns()
        if policy.counts:
            with tally.lock:
                evaluation = self._evaluate(policy, facts)
                self._count(policy, facts, tally, evaluation)
        else:
            evaluation = policy.evaluate(facts)
            self._count(policy, facts, tally, evaluation)
        decision = evaluation.decision
        if decision is None or decision.outcome == "allow":
            return decision
        if decision.outcome == "require_approval":  # what a recheck of edits must not count
            measure = _KIND_MEASURES.get(facts.kind)
            own = ((measure,) if measure is not None else ()) + evaluation.counted
            call.state[self.name] = (frozenset(own), time.monotonic())
        latency_us = round((time.perf_counter_ns() - started) / 1000, 1)
        return dataclasses.replace(decision, details={**decision.details, "latency_us": latency_us})

    def recheck(
        self,
        call: CallInfo,
        arguments: Mapping[str, Any],
        answered: frozenset[str | None] = frozenset(),
    ) -> Decision | None:
        """The decision on ``call`` were its arguments ``arguments`` (a reviewer's edits),
        counting nothing. The call was counted when it passed: its own counts are left out, so
        a per-run or per-minute limit judges the edited call as it judged the call. Rules in
        ``answered`` (approvals a reviewer gave) do not fire again. None when no rule fired."""
        from agentops_sdk.contract.policy_engine import compile_policy
        from agentops_sdk.enforcement.call import CallInfo

        policy = self.policy
        if policy is None:
            return None
        if answered:  # rare (a reviewer's edits): the set compiled again without those rules
            source = policy.policy
            rules = [rule for rule in source.rules if rule.id not in answered]
            policy = compile_policy(source.model_copy(update={"rules": rules}))
        edited = CallInfo(call.span, (), arguments)
        own, counted_at = call.state.get(self.name, (frozenset(), 0.0))
        if time.monotonic() - counted_at >= _WINDOW:  # its per-minute counts have lapsed
            own = frozenset(name for name in own if name not in policy.rate_rules)
        tally = self._tally(call.span.run)
        with self._lock if policy.uses_rates else contextlib.nullcontext():
            return policy.evaluate(_Facts(edited, self, tally, own)).decision

    def run_cost(self, run: Run, tally: _RunTally) -> Decimal:
        """What ``run``'s finished LLM calls cost (for ``cost_per_run``): the calls not summed
        yet are added, each at the cost its span was given, else its usage priced as the
        budget stage prices it."""
        calls = run.calls
        if calls is None or tally.priced >= len(calls):
            return tally.cost
        with tally.lock:
            for model, provider, usage, given in calls[tally.priced :]:
                cost = self._pricer().actual(model, provider, usage) if given is None else given
                if cost is not None:
                    tally.cost += cost
                tally.priced += 1
            return tally.cost

    def worst_case(self, call: CallInfo) -> Decimal | None:
        """The most ``call`` (an LLM call) can cost, in USD; None: it cannot be priced."""
        return self._pricer().of(call.model, call.span.provider, call.arguments)

    def _pricer(self) -> WorstCase:
        costs = self.costs
        if costs is None:
            from agentops_sdk.enforcement.budget_costs import WorstCase

            costs = self.costs = WorstCase()
        return costs

    def after_fork(self) -> None:
        """In a forked child: fresh locks (a parent's thread may have held one at the fork)."""
        self._lock = threading.Lock()
        self._generation += 1

    # -- counters -------------------------------------------------------------------------------

    def _evaluate(self, policy: CompiledPolicy, facts: _Facts) -> Evaluation:
        if not policy.uses_rates:
            return policy.evaluate(facts)
        with self._lock:
            evaluation = policy.evaluate(facts)
            if evaluation.counted and _goes_ahead(evaluation):
                now = time.monotonic()
                for rule in evaluation.counted:
                    if rule in policy.rate_rules:
                        self._window(facts.agent, rule).append(now)
            return evaluation

    def _count(
        self, policy: CompiledPolicy, facts: _Facts, tally: _RunTally, evaluation: Evaluation
    ) -> None:
        if not _goes_ahead(evaluation):
            return
        measure = _KIND_MEASURES.get(facts.kind)
        counts = tally.counts
        if policy.counts:  # the caller holds the run's lock
            if measure is not None:
                counts[measure] = counts.get(measure, 0) + 1
            for rule in evaluation.counted:
                counts[rule] = counts.get(rule, 0) + 1
        elif measure is not None:
            with tally.lock:
                counts[measure] = counts.get(measure, 0) + 1

    def _tally(self, run: Run) -> _RunTally:
        """The run's counters (made on its first call, given fresh locks after a fork)."""
        state = run.state
        tally = None if state is None else state.get(self.name)
        if tally is None or tally.generation != self._generation:
            with self._lock:
                state = run.state
                if state is None:
                    state = run.state = {}
                tally = state.get(self.name)
                if tally is None:
                    tally = state[self.name] = _RunTally(self._generation)
                elif tally.generation != self._generation:
                    tally.lock = threading.Lock()
                    tally.generation = self._generation
        return tally

    def _window(self, agent: str, rule: str) -> collections.deque[float]:
        """The times of an agent's recent calls under ``rule`` (caller holds ``_lock``)."""
        window = self._rates.get((agent, rule))
        if window is None:
            window = self._rates[agent, rule] = collections.deque(maxlen=_MAX_WINDOW_CALLS)
        horizon = time.monotonic() - _WINDOW
        while window and window[0] <= horizon:
            window.popleft()
        return window

    # -- what the hub knows of agents -----------------------------------------------------------

    def profile(self, agent: str) -> AgentProfile | None:
        """The hub registry's profile of ``agent`` (its team and tags), if the hub sent one
        with its controls."""
        controls: ControlSet | None = self.link.snapshot.values.get("controls")
        if controls is None:
            return None
        cached, profiles = self._profiles
        if cached is not controls:
            profiles = {profile.name: profile for profile in controls.agents}
            self._profiles = (controls, profiles)
        return profiles.get(agent)

    def _notice(self, policy: CompiledPolicy) -> None:
        self._noticed = policy
        if policy.needs_pricing and importlib.util.find_spec("genai_prices") is None:
            logger.warning(
                "agentops: policy rules %s limit cost, and calls cannot be priced without the "
                'pricing extra (pip install "agentops-hub[pricing]"): they never fire (limit '
                "tokens_per_run and max_tokens meanwhile)",
                ", ".join(policy.needs_pricing),
            )


def hub_policy(effective: EffectivePolicy) -> CompiledPolicy | None:
    """What the ``policies`` topic holds for the hub's effective set: the set compiled, or None
    when the org has no active set (the local policy file, if any, applies)."""
    if effective.policy is None:
        return None
    from agentops_sdk.contract.policy_engine import compile_policy

    return compile_policy(effective.policy)


def _goes_ahead(evaluation: Evaluation) -> bool:
    decision = evaluation.decision
    return decision is None or decision.outcome != "deny"


class _RunTally:
    """One run's counters: calls of each kind, calls per counting rule, and what its finished
    LLM calls cost."""

    __slots__ = ("cost", "counts", "generation", "lock", "priced")

    def __init__(self, generation: int) -> None:
        self.lock = threading.Lock()
        self.counts: dict[str, int] = {}
        self.cost = Decimal(0)
        """What the run's first ``priced`` LLM calls cost."""
        self.priced = 0
        self.generation = generation


class _Facts:
    """A call as the policy engine sees it (:class:`~agentops_sdk.contract.policy_engine.Call`),
    read from the enforcer's :class:`CallInfo` only as far as the rules look."""

    __slots__ = ("_call", "_own", "_profile", "_stage", "_tally")

    _UNREAD: Final = object()

    def __init__(
        self,
        call: CallInfo,
        stage: PolicyStage,
        tally: _RunTally,
        own: frozenset[str] = frozenset(),
    ) -> None:
        self._call = call
        self._stage = stage
        self._tally = tally
        self._own = own
        """The counters (measures and rules) that already count this call: left out."""
        self._profile: Any = _Facts._UNREAD

    @property
    def kind(self) -> str:
        return self._call.span.kind

    @property
    def name(self) -> str:
        return self._call.span.name

    @property
    def agent(self) -> str:
        return self._call.span.run.agent

    @property
    def environment(self) -> str:
        return self._call.span.run.environment

    @property
    def team(self) -> str | None:
        profile = self._registered()
        return None if profile is None else profile.team

    @property
    def tags(self) -> tuple[str, ...]:
        tags = self._call.tags
        profile = self._registered()
        if profile is not None and profile.tags:
            tags = tuple(dict.fromkeys(tags + profile.tags))
        return tags

    @property
    def model(self) -> str | None:
        return self._call.span.model

    @property
    def arguments(self) -> Mapping[str, Any]:
        return self._call.arguments

    @property
    def max_tokens(self) -> int | None:
        return max_tokens_of(self._call.arguments)

    @property
    def cost(self) -> float | None:
        if self._call.span.kind != "llm":
            return None
        worst = self._stage.worst_case(self._call)
        return None if worst is None else float(worst)

    def run_total(self, measure: RunMeasure) -> float | None:
        run = self._call.span.run
        if measure == "duration":
            return (time.time_ns() - run.start_ns) / 1e9
        if measure == "tokens":
            return run.input_tokens + run.output_tokens
        if measure == "cost":
            return float(self._stage.run_cost(run, self._tally))
        return self._tally.counts.get(measure, 0) - (measure in self._own)

    def rule_calls(self, rule: str) -> int:
        return self._tally.counts.get(rule, 0) - (rule in self._own)

    def rule_rate(self, rule: str) -> int:
        return len(self._stage._window(self.agent, rule)) - (rule in self._own)

    def _registered(self) -> AgentProfile | None:
        if self._profile is _Facts._UNREAD:
            self._profile = self._stage.profile(self.agent)
        return self._profile  # type: ignore[no-any-return]
