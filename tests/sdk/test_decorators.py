"""The decorators and context managers: what each form records, and that it changes nothing else."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

import agentops_sdk as agentops
from agentops_sdk import client as _client
from agentops_sdk.context import CURRENT
from agentops_sdk.decorators import GENERATOR_ITEMS_KEPT
from agentops_sdk.spans import NOOP_SPAN
from agentops_sdk.testing import CapturedEvents, capture_events

FUNCTION_KINDS = ("sync", "async", "generator", "async_generator")
DECORATORS: dict[str, Callable[..., Any]] = {
    "agent": agentops.agent,
    "tool": agentops.tool,
    "step": agentops.step,
    "llm": agentops.llm,
}
FORMS = ("bare", "called", "configured")


def make_work(function_kind: str) -> Callable[..., Any]:
    """A fresh ``work(x, y="d")`` of the given kind: returns ``[x, y]`` or yields x, then y."""
    if function_kind == "sync":

        def work(x: int, y: str = "d") -> list[Any]:
            """Pair x with y."""
            return [x, y]

        return work
    if function_kind == "async":

        async def awork(x: int, y: str = "d") -> list[Any]:
            """Pair x with y."""
            return [x, y]

        return awork
    if function_kind == "generator":

        def gwork(x: int, y: str = "d") -> Iterator[Any]:
            """Yield x, then y."""
            yield x
            yield y

        return gwork

    async def agwork(x: int, y: str = "d") -> AsyncIterator[Any]:
        """Yield x, then y."""
        yield x
        yield y

    return agwork


async def drive(function_kind: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call ``fn`` to the end: its return value, or the list of what it yielded."""
    if function_kind == "sync":
        return fn(*args, **kwargs)
    if function_kind == "async":
        return await fn(*args, **kwargs)
    if function_kind == "generator":
        return list(fn(*args, **kwargs))
    return [item async for item in fn(*args, **kwargs)]


def decorate(kind: str, form: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    decorator = DECORATORS[kind]
    if form == "bare":
        return decorator(fn)
    if form == "called":
        return decorator()(fn)
    return decorator(name="custom", tags=["t1", "t2"])(fn)


def expected_output(function_kind: str, value: list[Any]) -> Any:
    if function_kind in ("generator", "async_generator"):
        return {"items": value, "count": len(value)}
    return value


# -- forms and kinds -------------------------------------------------------------------------


@pytest.mark.parametrize("function_kind", FUNCTION_KINDS)
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("kind", DECORATORS)
async def test_every_decorator_form_records_one_span_of_its_kind_on_every_function_kind(
    agentops_events: CapturedEvents, kind: str, form: str, function_kind: str
) -> None:
    work = decorate(kind, form, make_work(function_kind))

    result = await drive(function_kind, work, 1, y="z")

    assert result == [1, "z"]
    (span,) = agentops_events.spans
    (run,) = agentops_events.runs
    name = "custom" if form == "configured" else work.__name__
    assert (span.kind, span.name, span.status) == (kind, name, "ok")
    assert span.tags == (["t1", "t2"] if form == "configured" else [])
    assert span.input == {"x": 1, "y": "z"}
    assert span.output == expected_output(function_kind, [1, "z"])
    assert span.parent_id is None
    assert span.run_id == run.id
    assert run.status == "ok"
    assert run.name == name
    assert run.agent == (name if kind == "agent" else "default")
    assert run.span_count == 1


@pytest.mark.parametrize("function_kind", FUNCTION_KINDS)
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("kind", DECORATORS)
def test_wrapper_keeps_name_doc_signature_and_function_kind(
    kind: str, form: str, function_kind: str
) -> None:
    original = make_work(function_kind)

    wrapper = decorate(kind, form, original)

    assert wrapper is not original
    assert wrapper.__name__ == original.__name__
    assert wrapper.__qualname__ == original.__qualname__
    assert wrapper.__doc__ == original.__doc__
    assert inspect.signature(wrapper) == inspect.signature(original)
    assert inspect.iscoroutinefunction(wrapper) == (function_kind == "async")
    assert inspect.isgeneratorfunction(wrapper) == (function_kind == "generator")
    assert inspect.isasyncgenfunction(wrapper) == (function_kind == "async_generator")


def test_decorating_something_not_callable_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="@tool decorates functions"):
        agentops.tool(42)  # type: ignore[call-overload]


def test_agent_metadata_is_attached_to_its_run(agentops_events: CapturedEvents) -> None:
    @agentops.agent(metadata={"team": "support"})
    def triage() -> str:
        return "done"

    triage()

    (run,) = agentops_events.runs
    assert run.metadata == {"team": "support"}


# -- methods ---------------------------------------------------------------------------------


class Library:
    def __init__(self, shelf: str) -> None:
        self.shelf = shelf

    @agentops.tool
    def lookup(self, title: str) -> str:
        """Find a title on this shelf."""
        return f"{self.shelf}:{title}"

    @agentops.tool
    async def alookup(self, title: str) -> str:
        return f"{self.shelf}:{title}"

    @agentops.tool
    @staticmethod
    def normalise(title: str) -> str:
        return title.lower()

    @staticmethod
    @agentops.tool
    def normalise_inner(title: str) -> str:
        return title.upper()

    @agentops.tool
    @classmethod
    def open_shelf(cls, shelf: str) -> Library:
        return cls(shelf)

    @classmethod
    @agentops.tool
    def open_shelf_inner(cls, shelf: str) -> Library:
        return cls(shelf)


async def test_method_is_recorded_without_self_and_still_bound_to_its_instance(
    agentops_events: CapturedEvents,
) -> None:
    library = Library("fiction")

    assert library.lookup("Dune") == "fiction:Dune"
    assert await library.alookup(title="Emma") == "fiction:Emma"

    lookup, alookup = agentops_events.spans
    assert (lookup.name, lookup.input) == ("lookup", {"title": "Dune"})
    assert (alookup.name, alookup.input) == ("alookup", {"title": "Emma"})
    assert inspect.signature(Library.lookup) == inspect.signature(Library.lookup.__wrapped__)
    assert Library.lookup.__doc__ == "Find a title on this shelf."


@pytest.mark.parametrize("method", ["normalise", "normalise_inner"])
def test_staticmethod_in_either_decorator_order_is_recorded_from_class_and_instance(
    agentops_events: CapturedEvents, method: str
) -> None:
    via_class = getattr(Library, method)("Dune")
    via_instance = getattr(Library("x"), method)("Emma")

    expected = ("dune", "emma") if method == "normalise" else ("DUNE", "EMMA")
    assert (via_class, via_instance) == expected
    spans = agentops_events.spans
    assert [span.name for span in spans] == [method, method]
    assert [span.input for span in spans] == [{"title": "Dune"}, {"title": "Emma"}]


@pytest.mark.parametrize("method", ["open_shelf", "open_shelf_inner"])
def test_classmethod_in_either_decorator_order_gets_cls_and_does_not_record_it(
    agentops_events: CapturedEvents, method: str
) -> None:
    library = getattr(Library, method)("poetry")

    assert isinstance(library, Library)
    assert library.shelf == "poetry"
    (span,) = agentops_events.spans
    assert (span.name, span.input) == (method, {"shelf": "poetry"})
    assert isinstance(span.output, str)
    assert "Library" in span.output


# -- nesting ---------------------------------------------------------------------------------


def test_outermost_agent_starts_a_run_and_inner_calls_link_to_their_parents(
    agentops_events: CapturedEvents,
) -> None:
    @agentops.tool
    def search(query: str) -> list[str]:
        return [query]

    @agentops.step
    def plan(topic: str) -> list[str]:
        return search(topic) + search(topic + "!")

    @agentops.agent(name="researcher")
    def research(topic: str) -> str:
        return " ".join(plan(topic))

    assert research("cats") == "cats cats!"

    (run,) = agentops_events.runs
    root = agentops_events.span("researcher")
    step = agentops_events.span("plan")
    tools = [span for span in agentops_events.spans if span.name == "search"]
    assert (run.agent, run.name, run.status, run.span_count) == (
        "researcher",
        "researcher",
        "ok",
        4,
    )
    assert run.input == {"topic": "cats"}
    assert run.output == "cats cats!"
    assert {span.run_id for span in agentops_events.spans} == {run.id}
    assert root.parent_id is None
    assert step.parent_id == root.id
    assert [tool.parent_id for tool in tools] == [step.id, step.id]
    assert agentops_events.children(step) == tools


def test_agent_called_inside_another_agent_is_a_span_of_the_same_run(
    agentops_events: CapturedEvents,
) -> None:
    @agentops.agent
    def helper() -> int:
        return 1

    @agentops.agent
    def boss() -> int:
        return helper() + 1

    boss()

    (run,) = agentops_events.runs
    assert run.agent == "boss"
    assert agentops_events.span("helper").parent_id == agentops_events.span("boss").id


def test_lone_tool_starts_an_implicit_run_owned_by_the_configured_agent() -> None:
    @agentops.tool
    def search(query: str) -> str:
        return query

    with capture_events(agent="support-bot", tags=("team-a",)) as events:
        search("refund")

        (run,) = events.runs
        (span,) = events.spans
    assert (run.agent, run.name, run.status) == ("support-bot", "search", "ok")
    assert run.tags == ["team-a"]
    assert span.run_id == run.id
    assert span.parent_id is None


def test_two_top_level_calls_make_two_runs(agentops_events: CapturedEvents) -> None:
    @agentops.tool
    def search(query: str) -> str:
        return query

    search("a")
    search("b")

    first, second = agentops_events.runs
    assert first.id != second.id
    assert [span.run_id for span in agentops_events.spans] == [first.id, second.id]


# -- generators ------------------------------------------------------------------------------


def test_generator_span_covers_its_whole_iteration(agentops_events: CapturedEvents) -> None:
    @agentops.tool
    def fetch(page: int) -> int:
        return page

    @agentops.step
    def pages() -> Iterator[int]:
        for page in range(3):
            yield fetch(page)

    @agentops.agent
    def reader() -> list[int]:
        seen = []
        for page in pages():
            # The consumer's code between items belongs to the consumer, not to the generator.
            assert agentops.current_span().name == "reader"
            seen.append(fetch(page + 10))
        return seen

    reader()

    reader_span = agentops_events.span("reader")
    pages_span = agentops_events.span("pages")
    fetches = [span for span in agentops_events.spans if span.name == "fetch"]
    inside = [span for span in fetches if span.parent_id == pages_span.id]
    outside = [span for span in fetches if span.parent_id == reader_span.id]
    assert [span.input for span in inside] == [{"page": 0}, {"page": 1}, {"page": 2}]
    assert [span.input for span in outside] == [{"page": 10}, {"page": 11}, {"page": 12}]
    assert pages_span.parent_id == reader_span.id
    assert pages_span.ended_at is not None
    assert all(pages_span.ended_at >= span.ended_at for span in inside)  # type: ignore[operator]
    assert pages_span.output == {"items": [0, 1, 2], "count": 3}


def test_generator_records_its_first_items_and_count_not_the_whole_stream(
    agentops_events: CapturedEvents,
) -> None:
    @agentops.tool
    def numbers(n: int) -> Iterator[int]:
        yield from range(n)

    assert sum(numbers(1000)) == sum(range(1000))

    (span,) = agentops_events.spans
    assert span.output == {"items": list(range(GENERATOR_ITEMS_KEPT)), "count": 1000}


async def test_async_generator_records_its_first_items_and_count_not_the_whole_stream(
    agentops_events: CapturedEvents,
) -> None:
    @agentops.tool
    async def numbers(n: int) -> AsyncIterator[int]:
        for i in range(n):
            yield i

    assert [i async for i in numbers(500)] == list(range(500))

    (span,) = agentops_events.spans
    assert span.output == {"items": list(range(GENERATOR_ITEMS_KEPT)), "count": 500}


def test_generator_return_value_and_sent_values_pass_through(
    agentops_events: CapturedEvents,
) -> None:
    @agentops.step
    def accumulate() -> Iterator[int]:
        total = 0
        while True:
            received = yield total
            if received is None:
                return total
            total += received

    def consume() -> Any:
        return (yield from accumulate())

    consumer = consume()
    assert next(consumer) == 0
    assert consumer.send(5) == 5
    assert consumer.send(7) == 12
    with pytest.raises(StopIteration) as stop:
        consumer.send(None)

    assert stop.value.value == 12
    (span,) = agentops_events.spans
    assert span.output == {"items": [0, 5, 12], "count": 3, "returned": 12}


def test_generator_closed_early_ends_its_span_ok_and_closes_the_function(
    agentops_events: CapturedEvents,
) -> None:
    cleaned_up = []

    @agentops.tool
    def stream() -> Iterator[int]:
        try:
            yield from range(100)
        finally:
            cleaned_up.append(True)

    with contextlib.closing(stream()) as items:
        for item in items:
            if item == 2:
                break

    assert cleaned_up == [True]
    (span,) = agentops_events.spans
    assert span.status == "ok"
    assert span.output == {"items": [0, 1, 2], "count": 3}


async def test_async_generator_closed_early_ends_its_span_ok_and_closes_the_function(
    agentops_events: CapturedEvents,
) -> None:
    cleaned_up = []

    @agentops.tool
    async def stream() -> AsyncIterator[int]:
        try:
            for i in range(100):
                yield i
        finally:
            cleaned_up.append(True)

    items = stream()
    async for item in items:
        if item == 2:
            break
    await items.aclose()  # type: ignore[attr-defined]

    assert cleaned_up == [True]
    (span,) = agentops_events.spans
    assert span.status == "ok"
    assert span.output == {"items": [0, 1, 2], "count": 3}


def test_exception_thrown_into_generator_reaches_the_function_which_may_recover(
    agentops_events: CapturedEvents,
) -> None:
    @agentops.tool
    def resilient() -> Iterator[str]:
        try:
            yield "first"
        except ValueError as exc:
            yield f"recovered from {exc}"
        yield "last"

    items = resilient()
    assert next(items) == "first"
    assert items.throw(ValueError("boom")) == "recovered from boom"
    assert list(items) == ["last"]

    (span,) = agentops_events.spans
    assert span.status == "ok"
    assert span.output == {"items": ["first", "recovered from boom", "last"], "count": 3}


def test_exception_thrown_into_generator_and_not_caught_fails_its_span(
    agentops_events: CapturedEvents,
) -> None:
    @agentops.tool
    def fragile() -> Iterator[str]:
        yield "first"
        yield "never"

    error = ValueError("thrown in")
    items = fragile()
    next(items)
    with pytest.raises(ValueError, match="thrown in") as raised:
        items.throw(error)

    assert raised.value is error
    (span,) = agentops_events.spans
    assert span.status == "error"
    assert span.error is not None
    assert (span.error.type, span.error.message) == ("ValueError", "thrown in")
    assert span.output == {"items": ["first"], "count": 1}  # yielded before failing


async def test_exception_thrown_into_async_generator_reaches_the_function(
    agentops_events: CapturedEvents,
) -> None:
    @agentops.tool
    async def resilient() -> AsyncIterator[str]:
        try:
            yield "first"
        except ValueError as exc:
            yield f"recovered from {exc}"

    items = resilient()
    assert await items.__anext__() == "first"  # type: ignore[attr-defined]
    recovered = await items.athrow(ValueError("boom"))  # type: ignore[attr-defined]
    assert recovered == "recovered from boom"
    assert [item async for item in items] == []

    (span,) = agentops_events.spans
    assert span.status == "ok"
    assert span.output == {"items": ["first", "recovered from boom"], "count": 2}


@pytest.mark.parametrize("function_kind", ["generator", "async_generator"])
async def test_generator_that_raises_midway_records_the_items_before_and_the_error(
    agentops_events: CapturedEvents, function_kind: str
) -> None:
    error = RuntimeError("stream broke")
    received: list[int] = []

    def broken() -> Iterator[int]:
        yield 1
        raise error

    async def abroken() -> AsyncIterator[int]:
        yield 1
        raise error

    async def consume() -> None:
        if function_kind == "generator":
            for item in agentops.tool(broken)():
                received.append(item)
        else:
            async for item in agentops.tool(abroken)():
                received.append(item)

    with pytest.raises(RuntimeError, match="stream broke") as raised:
        await consume()

    assert raised.value is error
    assert received == [1]
    (span,) = agentops_events.spans
    assert span.status == "error"
    assert span.error is not None
    assert span.error.type == "RuntimeError"
    assert span.output == {"items": [1], "count": 1}  # yielded before failing


async def test_async_generator_runs_in_the_consumers_task_not_a_helper_task(
    agentops_events: CapturedEvents,
) -> None:
    tasks = []

    @agentops.tool
    async def stream() -> AsyncIterator[int]:
        for i in range(3):
            tasks.append(asyncio.current_task())
            yield i

    assert [i async for i in stream()] == [0, 1, 2]

    assert tasks == [asyncio.current_task()] * 3


async def test_asyncio_timeout_reaches_a_decorated_async_generator_and_records_cancelled(
    agentops_events: CapturedEvents,
) -> None:
    started = asyncio.Event()
    cancelled_inside = []

    @agentops.tool
    async def endless() -> AsyncIterator[int]:
        yield 0
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled_inside.append(True)
            raise
        yield 1

    received = []

    async def consume() -> None:
        async with asyncio.timeout(0.05):
            async for item in endless():
                received.append(item)

    with pytest.raises(TimeoutError):
        await consume()

    assert started.is_set()
    assert received == [0]
    assert cancelled_inside == [True]
    (span,) = agentops_events.spans
    assert span.status == "cancelled"
    assert span.output == {"items": [0], "count": 1}  # yielded before the timeout


# -- errors ----------------------------------------------------------------------------------


class LookupFailed(Exception):
    pass


@pytest.mark.parametrize("function_kind", FUNCTION_KINDS)
async def test_exception_is_recorded_and_reraised_as_the_same_object(
    agentops_events: CapturedEvents, function_kind: str
) -> None:
    error = LookupFailed("no such user")

    def fail() -> None:
        raise error

    def failing_lookup(user: str) -> None:
        fail()

    async def afailing_lookup(user: str) -> None:
        fail()

    def gfailing_lookup(user: str) -> Iterator[None]:
        fail()
        yield None

    async def agfailing_lookup(user: str) -> AsyncIterator[None]:
        fail()
        yield None

    functions = [failing_lookup, afailing_lookup, gfailing_lookup, agfailing_lookup]
    lookup = agentops.tool(functions[FUNCTION_KINDS.index(function_kind)])

    with pytest.raises(LookupFailed) as raised:
        await drive(function_kind, lookup, "ada")

    assert raised.value is error
    (span,) = agentops_events.spans
    (run,) = agentops_events.runs
    assert span.status == "error"
    assert span.error is not None
    assert span.error.type == f"{__name__}.LookupFailed"
    assert span.error.message == "no such user"
    assert "in fail" in span.error.stack
    assert "raise error" in span.error.stack
    assert (run.status, run.error_count) == ("error", 1)
    assert run.error == span.error


def test_exception_inside_agent_fails_every_span_it_passes_through(
    agentops_events: CapturedEvents,
) -> None:
    @agentops.tool
    def explode() -> None:
        raise KeyError("k")

    @agentops.agent
    def runner() -> None:
        explode()

    with pytest.raises(KeyError):
        runner()

    (run,) = agentops_events.runs
    assert [span.status for span in agentops_events.spans] == ["error", "error"]
    assert (run.status, run.error_count, run.span_count) == ("error", 2, 2)


async def test_cancelled_coroutine_is_recorded_as_cancelled(
    agentops_events: CapturedEvents,
) -> None:
    started = asyncio.Event()

    @agentops.tool
    async def wait_forever() -> None:
        started.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(wait_forever())
    await asyncio.wait_for(started.wait(), timeout=5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    (span,) = agentops_events.spans
    (run,) = agentops_events.runs
    assert span.status == "cancelled"
    assert span.error is not None
    assert span.error.type == "asyncio.exceptions.CancelledError"
    assert (run.status, run.error_count) == ("cancelled", 0)


# -- run() and span() ------------------------------------------------------------------------


def test_run_context_manager_records_a_run_with_what_the_block_adds(
    agentops_events: CapturedEvents,
) -> None:
    with agentops.run("triage", input={"ticket": 42}, tags=["urgent"], metadata={"v": 2}) as run:
        assert agentops.current_span() is run
        run.set_attribute("queue", "billing")
        run.add_event("escalated", level=2)
        with agentops.span("rerank") as inner:
            assert agentops.current_span() is inner
            inner.set_output(["b", "a"])
        run.set_output({"answer": "refund"})

    assert agentops.current_span() is NOOP_SPAN
    (recorded,) = agentops_events.runs
    root = agentops_events.span("triage")
    rerank = agentops_events.span("rerank")
    assert (recorded.agent, recorded.status, recorded.tags) == ("triage", "ok", ["urgent"])
    assert recorded.metadata == {"v": 2}
    assert recorded.input == {"ticket": 42}
    assert recorded.output == {"answer": "refund"}
    assert (root.kind, root.attributes) == ("agent", {"queue": "billing"})
    assert [(event.name, event.attributes) for event in root.events] == [
        ("escalated", {"level": 2})
    ]
    assert (rerank.kind, rerank.parent_id, rerank.output) == ("step", root.id, ["b", "a"])


async def test_async_run_and_span_context_managers_record_like_the_sync_ones(
    agentops_events: CapturedEvents,
) -> None:
    async with agentops.run("nightly") as run:
        async with agentops.span("call-model", kind="llm", input="hi") as call:
            await asyncio.sleep(0)
            call.set_usage(input_tokens=10, output_tokens=3, model="gpt-4o", provider="openai")
        run.set_output("ok")

    (recorded,) = agentops_events.runs
    llm = agentops_events.span("call-model")
    assert (recorded.status, recorded.output) == ("ok", "ok")
    assert (recorded.input_tokens, recorded.output_tokens) == (10, 3)
    assert llm.kind == "llm"
    assert llm.input == "hi"
    assert llm.parent_id == agentops_events.span("nightly").id
    assert llm.llm is not None
    assert (llm.llm.model, llm.llm.provider) == ("gpt-4o", "openai")
    assert (llm.llm.input_tokens, llm.llm.output_tokens) == (10, 3)


@pytest.mark.parametrize("use_async", [False, True])
async def test_error_inside_run_block_is_recorded_and_propagates(
    agentops_events: CapturedEvents, use_async: bool
) -> None:
    error = ValueError("bad ticket")

    async def triage() -> None:
        if use_async:
            async with agentops.run("triage"):
                raise error
        with agentops.run("triage"):
            raise error

    with pytest.raises(ValueError, match="bad ticket") as raised:
        await triage()

    assert raised.value is error
    (run,) = agentops_events.runs
    assert run.status == "error"
    assert run.error is not None
    assert run.error.message == "bad ticket"
    assert CURRENT.get() is None


def test_run_inside_an_agent_is_an_agent_span_of_that_run(agentops_events: CapturedEvents) -> None:
    @agentops.agent
    def outer() -> None:
        with agentops.run("sub-agent"):
            pass

    outer()

    (run,) = agentops_events.runs
    sub = agentops_events.span("sub-agent")
    assert run.agent == "outer"
    assert (sub.kind, sub.parent_id) == ("agent", agentops_events.span("outer").id)


def test_span_attributes_are_snapshotted_when_set(agentops_events: CapturedEvents) -> None:
    values = [1, 2]
    with agentops.span("collect") as span:
        span.set_attribute("values", values)
        values.append(3)

    assert agentops_events.span("collect").attributes == {"values": [1, 2]}


# -- @llm ------------------------------------------------------------------------------------


class Usage:
    def __init__(self, prompt_tokens: int, completion_tokens: int) -> None:
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = completion_tokens


class ChatCompletion:
    def __init__(self, model: str, prompt_tokens: int, completion_tokens: int) -> None:
        self.model = model
        self.usage = Usage(prompt_tokens, completion_tokens)


def test_llm_reads_model_and_usage_from_an_openai_shaped_response(
    agentops_events: CapturedEvents,
) -> None:
    @agentops.llm(provider="openai")
    def ask(prompt: str) -> ChatCompletion:
        return ChatCompletion("gpt-4o-mini", 12, 5)

    ask("hi")

    (span,) = agentops_events.spans
    assert span.llm is not None
    assert (span.llm.model, span.llm.provider) == ("gpt-4o-mini", "openai")
    assert (span.llm.input_tokens, span.llm.output_tokens) == (12, 5)


@pytest.mark.parametrize(
    "response",
    [
        {"model": "gpt-4o", "usage": {"prompt_tokens": 7, "completion_tokens": 2}},
        {"model": "gpt-4o", "usage": {"input_tokens": 7, "output_tokens": 2}},
    ],
)
async def test_llm_reads_model_and_usage_from_a_dict_response(
    agentops_events: CapturedEvents, response: dict[str, Any]
) -> None:
    @agentops.llm
    async def ask(prompt: str) -> dict[str, Any]:
        return response

    await ask("hi")

    (span,) = agentops_events.spans
    assert span.llm is not None
    assert (span.llm.model, span.llm.input_tokens, span.llm.output_tokens) == ("gpt-4o", 7, 2)


def test_llm_records_the_model_that_answered_over_the_declared_one(
    agentops_events: CapturedEvents,
) -> None:
    @agentops.llm(model="gpt-4o", provider="openai")
    def ask(prompt: str) -> ChatCompletion:
        return ChatCompletion("gpt-4o-2024-08-06", 3, 1)

    ask("hi")

    (span,) = agentops_events.spans
    assert span.llm is not None
    assert span.llm.model == "gpt-4o-2024-08-06"


def test_llm_without_usage_in_its_response_records_the_declared_model_only(
    agentops_events: CapturedEvents,
) -> None:
    @agentops.llm(model="claude-x")
    def ask(prompt: str) -> str:
        return "plain text"

    ask("hi")

    (span,) = agentops_events.spans
    assert span.llm is not None
    assert (span.llm.model, span.llm.input_tokens, span.llm.output_tokens) == (
        "claude-x",
        None,
        None,
    )


def test_token_usage_of_llm_calls_rolls_up_into_the_run_totals(
    agentops_events: CapturedEvents,
) -> None:
    @agentops.llm
    def ask(prompt: str) -> ChatCompletion:
        return ChatCompletion("gpt-4o", 100, 20)

    @agentops.llm
    def ask_manually(prompt: str) -> str:
        agentops.current_span().set_usage(input_tokens=5, output_tokens=1, model="local")
        return "ok"

    @agentops.agent
    def chat() -> None:
        ask("a")
        ask("b")
        ask_manually("c")

    chat()

    (run,) = agentops_events.runs
    assert (run.input_tokens, run.output_tokens) == (205, 41)


def test_set_usage_reported_in_parts_keeps_both_counts(agentops_events: CapturedEvents) -> None:
    with agentops.span("stream", kind="llm") as span:
        span.set_usage(input_tokens=40)
        span.set_usage(output_tokens=9)

    (recorded,) = agentops_events.spans
    (run,) = agentops_events.runs
    assert recorded.llm is not None
    assert (recorded.llm.input_tokens, recorded.llm.output_tokens) == (40, 9)
    assert (run.input_tokens, run.output_tokens) == (40, 9)


# -- before init() and disabled --------------------------------------------------------------


@pytest.fixture
def no_client(monkeypatch: pytest.MonkeyPatch) -> None:
    """No SDK client, as before ``init()``."""
    monkeypatch.setattr(_client, "current", None)


@pytest.mark.usefixtures("no_client")
@pytest.mark.parametrize("function_kind", FUNCTION_KINDS)
async def test_before_init_decorated_functions_run_and_record_nothing(function_kind: str) -> None:
    seen_spans = []

    def body() -> None:
        seen_spans.append(agentops.current_span())

    if function_kind == "sync":

        def work(x: int) -> int:
            body()
            return x

    elif function_kind == "async":

        async def work(x: int) -> int:  # type: ignore[misc]
            body()
            return x

    elif function_kind == "generator":

        def work(x: int) -> Iterator[int]:  # type: ignore[misc]
            body()
            yield x

    else:

        async def work(x: int) -> AsyncIterator[int]:  # type: ignore[misc]
            body()
            yield x

    for kind, decorator in DECORATORS.items():
        wrapped = decorator(work)
        result = await drive(function_kind, wrapped, 3)
        assert result == (3 if function_kind in ("sync", "async") else [3]), kind

    assert seen_spans == [NOOP_SPAN] * 4
    assert CURRENT.get() is None
    with agentops.run("manual") as run:
        assert run is NOOP_SPAN
        run.set_output("ignored")
    assert agentops.stats().dropped_total == 0


@pytest.mark.usefixtures("no_client")
async def test_before_init_async_generator_forwards_athrow_and_aclose_like_the_bare_function() -> (
    None
):
    closed = []

    @agentops.tool
    async def resilient() -> AsyncIterator[str]:
        try:
            try:
                yield "first"
            except ValueError:
                yield "recovered"
            yield "last"
        finally:
            closed.append(True)

    items = resilient()
    assert await items.__anext__() == "first"  # type: ignore[attr-defined]
    assert await items.athrow(ValueError("boom")) == "recovered"  # type: ignore[attr-defined]
    await items.aclose()  # type: ignore[attr-defined]

    assert closed == [True]


def test_init_with_enabled_false_returns_none_and_later_calls_record_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for variable in [name for name in os.environ if name.startswith("AGENTOPS_")]:
        monkeypatch.delenv(variable)

    @agentops.tool
    def search(query: str) -> str:
        return agentops.current_span().name

    with capture_events() as events:
        assert search("before") == "search"
        assert agentops.init(enabled=False) is None
        assert agentops.get_client() is None
        assert search("after") == ""

        recorded = events.spans
    assert [span.input for span in recorded] == [{"query": "before"}]
