"""What is recorded of inputs and outputs: a bounded, JSON-safe copy taken at call time."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections.abc import Iterator
from typing import Any

import pydantic
import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

import agentops_sdk as agentops
from agentops_sdk.capture import MAX_DEPTH, MAX_ITEMS, TRUNCATED, snapshot
from agentops_sdk.testing import CapturedEvents, capture_events

# -- taken at call time ----------------------------------------------------------------------


def test_input_is_recorded_as_it_was_when_the_call_began(agentops_events: CapturedEvents) -> None:
    @agentops.tool
    def enrich(items: list[int], options: dict[str, Any]) -> list[int]:
        items.append(99)
        options["seen"] = True
        return items

    items, options = [1, 2], {"mode": "fast"}
    enrich(items, options=options)

    (span,) = agentops_events.spans
    assert span.input == {"items": [1, 2], "options": {"mode": "fast"}}
    assert span.output == [1, 2, 99]


def test_output_and_arguments_mutated_after_the_call_leave_the_record_unchanged(
    agentops_events: CapturedEvents,
) -> None:
    @agentops.tool
    def pair(row: dict[str, list[int]]) -> dict[str, list[int]]:
        return {"copy": row["values"]}

    row = {"values": [1]}
    result = pair(row)
    row["values"].append(2)
    result["copy"].append(3)
    result["new"] = [4]

    (span,) = agentops_events.spans
    assert span.input == {"row": {"values": [1]}}
    assert span.output == {"copy": [1]}


# -- bounds ----------------------------------------------------------------------------------


def test_long_string_input_and_output_are_truncated_at_max_capture_chars() -> None:
    @agentops.tool
    def echo(text: str) -> str:
        return text * 2

    with capture_events(max_capture_chars=50) as events:
        echo("x" * 200)

        (span,) = events.spans
    assert span.input == {"text": "x" * 50 + TRUNCATED}
    assert span.output == "x" * 50 + TRUNCATED


def test_arguments_share_one_character_budget() -> None:
    @agentops.tool
    def combine(first: list[str], middle: str, last: list[str]) -> None:
        return None

    with capture_events(max_capture_chars=50) as events:
        combine(["a" * 30], "b" * 15, ["c" * 30])

        (span,) = events.spans
    recorded = span.input
    assert (recorded["first"], recorded["middle"]) == (["a" * 30], "b" * 15)
    (last,) = recorded["last"]
    kept = last.removesuffix(TRUNCATED)
    assert last.endswith(TRUNCATED)
    assert set(kept) <= {"c"}
    assert 30 + 15 + len(kept) <= 50


def test_nested_containers_are_truncated_by_budget_items_and_depth() -> None:
    deep: Any = "bottom"
    for _ in range(MAX_DEPTH + 3):
        deep = [deep]

    with capture_events(max_capture_chars=10_000) as events:
        with agentops.span("bounds") as span:
            span.set_attribute("long_list", list(range(MAX_ITEMS + 50)))
            span.set_attribute("wide_dict", {f"k{i}": i for i in range(MAX_ITEMS + 20)})
            span.set_attribute("deep", deep)
            span.set_attribute("nested_text", {"a": ["y" * 20_000]})

        attributes = events.span("bounds").attributes
    assert attributes["long_list"] == [*range(MAX_ITEMS), f"{TRUNCATED} 50 more"]
    wide = attributes["wide_dict"]
    assert len(wide) == MAX_ITEMS + 1
    assert wide[TRUNCATED] == 20
    assert wide["k0"] == 0
    level = attributes["deep"]
    for _ in range(MAX_DEPTH):
        (level,) = level
    assert level == "<list>"
    (text,) = attributes["nested_text"]["a"]
    assert text == "y" * (len(text) - len(TRUNCATED)) + TRUNCATED
    assert 9_900 < len(text) <= 10_000 + len(TRUNCATED)


def test_a_large_nested_list_of_numbers_is_cut_to_the_budget_not_copied_whole(
    agentops_events: CapturedEvents,
) -> None:
    @agentops.tool
    def embed(vectors: list[list[list[float]]]) -> int:
        return len(vectors)

    embed([[[0.5] * 100 for _ in range(100)] for _ in range(100)])

    (span,) = agentops_events.spans
    assert 0 < len(list(leaves_of(span.input))) <= 4096
    assert agentops.stats().dropped_total == 0


def test_generator_items_are_truncated_like_any_output() -> None:
    @agentops.tool
    def chunks() -> Iterator[str]:
        yield "z" * 100

    with capture_events(max_capture_chars=10) as events:
        list(chunks())

        (span,) = events.spans
    assert span.output == {"items": ["z" * 10 + TRUNCATED], "count": 1}


# -- values that are not JSON ----------------------------------------------------------------


class Ticket(pydantic.BaseModel):
    id: int
    tags: list[str]


@dataclasses.dataclass
class Point:
    x: int
    label: str


class Opaque:
    def __repr__(self) -> str:
        return "<Opaque 7>"


class Unprintable:
    def __repr__(self) -> str:
        raise RuntimeError("no repr for you")


class BadKey:
    def __str__(self) -> str:
        raise RuntimeError("no str for you")

    def __hash__(self) -> int:
        return 1


@pytest.mark.parametrize(
    ("value", "recorded"),
    [
        (Ticket(id=3, tags=["vip"]), {"id": 3, "tags": ["vip"]}),
        (Point(1, "origin"), {"x": 1, "label": "origin"}),
        (Opaque(), "<Opaque 7>"),
        (Unprintable(), "<unrepresentable Unprintable>"),
        ({BadKey(): 1}, "<unrepresentable dict>"),
        (b"abc", "<bytes len=3>"),
        ((1, "a"), [1, "a"]),
        ({3: "x", None: "y"}, {"3": "x", "None": "y"}),
        (frozenset({5}), [5]),
        (float("nan"), "nan"),
        ([float("inf"), -float("inf")], ["inf", "-inf"]),
    ],
    ids=lambda value: type(value).__name__,
)
def test_values_that_are_not_json_are_recorded_in_a_json_safe_form(
    agentops_events: CapturedEvents, value: Any, recorded: Any
) -> None:
    @agentops.tool
    def take(value: Any) -> Any:
        return value

    assert take(value) is value

    (span,) = agentops_events.spans
    assert span.input == {"value": recorded}
    assert span.output == recorded
    assert agentops.stats().dropped_total == 0


def test_an_unrepresentable_output_never_breaks_the_call(agentops_events: CapturedEvents) -> None:
    @agentops.agent
    def answer() -> dict[Any, int]:
        return {BadKey(): 1}

    assert len(answer()) == 1

    (run,) = agentops_events.runs
    assert run.status == "ok"
    assert run.output == "<unrepresentable dict>"


# -- capture=False ---------------------------------------------------------------------------


def test_capture_false_records_no_inputs_or_outputs_anywhere() -> None:
    @agentops.tool
    def secret(password: str) -> str:
        return password[::-1]

    @agentops.step
    def stream(password: str) -> Iterator[str]:
        yield password

    @agentops.agent
    def login(password: str) -> str:
        list(stream(password))
        return secret(password)

    with capture_events(capture=False) as events:
        login("hunter2")

        spans, (run,) = events.spans, events.runs
    assert len(spans) == 3
    assert [(span.input, span.output) for span in spans] == [(None, None)] * 3
    assert (run.input, run.output) == (None, None)
    assert "hunter2" not in json.dumps(events.events)


def test_capture_false_on_one_decorator_keeps_only_that_call_out_of_the_record(
    agentops_events: CapturedEvents,
) -> None:
    @agentops.tool(capture=False)
    def secret(password: str) -> str:
        return "token-123"

    @agentops.agent
    def login(user: str) -> str:
        return secret("hunter2")

    login("ada")

    assert agentops_events.span("secret").input is None
    assert agentops_events.span("secret").output is None
    assert agentops_events.span("login").input == {"user": "ada"}
    assert agentops_events.span("login").output == "token-123"


def test_capture_true_on_one_decorator_records_it_even_when_capture_is_off() -> None:
    @agentops.tool(capture=True)
    def lookup(key: str) -> str:
        return key.upper()

    with capture_events(capture=False) as events:
        with agentops.run("job", input="private"):
            lookup("public")

        assert events.span("job").input is None
        assert (events.span("lookup").input, events.span("lookup").output) == (
            {"key": "public"},
            "PUBLIC",
        )


# -- before_send -----------------------------------------------------------------------------


def test_before_send_can_redact_an_event_before_it_leaves() -> None:
    def redact(event: dict[str, Any]) -> dict[str, Any]:
        if isinstance(event.get("input"), dict) and "password" in event["input"]:
            event["input"] = {**event["input"], "password": "***"}
        return event

    @agentops.tool
    def login(user: str, password: str) -> bool:
        return True

    with capture_events(before_send=redact) as events:
        login("ada", password="hunter2")

        (span,) = events.spans
        (run,) = events.runs
    assert span.input == {"user": "ada", "password": "***"}
    assert run.input == {"user": "ada", "password": "***"}
    assert "hunter2" not in json.dumps(events.events)


def test_before_send_returning_none_drops_the_event_and_counts_it() -> None:
    def drop_tools(event: dict[str, Any]) -> dict[str, Any] | None:
        return None if event.get("kind") == "tool" else event

    @agentops.tool
    def search(query: str) -> str:
        return query

    @agentops.agent
    def agent() -> None:
        search("a")
        search("b")

    with capture_events(before_send=drop_tools) as events:
        agent()

        names = [span.name for span in events.spans]
        stats = agentops.stats()
    assert names == ["agent"]
    assert stats.dropped["before_send"] == 2
    assert stats.dropped_total == 2


def test_before_send_that_raises_drops_counts_and_logs_without_touching_the_agent(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(event: dict[str, Any]) -> dict[str, Any]:
        raise KeyError("oops")

    @agentops.agent
    def agent() -> str:
        return "fine"

    with (
        caplog.at_level(logging.ERROR, logger="agentops_sdk"),
        capture_events(before_send=broken) as events,
    ):
        assert agent() == "fine"

        assert events.events == []
        stats = agentops.stats()
    # The run is sent when it starts and when it ends, plus its one span.
    assert stats.dropped["before_send"] == 3
    assert stats.sent == 0
    assert [record.name for record in caplog.records] == ["agentops_sdk"]
    assert "before_send" in caplog.records[0].getMessage()


# -- properties of snapshot() ----------------------------------------------------------------

json_leaves = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.floats()
    | st.text(max_size=300)
)
odd_leaves = (
    st.binary(max_size=50)
    | st.builds(Point, st.integers(), st.text(max_size=50))
    | st.builds(Ticket, id=st.integers(), tags=st.lists(st.text(max_size=20), max_size=5))
    | st.builds(Opaque)
    | st.builds(Unprintable)
)
values = st.recursive(
    json_leaves | odd_leaves,
    lambda children: (
        st.lists(children, max_size=120)
        | st.tuples(children, children)
        | st.dictionaries(st.text(max_size=300) | st.integers(), children, max_size=120)
        | st.frozensets(st.integers(), max_size=20)
    ),
    max_leaves=200,
)


def strings_in(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from strings_in(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from strings_in(item)


def leaves_of(value: Any) -> Iterator[Any]:
    if isinstance(value, list):
        for item in value:
            yield from leaves_of(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from leaves_of(item)
    else:
        yield value


def depth_of(value: Any) -> int:
    if isinstance(value, list | tuple | dict):
        items = value.values() if isinstance(value, dict) else value
        return 1 + max((depth_of(item) for item in items), default=0)
    return 0


@given(values, st.integers(min_value=1, max_value=2000))
def test_snapshot_is_always_strict_json(value: Any, max_chars: int) -> None:
    copy, size = snapshot(value, max_chars)

    json.dumps(copy, allow_nan=False)
    assert size >= 0


@given(values, st.integers(min_value=1, max_value=2000))
@example({"k" * 500: "v"}, 10)  # a long key
@example([[[1.5] * 100] * 100] * 3, 2000)  # numbers: no text, yet they must spend the budget
def test_snapshot_strings_are_bounded_by_max_capture_chars(value: Any, max_chars: int) -> None:
    copy, _ = snapshot(value, max_chars)

    lengths = [len(text) for text in strings_in(copy)]
    markers = (len(TRUNCATED) + 20) * (MAX_DEPTH + 1) * 2  # cut-off marks, one or two a level
    assert max(lengths, default=0) <= max_chars + len(TRUNCATED) + 20  # "…[truncated] N more"
    assert sum(lengths) <= max_chars + markers
    assert len(list(leaves_of(copy))) <= max_chars + markers


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=20),
        lambda children: (
            st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children)
        ),
        max_leaves=30,
    )
)
def test_snapshot_of_a_small_json_value_is_an_equal_copy(value: Any) -> None:
    assume(depth_of(value) < MAX_DEPTH)

    copy, _ = snapshot(value, 4096)

    assert copy == value
    if isinstance(value, list | dict) and value:
        assert copy is not value


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_snapshot_keeps_finite_floats_and_spells_out_the_others(number: float) -> None:
    copy, _ = snapshot([number], 100)

    assert copy == ([number] if math.isfinite(number) else [repr(number)])


def test_a_class_passed_as_a_value_is_recorded_by_name() -> None:
    class Invoice(pydantic.BaseModel):
        total: int

    copy, _ = snapshot({"schema": Invoice}, 4096)
    assert copy == {"schema": f"<class {__name__}.{Invoice.__qualname__}>"}
