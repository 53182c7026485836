"""The current span: how it follows calls, tasks and threads, and that it never leaks."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

import agentops_sdk as agentops
from agentops_sdk.context import CURRENT
from agentops_sdk.spans import NOOP_SPAN
from agentops_sdk.testing import CapturedEvents
from tests.sdk.test_decorators import FUNCTION_KINDS, drive, make_work


def assert_clean() -> None:
    assert CURRENT.get() is None
    assert agentops.current_span() is NOOP_SPAN


# -- following the code ----------------------------------------------------------------------


def test_current_span_follows_nested_calls_and_is_restored_on_return(
    agentops_events: CapturedEvents,
) -> None:
    seen: list[tuple[str, str]] = []

    @agentops.tool
    def inner() -> None:
        seen.append(("inner", agentops.current_span().name))

    @agentops.agent
    def outer() -> None:
        seen.append(("before", agentops.current_span().name))
        inner()
        seen.append(("after", agentops.current_span().name))

    outer()

    assert seen == [("before", "outer"), ("inner", "inner"), ("after", "outer")]
    assert_clean()


def test_current_span_exposes_the_ids_of_the_recorded_span_and_run(
    agentops_events: CapturedEvents,
) -> None:
    ids: list[tuple[str, str]] = []

    @agentops.tool
    def lookup() -> None:
        span = agentops.current_span()
        ids.append((span.span_id, span.run_id))

    lookup()

    (span,) = agentops_events.spans
    assert ids == [(str(span.id), str(span.run_id))]


async def test_task_created_inside_a_span_is_its_child(agentops_events: CapturedEvents) -> None:
    @agentops.tool
    async def fetch(page: int) -> int:
        await asyncio.sleep(0)
        return page

    @agentops.agent
    async def crawler() -> int:
        task = asyncio.create_task(fetch(1))
        return await task

    assert await crawler() == 1

    root = agentops_events.span("crawler")
    fetch_span = agentops_events.span("fetch")
    assert (fetch_span.parent_id, fetch_span.run_id) == (root.id, root.run_id)
    assert_clean()


async def test_gathered_calls_are_siblings_under_the_caller_not_each_others_children(
    agentops_events: CapturedEvents,
) -> None:
    both_running = asyncio.Barrier(2)

    @agentops.tool
    async def fetch(page: int) -> int:
        # Both are inside their spans at once: each must still see its own.
        await asyncio.wait_for(both_running.wait(), timeout=5)
        assert agentops.current_span().name == "fetch"
        return page

    @agentops.agent
    async def crawler() -> list[int]:
        return list(await asyncio.gather(fetch(1), fetch(2)))

    assert await crawler() == [1, 2]

    root = agentops_events.span("crawler")
    fetches = [span for span in agentops_events.spans if span.name == "fetch"]
    assert len(fetches) == 2
    assert [span.parent_id for span in fetches] == [root.id, root.id]
    assert sorted(span.input["page"] for span in fetches) == [1, 2]
    assert agentops_events.children(root) == fetches


def test_bind_context_carries_the_run_into_a_thread_pool(agentops_events: CapturedEvents) -> None:
    @agentops.tool
    def fetch(page: int) -> tuple[int, str]:
        return page, threading.current_thread().name

    @agentops.agent
    def crawler() -> list[tuple[int, str]]:
        with ThreadPoolExecutor(max_workers=3, thread_name_prefix="pool") as pool:
            return list(pool.map(agentops.bind_context(fetch), range(6)))

    results = crawler()

    assert [page for page, _ in results] == list(range(6))
    assert all(thread.startswith("pool") for _, thread in results)
    (run,) = agentops_events.runs
    root = agentops_events.span("crawler")
    fetches = [span for span in agentops_events.spans if span.name == "fetch"]
    assert len(fetches) == 6
    assert {(span.run_id, span.parent_id) for span in fetches} == {(run.id, root.id)}
    assert run.span_count == 7


def test_without_bind_context_a_thread_starts_its_own_run(agentops_events: CapturedEvents) -> None:
    @agentops.tool
    def fetch(page: int) -> int:
        return page

    @agentops.agent
    def crawler() -> int:
        with ThreadPoolExecutor(max_workers=1) as pool:
            return pool.submit(fetch, 1).result()

    crawler()

    crawler_run, fetch_run = agentops_events.runs
    fetch_span = agentops_events.span("fetch")
    assert (crawler_run.agent, fetch_run.agent) == ("crawler", "default")
    assert fetch_span.run_id == fetch_run.id
    assert fetch_span.parent_id is None


def test_bound_calls_leave_the_pool_thread_clean(agentops_events: CapturedEvents) -> None:
    @agentops.tool
    def fetch() -> None:
        agentops.current_span().set_attribute("thread", threading.current_thread().name)

    def current_in_thread() -> Any:
        return CURRENT.get()

    with ThreadPoolExecutor(max_workers=1) as pool, agentops.run("crawl"):
        pool.submit(agentops.bind_context(fetch)).result()
        # The same worker thread, no longer bound: nothing of the run is left in it.
        assert pool.submit(current_in_thread).result() is None


def test_bind_context_captures_the_context_when_bound_not_when_called(
    agentops_events: CapturedEvents,
) -> None:
    @agentops.tool
    def fetch() -> str:
        return agentops.current_span().run_id

    with agentops.run("first") as first:
        bound = agentops.bind_context(fetch)
    with agentops.run("second"), ThreadPoolExecutor(max_workers=1) as pool:
        run_id = pool.submit(bound).result()

    assert run_id == first.run_id
    assert agentops.bind_context(fetch).__name__ == "fetch"


# -- never leaking ---------------------------------------------------------------------------


class Boom(Exception):
    pass


def make_failing(function_kind: str) -> Callable[..., Any]:
    def fail() -> None:
        raise Boom

    def failing() -> None:
        fail()

    async def afailing() -> None:
        fail()

    def gfailing() -> Iterator[int]:
        yield 1
        fail()

    async def agfailing() -> AsyncIterator[int]:
        yield 1
        fail()

    return [failing, afailing, gfailing, agfailing][FUNCTION_KINDS.index(function_kind)]


@pytest.mark.parametrize("function_kind", FUNCTION_KINDS)
@pytest.mark.parametrize("decorator", [agentops.agent, agentops.tool])
async def test_context_is_clean_after_a_call_that_returns(
    agentops_events: CapturedEvents, function_kind: str, decorator: Callable[..., Any]
) -> None:
    await drive(function_kind, decorator(make_work(function_kind)), 1)

    assert_clean()
    assert len(agentops_events.spans) == 1


@pytest.mark.parametrize("function_kind", FUNCTION_KINDS)
@pytest.mark.parametrize("decorator", [agentops.agent, agentops.tool])
async def test_context_is_clean_after_a_call_that_raises(
    agentops_events: CapturedEvents, function_kind: str, decorator: Callable[..., Any]
) -> None:
    with pytest.raises(Boom):
        await drive(function_kind, decorator(make_failing(function_kind)))

    assert_clean()
    assert agentops_events.spans[0].status == "error"


@pytest.mark.parametrize("function_kind", FUNCTION_KINDS)
async def test_context_inside_an_agent_is_the_agents_span_again_after_any_inner_call(
    agentops_events: CapturedEvents, function_kind: str
) -> None:
    inner = agentops.tool(make_failing(function_kind))

    @agentops.agent
    async def outer() -> str:
        with contextlib.suppress(Boom):
            await drive(function_kind, inner)
        return agentops.current_span().name

    assert await outer() == "outer"
    assert_clean()


def test_context_is_clean_after_a_generator_is_closed_early(
    agentops_events: CapturedEvents,
) -> None:
    @agentops.tool
    def stream() -> Iterator[int]:
        yield from range(10)

    with contextlib.closing(stream()) as items:
        next(items)
        assert_clean()  # between items the consumer runs in its own context
    assert_clean()
    assert agentops_events.spans[0].status == "ok"


async def test_context_is_clean_after_an_async_generator_is_closed_early(
    agentops_events: CapturedEvents,
) -> None:
    @agentops.tool
    async def stream() -> AsyncIterator[int]:
        for i in range(10):
            yield i

    items = stream()
    await items.__anext__()  # type: ignore[attr-defined]
    assert_clean()
    await items.aclose()  # type: ignore[attr-defined]
    assert_clean()
    assert agentops_events.spans[0].status == "ok"


def test_generator_abandoned_midway_by_its_consumer_leaves_no_span_behind(
    agentops_events: CapturedEvents,
) -> None:
    @agentops.tool
    def stream() -> Iterator[int]:
        yield from range(10)

    @agentops.agent
    def reader() -> int:
        items = stream()
        return next(items)  # the generator is dropped unfinished

    assert reader() == 0
    assert_clean()
    assert [(span.name, span.status) for span in agentops_events.spans] == [
        ("reader", "ok"),
        ("stream", "ok"),
    ]


@pytest.mark.parametrize("use_async", [False, True])
async def test_context_is_clean_after_a_run_block_that_raises(
    agentops_events: CapturedEvents, use_async: bool
) -> None:
    async def block() -> None:
        if use_async:
            async with agentops.run("job"), agentops.span("part"):
                raise Boom
        with agentops.run("job"), agentops.span("part"):
            raise Boom

    with pytest.raises(Boom):
        await block()

    assert_clean()


def test_context_is_clean_after_a_call_blocked_by_a_guard(agentops_events: CapturedEvents) -> None:
    def deny(call: Any) -> None:
        raise agentops.PolicyViolation("no")

    agentops_events.client.guards.add(deny)

    @agentops.tool
    def forbidden() -> None:
        raise AssertionError("never runs")

    with pytest.raises(agentops.PolicyViolation):
        forbidden()

    assert_clean()
