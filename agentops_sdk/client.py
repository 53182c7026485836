"""The client: what ``init()`` builds and every decorated call talks to.

It owns the options, the enforcer (with the user's guards and the hub link), the buffer, the
delivery worker and the exporter. Decorators, ``run()``/``span()`` blocks and integrations all
start a call with :meth:`Client.start` (or :meth:`Client.astart`): open its span, pass the
enforcer; and end it with :meth:`Client.end_span` or :meth:`Client.fail_span`, which also run
the stages' after-call hooks. ``current`` is the one active client; ``None`` before ``init()`` or
when the SDK is disabled, in which case decorated functions call straight through.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
import time
from collections.abc import Mapping
from time import time_ns
from typing import TYPE_CHECKING, Any

from agentops_sdk.buffer import EventBuffer
from agentops_sdk.capture import freeze, freeze_arguments
from agentops_sdk.config import Options
from agentops_sdk.context import CURRENT, RESUMING
from agentops_sdk.contract.errors import ApprovalDenied
from agentops_sdk.enforcement import CallInfo, Enforcer, HubLink, wiring
from agentops_sdk.enforcement.call import Substitution
from agentops_sdk.exporters import Exporter, build_exporter
from agentops_sdk.guards import GuardChain
from agentops_sdk.spans import Run, Span, SpanKind
from agentops_sdk.spool import Spool, spool_key
from agentops_sdk.stats import Counters, FlushResult, Stats
from agentops_sdk.worker import Worker

if TYPE_CHECKING:
    from agentops_sdk.enforcement import HubSource
    from agentops_sdk.otel import OtelBridge

__all__ = ["CallSpec", "Client", "arguments_of", "current", "get_client", "init"]

logger = logging.getLogger("agentops_sdk")

current: Client | None = None
"""The active client, or None (not initialised, or disabled)."""

_lifecycle_lock = threading.Lock()
_process_hooks_installed = False
_jsonl_notice_given = False


class CallSpec:
    """What a decorator knows about the function it wraps, worked out once at decoration."""

    __slots__ = (
        "capture",
        "defaults",
        "kind",
        "metadata",
        "model",
        "name",
        "param_names",
        "provider",
        "substitutes",
        "tags",
    )

    def __init__(
        self,
        *,
        kind: SpanKind,
        name: str,
        tags: tuple[str, ...] = (),
        capture: bool | None = None,
        param_names: tuple[str, ...] = (),
        defaults: Mapping[str, Any] | None = None,
        model: str | None = None,
        provider: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        substitutes: bool = False,
    ) -> None:
        self.kind = kind
        self.name = name
        self.tags = tags
        self.capture = capture
        self.param_names = param_names
        self.defaults = defaults or {}
        """Parameters' default values: the stages see them for arguments a call leaves out."""
        self.model = model
        self.provider = provider
        self.metadata = dict(metadata) if metadata else None
        self.substitutes = substitutes
        """Whether the caller (a decorator's wrapper) takes a ``Substitution``: runs the call
        with an approval's edited arguments, or returns a rejection as its result."""


class Client:
    """The SDK's runtime for one configuration. Build it with :func:`init`.

    ``hub_source`` is where the hub link reads the hub's state (see
    :mod:`agentops_sdk.enforcement.link`), used only when ``options.hub_url`` is set: tests pass
    a :class:`~agentops_sdk.enforcement.LocalHub`.
    """

    def __init__(
        self,
        options: Options,
        exporter: Exporter | None = None,
        hub_source: HubSource | None = None,
    ) -> None:
        self.options = options
        self.guards = GuardChain()
        """The user's guards, the enforcer's last stage; see :mod:`agentops_sdk.guards`."""
        self.enforcer = Enforcer(self.guards, HubLink(wiring.hub_source(options, hub_source)))
        """What every call passes before it runs; see :mod:`agentops_sdk.enforcement`."""
        self.controls = wiring.install_stages(options, self.enforcer)
        """The stage obeying the hub's pause and kill; None when this client does not."""
        self.exporter = exporter or build_exporter(options)
        self._capture = options.capture
        self._max_chars = options.max_capture_chars
        self._closed = False
        self._otel = _otel_bridge(options)
        self._start_delivery()

    # -- spans --------------------------------------------------------------------------------

    def captures(self, spec: CallSpec | None) -> bool:
        """Whether calls made under ``spec`` record their inputs and outputs."""
        if spec is None or spec.capture is None:
            return self._capture
        return spec.capture

    def start(  # no keyword-only parameters: calls to those cost more, and this is hot
        self,
        spec: CallSpec,
        args: tuple[Any, ...] = (),
        kwargs: Mapping[str, Any] | None = None,
        given_input: Any = None,
        enforce: bool = True,
    ) -> Span | None:
        """Start a call about to run: open its span (not yet current) and pass the enforcer.

        Every decorated call, ``run()`` block and integration call starts here. The input
        recorded is ``args``/``kwargs`` by parameter name, or ``given_input`` as it is. A stage
        that must wait blocks this thread (:meth:`astart` awaits instead). Raises the refusing
        stage's ``EnforcementError`` when the call must not run, its span recorded as blocked.
        Returns None when the span could not be made: the call then runs unrecorded.

        ``enforce=False`` only opens the span, for a caller that passes the enforcer itself
        (:meth:`enforce`, :meth:`aenforce`).
        """
        try:
            now = time_ns()
            parent = CURRENT.get()
            if parent is None:
                options = self.options
                run = Run(
                    agent=spec.name if spec.kind == "agent" else options.agent,
                    name=spec.name,
                    environment=options.environment,
                    tags=spec.tags + options.tags,
                    metadata=spec.metadata,
                    start_ns=now,
                    max_chars=self._max_chars,
                )
                resumed = RESUMING.get()
                if resumed is not None:  # agentops.resume_run(): the run goes on under its id
                    run._id = resumed
                span = Span(run, None, spec.kind, spec.name, spec.tags, now, self._max_chars)
            else:
                run = parent.run
                span = Span(run, parent, spec.kind, spec.name, spec.tags, now, self._max_chars)
            if spec.model is not None or spec.provider is not None:
                span.model = spec.model
                span.provider = spec.provider
            if self._capture if spec.capture is None else spec.capture:
                if given_input is not None:
                    span.input, size = freeze(given_input, self._max_chars)
                    span.size += size
                elif args or kwargs:
                    span.input, size = freeze_arguments(
                        spec.param_names, args, kwargs, self._max_chars
                    )
                    span.size += size
            if parent is None:
                run.input = span.input
                run.size = span.size
                self._buffer.put(run)
            if self._otel is not None:
                span.otel = self._otel.start(span)
        except Exception:
            logger.exception("agentops: could not open a span for %s", spec.name)
            return None
        # Inline, not a call to open then enforce: this is the hottest path of the SDK.
        if enforce and self.enforcer.active:
            call = span.call = CallInfo(
                span,
                args,
                kwargs or arguments_of(kwargs, given_input),
                spec.param_names,
                spec.defaults,
            )
            try:
                self.enforcer.before(call)
            except BaseException as exc:
                self._refused(span, spec, exc)
                raise
            if call.replacement is not None:
                self._substitute(span, spec, call.replacement)
        return span

    async def astart(
        self,
        spec: CallSpec,
        args: tuple[Any, ...] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        given_input: Any = None,
    ) -> Span | None:
        """Async twin of :meth:`start`: a stage that must wait is awaited.

        Async decorators inline it (``start(..., enforce=False)``, then :meth:`aenforce` only
        when the enforcer is active), so that a call with nothing to enforce makes no coroutine.
        """
        span = self.start(spec, args, kwargs, given_input, False)
        if span is not None and self.enforcer.active:
            await self.aenforce(span, spec, args, arguments_of(kwargs, given_input))
        return span

    def enforce(
        self, span: Span, spec: CallSpec, args: tuple[Any, ...], kwargs: Mapping[str, Any]
    ) -> None:
        """Pass the call of an opened span through the enforcer; on a refusal (or anything else
        raised while waiting) the span is closed with it and it propagates.

        For a caller that takes one (``spec.substitutes``), a ``Substitution`` is raised when
        the call must run with other arguments or return a rejection instead of running."""
        call = span.call = CallInfo(span, args, kwargs, spec.param_names, spec.defaults)
        try:
            self.enforcer.before(call)
        except BaseException as exc:
            self._refused(span, spec, exc)
            raise
        if call.replacement is not None:
            self._substitute(span, spec, call.replacement)

    async def aenforce(
        self, span: Span, spec: CallSpec, args: tuple[Any, ...], kwargs: Mapping[str, Any]
    ) -> None:
        """Async twin of :meth:`enforce`."""
        call = span.call = CallInfo(span, args, kwargs, spec.param_names, spec.defaults)
        try:
            await self.enforcer.abefore(call)
        except BaseException as exc:
            self._refused(span, spec, exc)
            raise
        if call.replacement is not None:
            self._substitute(span, spec, call.replacement)

    def _refused(self, span: Span, spec: CallSpec, exc: BaseException) -> None:
        """Close the span of a refused call; a rejection returned as the result goes to a
        caller that takes it as a ``Substitution``."""
        self.fail_span(span, exc)
        if isinstance(exc, ApprovalDenied) and exc.result is not None and spec.substitutes:
            raise Substitution(span, refused=exc) from None

    def _substitute(
        self, span: Span, spec: CallSpec, replacement: tuple[tuple[Any, ...], dict[str, Any]]
    ) -> None:
        """The call was approved with edited arguments: hand them to its caller, or refuse the
        call when its caller cannot run it with them (never run it as it was)."""
        if spec.substitutes:
            raise Substitution(span, replacement)
        from agentops_sdk.contract.decisions import DECISION_EVENT, Decision

        reason = f"{span.name} was approved with edited arguments, which this call cannot take"
        decision = Decision("deny", stage="approval", reason=reason)
        span.add_event(DECISION_EVENT, **decision.to_wire())
        refused = ApprovalDenied(reason, decision=decision)
        self.fail_span(span, refused)
        raise refused

    def end_span(self, span: Span, spec: CallSpec | None, result: Any = None) -> None:
        """Close a span that finished normally, recording ``result`` as its output (then the
        after-call hooks of the stages it passed run)."""
        try:
            span.end_ns = time_ns()
            if span.status == "running":
                span.status = "ok"
            if result is not None and (
                self._capture if spec is None or spec.capture is None else spec.capture
            ):
                span.output, size = freeze(result, self._max_chars)
                span.size += size
            if span.kind == "llm" and span.usage is None and result is not None:
                _usage_from_result(span, result)
        except Exception:
            logger.exception("agentops: could not record the result of %s", span.name)
        try:
            self._finish(span)
        except Exception:
            logger.exception("agentops: could not record the end of %s", span.name)

    def fail_span(self, span: Span, exc: BaseException) -> None:
        """Close a span whose code raised ``exc`` (which the caller re-raises unchanged), or
        that a stage refused."""
        try:
            span.end_ns = time_ns()
            span.record_error(exc)
            self._finish(span, exc)
        except Exception:
            logger.exception("agentops: could not record the failure of %s", span.name)

    def _finish(self, span: Span, error: BaseException | None = None) -> None:
        run = span.run
        run.span_count += 1
        if span.status == "error":
            run.error_count += 1
        usage = span.usage
        if usage is not None:
            run.input_tokens += usage["input_tokens"]
            run.output_tokens += usage["output_tokens"]
        call = span.call
        if call is not None:  # it passed the enforcer: its stages may see how it went
            enforcer = self.enforcer
            if enforcer.has_after or call.stages is not enforcer.stages:
                enforcer.after(call, error)
        if usage is not None and span.kind == "llm":  # after the stages: a budget priced it
            calls = run.calls
            if calls is None:
                calls = run.calls = []
            calls.append((span.model, span.provider, usage, span.cost))
        if span.otel is not None:
            span.otel.end(span)
        self._buffer.put(span)
        if span.parent is None:
            run.output = span.output
            run.error = span.error
            run.status = span.status
            run.end_ns = span.end_ns
            run.size += span.size
            self._buffer.put(run)

    # -- delivery -----------------------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> FlushResult:
        """Deliver everything accepted so far, and what the spool holds; return within
        ``timeout`` seconds, whatever happens, saying what was delivered and what remains."""
        timeout = self.options.shutdown_timeout if timeout is None else timeout
        before = self._counters.snapshot(0)
        deadline = time.monotonic() + max(0.0, timeout)
        if self._worker.wait_processed(self._buffer.enqueued, deadline):
            self._worker.wait_delivered(deadline)
        return self._result(before)

    def shutdown(self, timeout: float | None = None) -> FlushResult:
        """Stop recording, deliver what is queued, spool what cannot be delivered in time.

        Returns within ``timeout`` seconds (default ``shutdown_timeout``) with the hub down too.
        """
        global current
        timeout = self.options.shutdown_timeout if timeout is None else timeout
        with _lifecycle_lock:
            if self._closed:
                return FlushResult(True, 0, 0, 0, 0)
            self._closed = True
            if current is self:
                current = None
        self.enforcer.close()
        before = self._counters.snapshot(0)
        deadline = time.monotonic() + max(0.0, timeout)
        # Keep a slice of the budget for spooling what the hub did not take in time.
        stopped = self._worker.stop(deadline - min(0.25, timeout * 0.2))
        if not stopped or self._worker.processed < self._buffer.enqueued:
            self._worker.abandon()
        if stopped and self.exporter is not None:
            self.exporter.close()
        return self._result(before)

    def stats(self) -> Stats:
        """Delivery counters since ``init()`` (or since this process was forked)."""
        spool_pending, spool_bytes = self._spool_size()
        return self._counters.snapshot(
            self._pending(), self._buffer.enqueued, spool_pending, spool_bytes
        )

    def _result(self, before: Stats) -> FlushResult:
        after = self._counters.snapshot(0)
        pending = self._pending()
        spool_pending, spool_bytes = self._spool_size()
        return FlushResult(
            completed=pending == 0
            and (self._spool is None or self._spool.pending() == 0)
            and (self._worker.sender is None or self._worker.sender.idle),
            sent=after.sent - before.sent,
            spooled=after.spooled - before.spooled,
            dropped=after.dropped_total - before.dropped_total,
            pending=pending,
            spool_pending=spool_pending,
            spool_bytes=spool_bytes,
        )

    def _pending(self) -> int:
        return max(0, self._buffer.enqueued - self._worker.processed)

    def _spool_size(self) -> tuple[int, int]:
        return (0, 0) if self._spool is None else self._spool.pending_events()

    def _start_delivery(self) -> None:
        """Fresh counters, spool, buffer and worker: at start, and in a forked child (which
        must not share the parent's locks)."""
        options = self.options
        self._spool = None
        if options.spool and options.exporter_name == "hub" and options.hub_url:
            self._spool = Spool(
                options.spool_dir,
                spool_key(options.hub_url, options.api_key),
                options.spool_max_bytes,
            )
        self._counters = Counters()
        self._buffer = EventBuffer(
            max_events=options.max_queue_events,
            max_bytes=options.max_queue_bytes,
            max_event_bytes=options.batch_max_bytes,
            batch_events=options.batch_max_events,
            batch_bytes=options.batch_max_bytes,
            counters=self._counters,
        )
        self._worker = Worker(
            buffer=self._buffer,
            exporter=self.exporter,
            counters=self._counters,
            options=options,
            spool=self._spool,
        )
        if self._spool is not None and options.overflow == "spill":
            self._buffer.overflow = self._worker.spill
        self._worker.start()

    def _after_fork_in_child(self) -> None:
        after_fork = getattr(self.exporter, "after_fork", None)
        if after_fork is not None:
            after_fork()
        self._start_delivery()
        if "multiprocessing" in sys.modules:
            # multiprocessing children leave through os._exit, past atexit: flush there too.
            # Their bootstrap clears the finalizer registry after this hook has run, so the
            # finalizer is registered by its after-fork callbacks, which run after that.
            from multiprocessing import util

            util.register_after_fork(self, _shutdown_at_process_exit)


def init(options: Options | None = None, **overrides: Any) -> Client | None:
    """Configure the SDK; return the client, or None when ``enabled`` is false.

    Options come from ``options``, else from ``AGENTOPS_*`` environment variables with
    ``overrides`` applied (see :class:`agentops_sdk.Options`). Calling ``init()`` again replaces
    the client, flushing the old one first.

        import agentops_sdk as agentops
        agentops.init(hub_url="http://localhost:8000", api_key="ak_...", environment="prod")
    """
    global current, _process_hooks_installed, _jsonl_notice_given
    if options is None:
        options = Options.from_env(**overrides)
    elif overrides:
        import dataclasses

        options = dataclasses.replace(options, **overrides)
    previous = current
    if previous is not None:
        previous.shutdown(previous.options.shutdown_timeout)
    if not options.enabled:
        return None
    client = Client(options)
    with _lifecycle_lock:
        current = client
        if not _process_hooks_installed:
            # Here, not at import: a process that only imports the SDK (the hub, for the
            # contract) gets no hook.
            _process_hooks_installed = True
            atexit.register(_shutdown_at_exit)
            os.register_at_fork(after_in_child=_after_fork_in_child)
    from agentops_sdk.integrations import setup_integrations

    setup_integrations(options.integrations, options.disabled_integrations)
    if options.exporter == "auto" and options.exporter_name == "jsonl" and not _jsonl_notice_given:
        _jsonl_notice_given = True
        logger.warning(
            "agentops: no hub URL set (AGENTOPS_HUB_URL); recording to %s",
            options.jsonl_path.resolve(),
        )
    return client


def get_client() -> Client | None:
    """The active client, or None."""
    return current


def _shutdown_at_exit() -> None:
    client = current
    if client is not None:
        result = client.shutdown(client.options.shutdown_timeout)
        if result.pending or result.spool_pending:
            logger.warning(
                "agentops: at exit %d events were spooled for the next run with this hub and "
                "API key (%d bytes wait in the spool) and %d left pending",
                result.spool_pending,
                result.spool_bytes,
                result.pending,
            )


def _otel_bridge(options: Options) -> OtelBridge | None:
    """The OpenTelemetry bridge, imported only when it can be on (see agentops_sdk.otel)."""
    if options.otel is False:
        return None
    if options.otel is None and "opentelemetry.trace" not in sys.modules:
        return None
    from agentops_sdk.otel import bridge_for

    return bridge_for(options)


def _after_fork_in_child() -> None:
    client = current
    if client is not None:
        client._after_fork_in_child()
        client.enforcer.after_fork()


def _shutdown_at_process_exit(client: Client) -> None:
    from multiprocessing import util

    util.Finalize(client, client.shutdown, exitpriority=100)


def arguments_of(kwargs: Mapping[str, Any] | None, given_input: Any) -> Mapping[str, Any]:
    """A call's keyword arguments for the stages; a block's or framework call's input, when it
    has no arguments of its own, is its one argument, ``input``."""
    if kwargs:
        return kwargs
    if given_input is not None:
        return {"input": given_input}
    return {}


def _usage_from_result(span: Span, result: Any) -> None:
    """Read model and token usage off an OpenAI-shaped response object or dict."""
    if isinstance(result, Mapping):
        usage = result.get("usage")
        model = result.get("model")
    else:
        usage = getattr(result, "usage", None)
        model = getattr(result, "model", None)
    if isinstance(model, str):  # what actually answered (e.g. a dated snapshot) wins
        span.model = model
    if usage is None:
        return

    def read(*names: str) -> int | None:
        for name in names:
            value = usage.get(name) if isinstance(usage, Mapping) else getattr(usage, name, None)
            if isinstance(value, int):
                return value
        return None

    def detail(group: tuple[str, ...], name: str) -> int | None:
        for group_name in group:
            found = (
                usage.get(group_name)
                if isinstance(usage, Mapping)
                else getattr(usage, group_name, None)
            )
            if found is not None:
                value = (
                    found.get(name) if isinstance(found, Mapping) else getattr(found, name, None)
                )
                return value if isinstance(value, int) else None
        return None

    span.set_usage(
        input_tokens=read("input_tokens", "prompt_tokens"),
        output_tokens=read("output_tokens", "completion_tokens"),
        cached_input_tokens=detail(
            ("input_tokens_details", "prompt_tokens_details"), "cached_tokens"
        ),
        reasoning_tokens=detail(
            ("output_tokens_details", "completion_tokens_details"), "reasoning_tokens"
        ),
    )
