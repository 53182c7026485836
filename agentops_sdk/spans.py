"""Runs and spans as they live in memory, and their wire form.

The hot path fills these plain ``__slots__`` records (integers, clock readings, snapshots); the
worker thread turns them into wire dicts (``to_wire``), whose shape is defined by the pydantic
models in :mod:`agentops_sdk.contract.schema`. A :class:`Span` is also the handle users get from
``agentops.current_span()`` to add what only their code knows (usage, attributes, output).
"""

from __future__ import annotations

import traceback
from datetime import UTC, datetime
from time import time_ns
from typing import TYPE_CHECKING, Any, Final, Literal

from agentops_sdk.capture import render, snapshot
from agentops_sdk.contract import SCHEMA_VERSION
from agentops_sdk.ids import derive_id, format_id, next_sequence

if TYPE_CHECKING:
    from decimal import Decimal

    from agentops_sdk.enforcement.call import CallInfo
    from agentops_sdk.otel import OtelSpan

__all__ = ["SCHEMA_VERSION", "NOOP_SPAN", "Run", "Span", "SpanKind", "Status"]

SpanKind = Literal["agent", "tool", "step", "llm"]
Status = Literal["running", "ok", "error", "blocked", "cancelled"]

MAX_STACK_CHARS = 8192
MAX_MESSAGE_CHARS = 2048


LlmCall = tuple[str | None, str | None, dict[str, int], "Decimal | None"]
"""A finished LLM call of a run: model, provider, usage, and its cost when it was priced."""


class Run:
    """One execution of an agent: the root of a tree of spans."""

    __slots__ = (
        "_id",
        "_max_chars",
        "_sequence",
        "agent",
        "calls",
        "end_ns",
        "environment",
        "error",
        "error_count",
        "input",
        "input_tokens",
        "metadata",
        "name",
        "output",
        "output_tokens",
        "size",
        "span_count",
        "start_ns",
        "state",
        "status",
        "tags",
    )

    def __init__(
        self,
        *,
        agent: str,
        name: str,
        environment: str,
        tags: tuple[str, ...],
        metadata: dict[str, Any] | None,
        start_ns: int,
        max_chars: int,
    ) -> None:
        self._id: int | None = None
        self._sequence = next_sequence()
        self._max_chars = max_chars
        self.agent = agent
        self.name = name
        self.environment = environment
        self.tags = tags
        self.metadata = metadata
        self.start_ns = start_ns
        self.end_ns: int | None = None
        self.status: Status = "running"
        self.input: Any = None
        self.output: Any = None
        self.error: dict[str, str] | None = None
        self.span_count = 0
        self.error_count = 0
        self.input_tokens = 0
        self.output_tokens = 0
        self.size = 512
        self.state: dict[str, Any] | None = None
        """What enforcement stages keep per run (the policy's call counts): each stage keys its
        entry by its own name."""
        self.calls: list[LlmCall] | None = None
        """The run's finished LLM calls that reported usage, in order (for ``cost_per_run``:
        priced when a limit first asks, whenever its policy arrived)."""

    @property
    def id(self) -> int:
        """The run's UUIDv7 as an integer (derived once, on first use)."""
        if self._id is None:
            self._id = derive_id(self.start_ns, self._sequence)
        return self._id

    def to_wire(self) -> dict[str, Any]:
        """The run as a wire dict (see ``agentops_sdk.schema.RunEvent``)."""
        return {
            "type": "run",
            "schema_version": SCHEMA_VERSION,
            "id": format_id(self.id),
            "agent": self.agent,
            "name": self.name,
            "environment": self.environment,
            "status": self.status,
            "started_at": _timestamp(self.start_ns),
            "ended_at": None if self.end_ns is None else _timestamp(self.end_ns),
            "tags": list(self.tags),
            "metadata": self.metadata or {},
            "input": render(self.input, self._max_chars),
            "output": render(self.output, self._max_chars),
            "error": self.error,
            "span_count": self.span_count,
            "error_count": self.error_count,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
        }


class Span:
    """One call inside a run: an agent, a tool, a step or an LLM call.

    Users reach the span of the running call through ``agentops.current_span()``::

        @agentops.llm(model="gpt-4o")
        def ask(prompt: str) -> str:
            reply = my_client.complete(prompt)
            agentops.current_span().set_usage(input_tokens=reply.inp, output_tokens=reply.out)
            return reply.text
    """

    __slots__ = (
        "_id",
        "_max_chars",
        "_sequence",
        "attributes",
        "call",
        "cost",
        "end_ns",
        "error",
        "events",
        "input",
        "kind",
        "model",
        "name",
        "otel",
        "output",
        "parent",
        "provider",
        "run",
        "size",
        "start_ns",
        "status",
        "tags",
        "usage",
    )

    def __init__(  # noqa: PLR0917 - built on the hot path, where keywords cost time
        self,
        run: Run,
        parent: Span | None,
        kind: SpanKind,
        name: str,
        tags: tuple[str, ...],
        start_ns: int,
        max_chars: int,
    ) -> None:
        self._id: int | None = None
        self._sequence = next_sequence()
        self.run = run
        self.parent = parent
        self.kind = kind
        self.name = name
        self.tags = tags
        self.start_ns = start_ns
        self.end_ns: int | None = None
        self.status: Status = "running"
        self.input: Any = None
        self.output: Any = None
        self.error: dict[str, str] | None = None
        self.attributes: dict[str, Any] | None = None
        self.events: list[dict[str, Any]] | None = None
        self.model: str | None = None
        self.provider: str | None = None
        self.usage: dict[str, int] | None = None
        self.cost: Decimal | None = None
        """The call's cost in USD as the SDK priced it (the hub prices it again and keeps both)."""
        self.otel: OtelSpan | None = None
        self.call: CallInfo | None = None
        """What the enforcer's stages saw of this call; None when none was consulted."""
        self.size = 384
        self._max_chars = max_chars

    # -- what user code may add ------------------------------------------------------------

    @property
    def id(self) -> int:
        """The span's UUIDv7 as an integer (derived once, on first use)."""
        if self._id is None:
            self._id = derive_id(self.start_ns, self._sequence)
        return self._id

    @property
    def parent_id(self) -> int | None:
        """The id of the enclosing span; None for a run's root span."""
        return None if self.parent is None else self.parent.id

    @property
    def span_id(self) -> str:
        """This span's id as a UUID string."""
        return format_id(self.id)

    @property
    def run_id(self) -> str:
        """The id of the run this span belongs to, as a UUID string."""
        return format_id(self.run.id)

    def set_attribute(self, key: str, value: Any) -> None:
        """Attach a key/value to the span; the value is snapshotted now."""
        captured, size = snapshot(value, self._max_chars)
        if self.attributes is None:
            self.attributes = {}
        self.attributes[key] = captured
        self.size += size + len(key)

    def set_ids(self, key: str, ids: list[str]) -> None:
        """Attach a list of ids the SDK made itself (short strings: nothing to snapshot)."""
        if self.attributes is None:
            self.attributes = {}
        self.attributes[key] = ids
        self.size += len(key) + sum(len(text) + 4 for text in ids)

    def add_event(self, name: str, **attributes: Any) -> None:
        """Record a point-in-time event inside the span (a retry, a guard decision...)."""
        captured, size = snapshot(attributes, self._max_chars)
        if self.events is None:
            self.events = []
        self.events.append({"name": name, "at": _timestamp(time_ns()), "attributes": captured})
        self.size += size + len(name) + 48

    def set_output(self, value: Any) -> None:
        """Record the span's output (for spans opened with ``agentops.span()``/``run()``)."""
        self.output, size = snapshot(value, self._max_chars)
        self.size += size

    def set_usage(
        self,
        *,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        model: str | None = None,
        provider: str | None = None,
        cached_input_tokens: int | None = None,
        cache_write_tokens: int | None = None,
        reasoning_tokens: int | None = None,
        cost: Decimal | None = None,
    ) -> None:
        """Report an LLM call's model and token usage; they roll up into the run's totals.

        ``input_tokens`` counts every input token, the ``cached_input_tokens`` (read from the
        provider's prompt cache) and ``cache_write_tokens`` included; ``output_tokens`` counts
        every output token, the ``reasoning_tokens`` included. ``cost``: what the call cost in
        USD, if known here (the hub prices every call itself and flags a difference)."""
        if cost is not None:
            from decimal import Decimal

            self.cost = Decimal(cost)
        if cached_input_tokens is not None or cache_write_tokens is not None:
            self._set_details(cached_input_tokens, cache_write_tokens, reasoning_tokens)
        elif reasoning_tokens is not None:
            self._set_details(None, None, reasoning_tokens)
        if model is not None:
            self.model = model
        if provider is not None:
            self.provider = provider
        if input_tokens is not None or output_tokens is not None:
            # Reported in parts (input first, output when a stream ends): keep what was given.
            usage = self.usage or {"input_tokens": 0, "output_tokens": 0}
            if input_tokens is not None:
                usage["input_tokens"] = int(input_tokens)
            if output_tokens is not None:
                usage["output_tokens"] = int(output_tokens)
            self.usage = usage

    def _set_details(
        self, cached_input: int | None, cache_write: int | None, reasoning: int | None
    ) -> None:
        usage = self.usage or {"input_tokens": 0, "output_tokens": 0}
        for key, value in (
            ("cached_input_tokens", cached_input),
            ("cache_write_tokens", cache_write),
            ("reasoning_tokens", reasoning),
        ):
            if value is not None:
                usage[key] = int(value)
        self.usage = usage

    # -- lifecycle, used by decorators and integrations --------------------------------------

    def record_error(self, exc: BaseException) -> None:
        """Mark the span failed with ``exc`` (type, message and stack are recorded)."""
        from agentops_sdk.errors import EnforcementError

        self.status = "blocked" if isinstance(exc, EnforcementError) else _status_of(exc)
        if self.status == "ok":
            return
        self.error = describe_error(exc)
        self.size += len(self.error["stack"]) + len(self.error["message"])

    def to_wire(self) -> dict[str, Any]:
        """The span as a wire dict (see ``agentops_sdk.schema.SpanEvent``)."""
        usage = self.usage
        parent = self.parent
        llm = None
        if self.kind == "llm" or usage is not None or self.model is not None:
            llm = {
                "model": self.model,
                "provider": self.provider,
                "input_tokens": usage["input_tokens"] if usage else None,
                "output_tokens": usage["output_tokens"] if usage else None,
            }
            if usage is not None and len(usage) > 2:  # the optional kinds, only when reported
                llm.update((key, value) for key, value in usage.items() if key not in llm)
            if self.cost is not None:
                llm["cost"] = str(self.cost)
        return {
            "type": "span",
            "schema_version": SCHEMA_VERSION,
            "id": format_id(self.id),
            "run_id": format_id(self.run.id),
            "parent_id": None if parent is None else format_id(parent.id),
            "kind": self.kind,
            "name": self.name,
            "status": self.status,
            "started_at": _timestamp(self.start_ns),
            "ended_at": None if self.end_ns is None else _timestamp(self.end_ns),
            "tags": list(self.tags),
            "attributes": self.attributes or {},
            "input": render(self.input, self._max_chars),
            "output": render(self.output, self._max_chars),
            "error": self.error,
            "llm": llm,
            "events": self.events or [],
        }


class _NoopSpan(Span):
    """What ``current_span()`` returns outside any span: every method does nothing."""

    __slots__ = ()

    def __init__(self) -> None:
        run = Run(
            agent="", name="", environment="dev", tags=(), metadata=None, start_ns=0, max_chars=0
        )
        super().__init__(run, None, "step", "", (), 0, 0)

    def set_attribute(self, key: str, value: Any) -> None:
        """Do nothing: no span is active."""

    def add_event(self, name: str, **attributes: Any) -> None:
        """Do nothing: no span is active."""

    def set_output(self, value: Any) -> None:
        """Do nothing: no span is active."""

    def set_usage(
        self,
        *,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        model: str | None = None,
        provider: str | None = None,
        cached_input_tokens: int | None = None,
        cache_write_tokens: int | None = None,
        reasoning_tokens: int | None = None,
        cost: Decimal | None = None,
    ) -> None:
        """Do nothing: no span is active."""


NOOP_SPAN: Final[Span] = _NoopSpan()


def describe_error(exc: BaseException) -> dict[str, str]:
    """Type, message and (bounded) stack of an exception, as recorded on the wire."""
    cls = type(exc)
    qualname = (
        cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    )
    stack = "".join(traceback.format_exception(exc))
    if len(stack) > MAX_STACK_CHARS:
        stack = "…" + stack[-MAX_STACK_CHARS:]
    return {"type": qualname, "message": str(exc)[:MAX_MESSAGE_CHARS], "stack": stack}


def _status_of(exc: BaseException) -> Status:
    if isinstance(exc, GeneratorExit | StopIteration | StopAsyncIteration):
        return "ok"
    if type(exc).__name__ == "CancelledError":  # asyncio's, without importing asyncio
        return "cancelled"
    return "error"


def _timestamp(ns: int) -> str:
    """RFC 3339 UTC with microseconds; the per-second prefix is cached (events come in bursts)."""
    global _last_second, _last_prefix
    seconds, rest = divmod(ns, 1_000_000_000)
    if seconds != _last_second:
        _last_prefix = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        _last_second = seconds
    return f"{_last_prefix}.{rest // 1000:06d}Z"


_last_second = -1
_last_prefix = ""
