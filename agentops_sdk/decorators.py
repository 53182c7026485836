"""``@agent``, ``@tool``, ``@step``, ``@llm`` and the ``run()``/``span()`` context managers.

Each decorator works with or without arguments, on sync, async, generator and async-generator
functions and on methods, and keeps the function's name, docstring, signature and kind. All
reflection happens once, at decoration; a call does only what recording needs. Before ``init()``
(or with ``AGENTOPS_ENABLED=false``) a decorated call is the bare call plus one lookup.

The outermost decorated call of a context starts a run; calls inside it become its spans, linked
to their parent. Every call is started by ``Client.start`` (``astart`` when async), so it passes
the enforcer (:mod:`agentops_sdk.enforcement`) before its body runs.

    import agentops_sdk as agentops

    @agentops.tool
    def search(query: str) -> list[str]: ...

    @agentops.agent(name="researcher", tags=["beta"])
    async def research(topic: str) -> str: ...
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncGenerator, Callable, Generator, Mapping
from types import TracebackType
from typing import Any, TypeVar, overload

from agentops_sdk import client as _client
from agentops_sdk.capture import Snapshot
from agentops_sdk.client import CallSpec
from agentops_sdk.context import CURRENT, RESUMING
from agentops_sdk.enforcement.call import Substitution
from agentops_sdk.spans import NOOP_SPAN, Span, SpanKind

__all__ = ["agent", "llm", "resume_run", "run", "span", "step", "tool"]

F = TypeVar("F", bound=Callable[..., Any])

GENERATOR_ITEMS_KEPT = 10
"""A generator's recorded output: its first items and the number it yielded, never the stream."""


@overload
def agent(fn: F, /) -> F: ...
@overload
def agent(
    *,
    name: str | None = None,
    tags: list[str] | tuple[str, ...] = (),
    capture: bool | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> Callable[[F], F]: ...
def agent(
    fn: F | None = None,
    /,
    *,
    name: str | None = None,
    tags: list[str] | tuple[str, ...] = (),
    capture: bool | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> F | Callable[[F], F]:
    """Mark an agent's entry point: its outermost call starts a run named after the agent.

    ``name`` defaults to the function's name; ``capture=False`` keeps its inputs and output out
    of the record; ``metadata`` is attached to the run.
    """
    return _decorator("agent", fn, name=name, tags=tags, capture=capture, metadata=metadata)


@overload
def tool(fn: F, /) -> F: ...
@overload
def tool(
    *,
    name: str | None = None,
    tags: list[str] | tuple[str, ...] = (),
    capture: bool | None = None,
) -> Callable[[F], F]: ...
def tool(
    fn: F | None = None,
    /,
    *,
    name: str | None = None,
    tags: list[str] | tuple[str, ...] = (),
    capture: bool | None = None,
) -> F | Callable[[F], F]:
    """Mark a tool the agent calls; policies and budgets see it by ``name``."""
    return _decorator("tool", fn, name=name, tags=tags, capture=capture)


@overload
def step(fn: F, /) -> F: ...
@overload
def step(
    *,
    name: str | None = None,
    tags: list[str] | tuple[str, ...] = (),
    capture: bool | None = None,
) -> Callable[[F], F]: ...
def step(
    fn: F | None = None,
    /,
    *,
    name: str | None = None,
    tags: list[str] | tuple[str, ...] = (),
    capture: bool | None = None,
) -> F | Callable[[F], F]:
    """Mark a step of the agent's own logic (planning, parsing...)."""
    return _decorator("step", fn, name=name, tags=tags, capture=capture)


@overload
def llm(fn: F, /) -> F: ...
@overload
def llm(
    *,
    name: str | None = None,
    model: str | None = None,
    provider: str | None = None,
    tags: list[str] | tuple[str, ...] = (),
    capture: bool | None = None,
) -> Callable[[F], F]: ...
def llm(
    fn: F | None = None,
    /,
    *,
    name: str | None = None,
    model: str | None = None,
    provider: str | None = None,
    tags: list[str] | tuple[str, ...] = (),
    capture: bool | None = None,
) -> F | Callable[[F], F]:
    """Mark a hand-written LLM call.

    Usage is read from an OpenAI-shaped return value (``.usage.prompt_tokens`` or
    ``input_tokens``, ``.model``); otherwise report it with
    ``agentops.current_span().set_usage(input_tokens=..., output_tokens=..., model=...)``.
    """
    return _decorator(
        "llm", fn, name=name, tags=tags, capture=capture, model=model, provider=provider
    )


class run:  # lower case: used like a function, ``with agentops.run("triage"):``
    """Record a block of code as a run (or, inside one, as an ``agent`` span).

        with agentops.run("triage", input={"ticket": 42}) as span:
            ...
            span.set_output(answer)

    Works with ``with`` and ``async with``; the enforcer runs on entry.
    """

    _kind: SpanKind = "agent"

    def __init__(
        self,
        name: str,
        *,
        input: Any = None,  # the natural name for what the block receives
        tags: list[str] | tuple[str, ...] = (),
        metadata: Mapping[str, Any] | None = None,
        capture: bool | None = None,
    ) -> None:
        self._spec = CallSpec(
            kind=self._kind, name=name, tags=tuple(tags), capture=capture, metadata=metadata
        )
        self._input = input
        self._span: Span | None = None
        self._client: _client.Client | None = None
        self._token: Any = None

    def __enter__(self) -> Span:
        client = _client.current
        if client is None:
            return NOOP_SPAN
        return self._entered(client, client.start(self._spec, given_input=self._input))

    async def __aenter__(self) -> Span:
        client = _client.current
        if client is None:
            return NOOP_SPAN
        return self._entered(client, await client.astart(self._spec, given_input=self._input))

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._close(exc)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._close(exc)

    def _entered(self, client: _client.Client, span: Span | None) -> Span:
        if span is None:
            return NOOP_SPAN
        self._client, self._span = client, span
        self._token = _enter(span)
        return span

    def _close(self, exc: BaseException | None) -> None:
        span, client = self._span, self._client
        if span is None or client is None:
            return
        self._span = None
        _exit(span, self._token)
        if exc is None:
            client.end_span(span, None)
        else:
            client.fail_span(span, exc)


class span(run):
    """Record a block of code as a span of the current run (a ``step`` unless told).

    with agentops.span("rerank", kind="step") as current:
        current.set_attribute("candidates", len(docs))
    """

    def __init__(
        self,
        name: str,
        *,
        kind: SpanKind = "step",
        input: Any = None,
        tags: list[str] | tuple[str, ...] = (),
        capture: bool | None = None,
    ) -> None:
        self._kind = kind
        super().__init__(name, input=input, tags=tags, capture=capture)


class resume_run:  # lower case: used like a function, ``with agentops.resume_run(run_id):``
    """Continue an earlier run: a run started inside the block takes ``run_id`` instead of a
    new id, so the hub adds to that run, and an approval the run asked for (bound to the run,
    the call's name and its arguments) is found again, not asked twice.

        run_id = agentops.current_run_id()     # in the first process; keep it somewhere
        ...
        with agentops.resume_run(run_id):      # in the process that takes over
            researcher("cats")                 # a pending approval is waited for again

    ``run_id`` is a run's UUID, as ``current_run_id()`` gives it (``ValueError`` otherwise).
    Calls inside a run already running are not affected; each run started in the block (a
    decorated agent called twice) continues the same run.
    """

    def __init__(self, run_id: str) -> None:
        from agentops_sdk.ids import format_id, parse_id

        try:
            number = parse_id(run_id)
        except ValueError:
            number = -1
        if number < 0 or format_id(number) != run_id.lower():
            raise ValueError(f"not a run id: {run_id!r}")
        self.run_id = number
        self._tokens: list[Any] = []

    def __enter__(self) -> resume_run:
        self._tokens.append(RESUMING.set(self.run_id))
        return self

    def __exit__(self, *exc_info: object) -> None:
        RESUMING.reset(self._tokens.pop())

    async def __aenter__(self) -> resume_run:
        return self.__enter__()

    async def __aexit__(self, *exc_info: object) -> None:
        self.__exit__(*exc_info)


# -- building wrappers, once per decorated function ------------------------------------------


def _decorator(kind: SpanKind, fn: F | None, **settings: Any) -> F | Callable[[F], F]:
    def decorate(target: F) -> F:
        wrapped: F = _wrap(target, kind, settings)
        return wrapped

    return decorate if fn is None else decorate(fn)


def _wrap(fn: Any, kind: SpanKind, settings: dict[str, Any]) -> Any:
    if isinstance(fn, staticmethod | classmethod):
        return type(fn)(_wrap(fn.__func__, kind, settings))
    if not callable(fn):
        raise TypeError(f"@{kind} decorates functions and methods, not {type(fn).__name__}")
    spec = CallSpec(
        kind=kind,
        name=str(settings.get("name") or getattr(fn, "__name__", type(fn).__name__)),
        tags=tuple(settings.get("tags") or ()),
        capture=settings.get("capture"),
        param_names=_parameter_names(fn),
        defaults=_parameter_defaults(fn),
        model=settings.get("model"),
        provider=settings.get("provider"),
        metadata=settings.get("metadata"),
        substitutes=True,
    )
    if inspect.isasyncgenfunction(fn):
        wrapper = _async_generator_wrapper(fn, spec)
    elif inspect.isgeneratorfunction(fn):
        wrapper = _generator_wrapper(fn, spec)
    elif inspect.iscoroutinefunction(fn):
        wrapper = _coroutine_wrapper(fn, spec)
    else:
        wrapper = _function_wrapper(fn, spec)
    functools.update_wrapper(wrapper, fn)
    wrapper.__agentops_spec__ = spec  # type: ignore[attr-defined]
    return wrapper


def _parameter_names(fn: Callable[..., Any]) -> tuple[str, ...]:
    """Names for positional arguments, without ``self``/``cls`` (their values are not data)."""
    try:
        parameters = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return ()
    positional = [
        p.name
        for p in parameters
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
    if positional and positional[0] in ("self", "cls"):
        positional[0] = ""  # marks the slot to skip; see _capture_arguments
    return tuple(positional)


def _parameter_defaults(fn: Callable[..., Any]) -> dict[str, Any]:
    """The default value of each parameter that has one (what a call that leaves it out gets)."""
    try:
        parameters = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return {}
    return {p.name: p.default for p in parameters if p.default is not inspect.Parameter.empty}


def _enter(span: Span | None) -> Any:
    if span is None:  # an unrecorded generator step
        return None
    token = CURRENT.set(span)
    if span.otel is not None:
        span.otel.attach()
    return token


def _exit(span: Span | None, token: Any) -> None:
    if span is None:
        return
    if span.otel is not None:
        span.otel.detach()
    CURRENT.reset(token)


def _function_wrapper(fn: Callable[..., Any], spec: CallSpec) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        client = _client.current
        if client is None:
            return fn(*args, **kwargs)
        try:
            span = client.start(spec, args, kwargs)
        except Substitution as substitution:  # an approval's edits, or its rejection as result
            if substitution.refused is not None:
                return substitution.refused.result
            span = substitution.span
            args, kwargs = substitution.replacement or (args, kwargs)
        if span is None:
            return fn(*args, **kwargs)
        # _enter/_exit inlined: this is the hottest path of the SDK.
        token = CURRENT.set(span)
        otel = span.otel
        if otel is not None:
            otel.attach()
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            client.fail_span(span, exc)
            raise
        finally:
            if otel is not None:
                otel.detach()
            CURRENT.reset(token)
        client.end_span(span, spec, result)
        return result

    return wrapper


def _coroutine_wrapper(fn: Callable[..., Any], spec: CallSpec) -> Callable[..., Any]:
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        client = _client.current
        if client is None:
            return await fn(*args, **kwargs)
        span = client.start(spec, args, kwargs, None, False)
        if span is None:
            return await fn(*args, **kwargs)
        if client.enforcer.active:  # Client.astart inlined: no coroutine when nothing to await
            try:
                await client.aenforce(span, spec, args, kwargs)
            except Substitution as substitution:
                if substitution.refused is not None:
                    return substitution.refused.result
                args, kwargs = substitution.replacement or (args, kwargs)
        token = CURRENT.set(span)
        otel = span.otel
        if otel is not None:
            otel.attach()
        try:
            result = await fn(*args, **kwargs)
        except BaseException as exc:
            client.fail_span(span, exc)
            raise
        finally:
            if otel is not None:
                otel.detach()
            CURRENT.reset(token)
        client.end_span(span, spec, result)
        return result

    return wrapper


def _generator_wrapper(fn: Callable[..., Any], spec: CallSpec) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        client = _client.current
        if client is None:
            return (yield from fn(*args, **kwargs))
        try:
            span = client.start(spec, args, kwargs)
        except Substitution as substitution:  # a generator cannot return the rejection
            if substitution.refused is not None:
                raise substitution.refused from None
            span = substitution.span
            args, kwargs = substitution.replacement or (args, kwargs)
        if span is None:
            return (yield from fn(*args, **kwargs))
        stream = _StreamSpan(client, span, spec)
        generator: Generator[Any, Any, Any]
        try:
            token = _enter(span)
            try:
                generator = fn(*args, **kwargs)
                item = next(generator)
            finally:
                _exit(span, token)
            while True:
                stream.add(item)
                try:
                    sent = yield item
                except GeneratorExit:
                    generator.close()
                    raise
                except BaseException as thrown:
                    token = _enter(span)
                    try:
                        item = generator.throw(thrown)
                    finally:
                        _exit(span, token)
                    continue
                token = _enter(span)
                try:
                    item = generator.send(sent)
                finally:
                    _exit(span, token)
        except StopIteration as stop:
            stream.end(stop.value)
            return stop.value
        except BaseException as exc:
            stream.stop(exc)
            raise

    return wrapper


def _async_generator_wrapper(fn: Callable[..., Any], spec: CallSpec) -> Callable[..., Any]:
    # Driven in the consumer's own task, step by step: no helper task, so cancellation and
    # asyncio.timeout reach the wrapped generator exactly as they would without the SDK.
    # Unrecorded calls take the same steps: with no ``yield from`` for async generators, only
    # this loop forwards asend/athrow/aclose to the function.
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        client = _client.current
        span = None if client is None else client.start(spec, args, kwargs, None, False)
        if span is not None and client is not None and client.enforcer.active:
            try:
                await client.aenforce(span, spec, args, kwargs)  # Client.astart inlined
            except Substitution as substitution:  # a generator cannot return the rejection
                if substitution.refused is not None:
                    raise substitution.refused from None
                args, kwargs = substitution.replacement or (args, kwargs)
        stream = None if client is None or span is None else _StreamSpan(client, span, spec)
        generator: AsyncGenerator[Any, Any]
        try:
            token = _enter(span)
            try:
                generator = fn(*args, **kwargs)
                item = await generator.__anext__()
            finally:
                _exit(span, token)
            while True:
                if stream is not None:
                    stream.add(item)
                try:
                    sent = yield item
                except GeneratorExit:
                    await generator.aclose()
                    raise
                except BaseException as thrown:
                    token = _enter(span)
                    try:
                        item = await generator.athrow(thrown)
                    finally:
                        _exit(span, token)
                    continue
                token = _enter(span)
                try:
                    item = await generator.asend(sent)
                finally:
                    _exit(span, token)
        except StopAsyncIteration:
            if stream is not None:
                stream.end(None)
            return
        except BaseException as exc:
            if stream is not None:
                stream.stop(exc)
            raise

    return wrapper


class _StreamSpan:
    """The span of one generator call: its first items, how many it yielded, how it ended."""

    __slots__ = ("client", "count", "items", "keep", "span", "spec", "taker")

    def __init__(self, client: _client.Client, span: Span, spec: CallSpec) -> None:
        self.client = client
        self.span = span
        self.spec = spec
        self.taker = Snapshot(client.options.max_capture_chars)
        self.items: list[Any] = []
        self.count = 0
        self.keep = GENERATOR_ITEMS_KEPT if client.captures(spec) else 0

    def add(self, item: Any) -> None:
        self.count += 1
        if self.count <= self.keep:
            self.items.append(self.taker.take(item, 1))

    def end(self, returned: Any) -> None:
        """The generator finished, or was closed early (which is not an error)."""
        self._record_output(returned)
        self.client.end_span(self.span, self.spec)

    def stop(self, exc: BaseException) -> None:
        """The generator ended with ``exc``: closed early, or failed."""
        if isinstance(exc, GeneratorExit):
            self.end(None)
        else:
            if self.count:
                self._record_output(None)  # what it yielded before failing
            self.client.fail_span(self.span, exc)

    def _record_output(self, returned: Any) -> None:
        if not self.keep:
            return
        # Already snapshotted, item by item: passed to end_span, the count could be cut.
        output: dict[str, Any] = {"items": self.items, "count": self.count}
        if returned is not None:
            output["returned"] = self.taker.take(returned, 1)
        self.span.output = output
        self.span.size += self.taker.size
