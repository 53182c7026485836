"""Dry run: what a candidate policy set would have decided about the org's last recorded calls,
next to what the active set decides about them.

The org's last ``calls`` spans of the kinds a policy judges (tool, llm, step, agent) are
replayed in the order they started, through the SDK's engine, once with the active set and once
with the candidate. A span gives the call's facts as the SDK saw them: its kind and name; its
run's agent, environment and tags (and the span's tags); the agent's team in the registry; for
LLM calls the requested model (``request_model``, else the recorded one), the request's
parameters (the span's attributes: ``max_tokens``, ``temperature``...) and ``messages`` (the
span's input); for other calls their recorded input (arguments by parameter name). Each set
keeps its own counters as the SDK would (calls of each kind and per rule in a run, per agent
and rule in the last minute, the run's tokens and duration), counting only what it let through.

What is replayed is what was recorded: arguments cut to the SDK's capture limits, or not
captured at all (``capture=False``), decide as absent; counters start with the first call in
the window, so a run cut by the window counts fewer calls than it made.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import uuid
from collections.abc import Iterable
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from agentops_sdk.contract.decisions import Decision
from agentops_sdk.contract.llm_requests import max_tokens_of
from agentops_sdk.contract.policy import CALL_KINDS
from agentops_sdk.contract.policy_engine import CallFacts, CompiledPolicy, compile_policy
from agentops_server.db.models import Agent, PolicyState, PolicyVersion, Run, Span, Team
from agentops_server.refusals import Invalid, NotFound
from agentops_server.services.governance.policy_checks import validated_document

__all__ = [
    "DEFAULT_CALLS",
    "EXAMPLES",
    "MAX_CALLS",
    "Change",
    "DryRunExample",
    "DryRunReport",
    "Verdict",
    "dry_run",
]

DEFAULT_CALLS: Final = 1000
MAX_CALLS: Final = 10_000
EXAMPLES: Final = 5
"""Examples kept of each kind of change (the first ones, in the order the calls started)."""
_MEASURES: Final = {"llm": "llm_calls", "tool": "tool_calls", "step": "steps"}
_WINDOW: Final = dt.timedelta(seconds=60)
_STOPS: Final = frozenset({"deny", "require_approval"})


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Verdict:
    """What one set decided about a call (``allow`` and no rule: no rule fired)."""

    outcome: str
    rule: str | None
    reason: str | None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class DryRunExample:
    """One recorded call whose decision would change."""

    span_id: uuid.UUID
    run_id: uuid.UUID
    kind: str
    name: str
    model: str | None
    agent: str
    environment: str
    started_at: dt.datetime
    active: Verdict
    candidate: Verdict


@dataclasses.dataclass(slots=True, kw_only=True)
class Change:
    """How many calls changed this way, and the first few."""

    count: int = 0
    examples: list[DryRunExample] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(slots=True, kw_only=True)
class DryRunReport:
    """The replay's outcome: calls the candidate would treat otherwise than the active set.

    ``newly_denied``: denied now, not before; ``newly_allowed``: denied or held for approval
    before, let through now (allowed or only warned); ``newly_requiring_approval``: held for a
    human now, not before; ``newly_warned``: warned now, neither warned nor stopped before.
    """

    calls: int
    active_number: int | None
    candidate_number: int | None
    unchanged: int
    newly_denied: Change
    newly_allowed: Change
    newly_requiring_approval: Change
    newly_warned: Change


async def dry_run(
    session: AsyncSession,
    org_id: uuid.UUID,
    *,
    document: Any = None,
    version_id: uuid.UUID | None = None,
    calls: int = DEFAULT_CALLS,
) -> DryRunReport:
    """Replay the org's last ``calls`` recorded calls through the active set and through the
    candidate: ``document`` (validated as a save would) or the saved version ``version_id``.

    Refusals: ``invalid_policy``, ``invalid_dry_run`` (neither or both candidates, or
    ``calls`` out of range), ``policy_version_not_found``.
    """
    if (document is None) == (version_id is None):
        raise Invalid("invalid_dry_run", "Give either a document or a version_id to dry-run.")
    if not 1 <= calls <= MAX_CALLS:
        raise Invalid("invalid_dry_run", f"calls is between 1 and {MAX_CALLS}.")
    candidate_number = None
    if version_id is not None:
        row = await session.get(PolicyVersion, (org_id, version_id))
        if row is None:
            raise NotFound("policy_version_not_found", "The org has no such policy version.")
        candidate = validated_document(row.document, row.number)
        candidate_number = row.number
    else:
        candidate = validated_document(document, "candidate")
    active_number = None
    active: CompiledPolicy | None = None
    state = await session.get(PolicyState, org_id)
    if state is not None and state.active_id is not None:
        active_row = await session.get(PolicyVersion, (org_id, state.active_id))
        if active_row is not None:
            active_number = active_row.number
            active = compile_policy(validated_document(active_row.document, active_row.number))
    report = DryRunReport(
        calls=0,
        active_number=active_number,
        candidate_number=candidate_number,
        unchanged=0,
        newly_denied=Change(),
        newly_allowed=Change(),
        newly_requiring_approval=Change(),
        newly_warned=Change(),
    )
    before, after = _Replay(active), _Replay(compile_policy(candidate))
    for call in await _recorded_calls(session, org_id, calls):
        report.calls += 1
        old, new = before.decide(call), after.decide(call)
        change = _change(report, old.outcome, new.outcome)
        if change is None:
            report.unchanged += 1
            continue
        change.count += 1
        if len(change.examples) < EXAMPLES:
            change.examples.append(call.example(old, new))
    return report


def _change(report: DryRunReport, old: str, new: str) -> Change | None:
    if new == old:
        return None
    if new == "deny":
        return report.newly_denied
    if new == "require_approval":
        return report.newly_requiring_approval
    if old in _STOPS:
        return report.newly_allowed
    return report.newly_warned if new == "warn" else None


@dataclasses.dataclass(frozen=True, slots=True)
class _Recorded:
    """One recorded call: its span, its run's facts, and the call as the engine reads it."""

    span: Span
    run_id: uuid.UUID
    run_started_at: dt.datetime
    facts: CallFacts

    def example(self, active: Verdict, candidate: Verdict) -> DryRunExample:
        span = self.span
        return DryRunExample(
            span_id=span.id,
            run_id=span.run_id,
            kind=span.kind,
            name=span.name,
            model=self.facts.model,
            agent=self.facts.agent,
            environment=self.facts.environment,
            started_at=span.started_at,
            active=active,
            candidate=candidate,
        )


class _Replay:
    """One set's view of the replayed calls, with the counters the SDK's stage would keep."""

    def __init__(self, policy: CompiledPolicy | None) -> None:
        self.policy = policy
        self.counts: dict[uuid.UUID, collections.Counter[str]] = collections.defaultdict(
            collections.Counter
        )
        self.tokens: collections.Counter[uuid.UUID] = collections.Counter()
        self.windows: dict[tuple[str, str], collections.deque[dt.datetime]] = {}

    def decide(self, call: _Recorded) -> Verdict:
        if self.policy is None:
            return Verdict(outcome="allow", rule=None, reason=None)
        span, facts = call.span, call.facts
        counts = self.counts[call.run_id]
        facts = dataclasses.replace(
            facts,
            run={
                "llm_calls": counts["llm_calls"],
                "tool_calls": counts["tool_calls"],
                "steps": counts["steps"],
                "duration": max(0.0, (span.started_at - call.run_started_at).total_seconds()),
                "tokens": self.tokens[call.run_id],
            },
            counts=counts,
            rates={
                rule: len(self._window(facts.agent, rule, span.started_at))
                for rule in self.policy.rate_rules
            },
        )
        evaluation = self.policy.evaluate(facts)
        decision: Decision | None = evaluation.decision
        if decision is None or decision.outcome != "deny":
            measure = _MEASURES.get(span.kind)
            if measure is not None:
                counts[measure] += 1
            for rule in evaluation.counted:
                counts[rule] += 1
                if rule in self.policy.rate_rules:
                    self._window(facts.agent, rule, span.started_at).append(span.started_at)
            self.tokens[call.run_id] += (span.input_tokens or 0) + (span.output_tokens or 0)
        if decision is None:
            return Verdict(outcome="allow", rule=None, reason=None)
        return Verdict(outcome=decision.outcome, rule=decision.rule, reason=decision.reason)

    def _window(self, agent: str, rule: str, now: dt.datetime) -> collections.deque[dt.datetime]:
        window = self.windows.setdefault((agent, rule), collections.deque())
        while window and window[0] <= now - _WINDOW:
            window.popleft()
        return window


async def _recorded_calls(session: AsyncSession, org_id: uuid.UUID, limit: int) -> list[_Recorded]:
    """The org's last ``limit`` calls, oldest first, with what the engine needs of each."""
    spans = list(
        await session.scalars(
            select(Span)
            .where(Span.org_id == org_id, Span.kind.in_(CALL_KINDS))
            .order_by(Span.started_at.desc(), Span.id.desc())
            .limit(limit)
        )
    )
    spans.reverse()
    runs = {
        run.id: run
        for run in await session.scalars(
            select(Run).where(Run.org_id == org_id, Run.id.in_({span.run_id for span in spans}))
        )
    }
    teams = await _teams_of(session, org_id, {run.agent for run in runs.values()})
    return [_recorded(span, runs.get(span.run_id), teams) for span in spans]


async def _teams_of(
    session: AsyncSession, org_id: uuid.UUID, agents: Iterable[str]
) -> dict[str, str]:
    """The registry's team name of each agent that has one."""
    found = await session.execute(
        select(Agent.name, Team.name)
        .join(Team, (Team.org_id == Agent.org_id) & (Team.id == Agent.team_id))
        .where(Agent.org_id == org_id, Agent.name.in_(set(agents)))
    )
    return {row[0]: row[1] for row in found.all()}


def _recorded(span: Span, run: Run | None, teams: dict[str, str]) -> _Recorded:
    agent = run.agent if run is not None else "default"
    attributes = span.attributes or {}
    if span.kind == "llm":
        requested = attributes.get("request_model")
        model = requested if isinstance(requested, str) else span.model
        arguments: dict[str, Any] = {**attributes, "model": model, "messages": span.input}
    else:
        model = span.model
        if isinstance(span.input, dict):
            arguments = span.input
        else:
            arguments = {} if span.input is None else {"input": span.input}
    facts = CallFacts(
        kind=span.kind,
        name=span.name,
        agent=agent,
        environment=run.environment if run is not None else "unknown",
        team=teams.get(agent),
        tags=tuple(dict.fromkeys([*(span.tags or []), *(run.tags if run is not None else [])])),
        model=model,
        arguments=arguments,
        max_tokens=max_tokens_of(arguments),
    )
    return _Recorded(
        span=span,
        run_id=span.run_id,
        run_started_at=run.started_at if run is not None else span.started_at,
        facts=facts,
    )
