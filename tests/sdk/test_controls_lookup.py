"""The compiled lookup answers what the contract's ``effective_control`` answers, for any set.

The SDK compiles a control set once into a lookup per agent and environment (so a call costs a
dict lookup or two); ``effective_control`` is the contract's plain statement of the rule, shared
with the hub. Hypothesis draws sets from a small world (two agents, two environments, two
teams, three tags, two runs, a few instants) so that scopes collide, ties happen and controls
expire between the calls asked about.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from agentops_sdk.contract.controls import (
    CONTROL_STATES,
    AgentProfile,
    Control,
    ControlScope,
    ControlSet,
    effective_control,
)
from agentops_sdk.contract.ids import format_id
from agentops_sdk.enforcement.controls import CompiledControls

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
INSTANTS = [T0 + timedelta(seconds=s) for s in (0, 1, 2, 3)] + [T0 + timedelta(microseconds=1)]
AGENTS = ["researcher", "writer"]
ENVIRONMENTS = ["prod", "dev"]
TEAMS = ["growth", "billing"]
TAGS = ["payments", "eu", "batch"]
RUNS = [format_id((0x0192F5A07C1E7D3A9B2E << 48) | n) for n in (1, 2)]

values = {
    "org": st.none(),
    "environment": st.sampled_from([*ENVIRONMENTS, "staging"]),
    "team": st.sampled_from([*TEAMS, None]) | st.none(),
    "tag": st.sampled_from([*TAGS, None]),
    "agent": st.sampled_from([*AGENTS, "someone-else"]),
    # Not every run value is a canonical id: those match no run on either side.
    "run": st.sampled_from([*RUNS, RUNS[0].upper(), "not-a-run"]),
}
scopes = st.sampled_from(sorted(values)).flatmap(
    lambda kind: values[kind].map(lambda value: ControlScope(kind=kind, value=value))  # type: ignore[arg-type]
)


@st.composite
def controls(draw: st.DrawFn) -> Control:
    updated_at = draw(st.sampled_from(INSTANTS))
    return Control(
        id=uuid.UUID(int=draw(st.integers(0, 2**64))),
        scope=draw(scopes),
        state=draw(st.sampled_from(CONTROL_STATES)),
        reason="drawn",
        actor="hypothesis",
        version=1,
        created_at=updated_at,
        updated_at=updated_at,
        expires_at=draw(st.none() | st.sampled_from(INSTANTS)),
    )


profiles = st.builds(
    AgentProfile,
    name=st.sampled_from(AGENTS),
    team=st.none() | st.sampled_from(TEAMS),
    tags=st.lists(st.sampled_from(TAGS), max_size=2, unique=True).map(tuple),
)
control_sets = st.builds(
    ControlSet,
    org_id=st.just(uuid.UUID(int=1)),
    version=st.just(1),
    controls=st.lists(controls(), max_size=12).map(tuple),
    agents=st.lists(profiles, max_size=3).map(tuple),
    generated_at=st.just(T0),
)
calls = st.tuples(
    st.sampled_from(AGENTS),
    st.sampled_from(ENVIRONMENTS),
    st.lists(st.sampled_from(TAGS), max_size=3).map(tuple),
    st.none() | st.sampled_from(RUNS),
    st.sampled_from(INSTANTS),
)


def ns(moment: datetime) -> int:
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1) * 1000


@settings(max_examples=400, deadline=None)
@given(control_sets, st.lists(calls, min_size=1, max_size=8))
def test_the_compiled_lookup_agrees_with_effective_control_for_every_call(
    control_set: ControlSet, asked: list[tuple[str, str, tuple[str, ...], str | None, datetime]]
) -> None:
    compiled = CompiledControls(control_set)
    # One lookup serves every call, as the clock moves on: its views expire with their controls.
    for agent, environment, tags, run_id, now in sorted(asked, key=lambda call: call[-1]):
        expected = effective_control(
            control_set.controls,
            agent=agent,
            environment=environment,
            tags=tags,
            run_id=run_id,
            profile=control_set.profile(agent),
            now=now,
        )
        found = compiled.effective(
            agent=agent,
            environment=environment,
            tags=tags,
            run_id=None if run_id is None else int(run_id.replace("-", ""), 16),
            now_ns=ns(now),
        )
        assert found is expected, (agent, environment, tags, run_id, now)
