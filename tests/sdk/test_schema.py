"""The wire schema: what the SDK writes is what the hub accepts, and nothing else is."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from agentops_sdk.contract.decisions import (
    DECISION_EVENT,
    MAX_REASON_CHARS,
    MAX_RULE_CHARS,
    OUTCOMES,
    STAGES,
    Decision,
)
from agentops_sdk.exporters import ExportBatch
from agentops_sdk.ids import format_id, new_id
from agentops_sdk.schema import (
    SCHEMA_VERSION,
    Batch,
    DecisionRecord,
    Event,
    RunEvent,
    SpanEvent,
    SpanPoint,
)
from agentops_sdk.testing import capture_events

EVENT = TypeAdapter(Event)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
names = st.text(min_size=1, max_size=40)
moments = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)
errors = st.none() | st.builds(
    dict, type=names, message=st.text(max_size=50), stack=st.text(max_size=50)
)

span_events = st.builds(
    dict,
    type=st.just("span"),
    id=st.uuids(),
    run_id=st.uuids(),
    parent_id=st.none() | st.uuids(),
    kind=st.sampled_from(["agent", "tool", "step", "llm"]),
    name=names,
    status=st.sampled_from(["running", "ok", "error", "blocked", "cancelled"]),
    started_at=moments,
    ended_at=st.none() | moments,
    tags=st.lists(names, max_size=3),
    attributes=st.dictionaries(st.text(max_size=8), json_values, max_size=3),
    input=json_values,
    output=json_values,
    error=errors,
    llm=st.none()
    | st.builds(
        dict,
        model=st.none() | names,
        provider=st.none() | names,
        input_tokens=st.none() | st.integers(0, 10**9),
        output_tokens=st.none() | st.integers(0, 10**9),
    ),
)
run_events = st.builds(
    dict,
    type=st.just("run"),
    id=st.uuids(),
    agent=names,
    name=names,
    environment=st.sampled_from(["prod", "staging", "test", "dev"]),
    status=st.sampled_from(["running", "ok", "error", "blocked", "cancelled"]),
    started_at=moments,
    ended_at=st.none() | moments,
    metadata=st.dictionaries(st.text(max_size=8), json_values, max_size=3),
    input=json_values,
    span_count=st.integers(0, 10**6),
    input_tokens=st.integers(0, 10**9),
)


@given(st.one_of(span_events, run_events))
def test_any_valid_event_round_trips_through_json(event: dict[str, Any]) -> None:
    parsed = EVENT.validate_python(event)
    again = EVENT.validate_json(parsed.model_dump_json())
    assert again == parsed
    assert again.schema_version == SCHEMA_VERSION


@given(st.lists(st.one_of(span_events, run_events), max_size=5))
def test_a_batch_round_trips_through_json(events: list[dict[str, Any]]) -> None:
    batch = Batch.model_validate(
        {
            "batch_id": uuid.uuid4(),
            "sdk": {"name": "agentops-sdk", "version": "1"},
            "events": events,
        }
    )
    assert Batch.model_validate_json(batch.model_dump_json()) == batch


INVALID_CHANGES = [
    ("unknown field", {"surprise": 1}),
    ("bad id", {"id": "not-a-uuid"}),
    ("bad kind", {"kind": "robot"}),
    ("bad status", {"status": "fine"}),
    ("newer schema", {"schema_version": SCHEMA_VERSION + 1}),
    ("bad time", {"started_at": "yesterday"}),
    ("negative tokens", {"llm": {"input_tokens": -1}}),
    ("name too long", {"name": "x" * 257}),
    ("bad error", {"error": {"type": "E"}}),
]


@pytest.mark.parametrize(("why", "change"), INVALID_CHANGES, ids=[c[0] for c in INVALID_CHANGES])
@settings(max_examples=20)
@given(event=span_events)
def test_invalid_span_events_are_rejected(
    why: str, change: dict[str, Any], event: dict[str, Any]
) -> None:
    with pytest.raises(ValidationError):
        SpanEvent.model_validate({**event, **change})


@given(
    event=run_events,
    environment=st.text(max_size=10).filter(lambda e: e not in {"prod", "staging", "test", "dev"}),
)
def test_run_with_unknown_environment_is_rejected(event: dict[str, Any], environment: str) -> None:
    with pytest.raises(ValidationError):
        RunEvent.model_validate({**event, "environment": environment})


@given(st.dictionaries(st.text(max_size=10), json_values, max_size=4), json_values)
@settings(max_examples=40, deadline=None)
def test_what_the_sdk_records_validates_against_the_schema(
    arguments: dict[str, Any], returned: Any
) -> None:
    import agentops_sdk as agentops

    @agentops.tool
    def tool(**kwargs: Any) -> Any:
        return returned

    @agentops.llm(model="m", provider="p")
    def ask() -> dict[str, Any]:
        return {"usage": {"prompt_tokens": 1, "completion_tokens": 2}}

    @agentops.agent
    def agent_fn() -> Any:
        ask()
        with agentops.span("block") as block:
            block.add_event("note", value=returned)
            block.set_attribute("arguments", arguments)
        return tool(**arguments)

    with capture_events() as captured:
        agent_fn()
        events = captured.events
    assert {e["type"] for e in events} == {"run", "span"}
    for event in events:
        EVENT.validate_python(event)
    batch = ExportBatch(format_id(new_id()), events, [json.dumps(e).encode() for e in events])
    assert len(Batch.model_validate_json(batch.payload).events) == len(events)


# -- decisions ------------------------------------------------------------------------------------

decision_records = st.builds(
    dict,
    outcome=st.sampled_from(OUTCOMES),
    stage=st.none() | st.sampled_from(STAGES),
    rule=st.none() | st.text(max_size=MAX_RULE_CHARS),
    reason=st.none() | st.text(max_size=60),
    details=st.dictionaries(st.text(max_size=8), json_values, max_size=3),
)


def with_decision(event: dict[str, Any], attributes: dict[str, Any]) -> dict[str, Any]:
    point = {"name": DECISION_EVENT, "at": "2026-01-02T03:04:05.000006Z", "attributes": attributes}
    return {**event, "events": [point]}


@given(span_events, decision_records)
def test_a_span_carrying_a_decision_round_trips_and_reads_it_back_typed(
    event: dict[str, Any], record: dict[str, Any]
) -> None:
    parsed = SpanEvent.model_validate(with_decision(event, record))

    assert parsed.decisions == [DecisionRecord.model_validate(record)]
    assert SpanEvent.model_validate_json(parsed.model_dump_json()) == parsed


MALFORMED_DECISIONS = [
    ("unknown outcome", {"outcome": "maybe"}),
    ("unknown stage", {"outcome": "deny", "stage": "kernel"}),
    ("no outcome", {"stage": "policy"}),
    ("rule too long", {"outcome": "deny", "rule": "r" * (MAX_RULE_CHARS + 1)}),
    ("reason too long", {"outcome": "deny", "reason": "x" * (MAX_REASON_CHARS + 1)}),
    ("unknown field", {"outcome": "deny", "verdict": "no"}),
]


@pytest.mark.parametrize(
    ("why", "attributes"), MALFORMED_DECISIONS, ids=[m[0] for m in MALFORMED_DECISIONS]
)
@settings(max_examples=10)
@given(event=span_events)
def test_a_malformed_decision_event_is_rejected(
    why: str, attributes: dict[str, Any], event: dict[str, Any]
) -> None:
    with pytest.raises(ValidationError):
        SpanEvent.model_validate(with_decision(event, attributes))


def test_other_span_events_may_carry_any_attributes() -> None:
    point = SpanPoint(name="retry", at=datetime(2026, 1, 2, tzinfo=UTC), attributes={"outcome": 1})

    assert point.attributes == {"outcome": 1}


def test_a_decision_longer_than_the_wire_allows_is_cut_to_fit() -> None:
    decision = Decision("deny", stage="policy", rule="r" * 1000, reason="x" * 5000)

    record = DecisionRecord.model_validate(decision.to_wire())

    assert (len(record.rule or ""), len(record.reason or "")) == (MAX_RULE_CHARS, MAX_REASON_CHARS)
