"""Emit AgentOps spans through OpenTelemetry too, so existing tracing keeps working.

When the application has set a tracer provider (``opentelemetry.trace.set_tracer_provider``),
each AgentOps span is also an OpenTelemetry span, current while its code runs: spans the user's
other instrumentation makes inside a tool nest under it, and it nests under theirs. Attributes
follow the OpenTelemetry GenAI semantic conventions (``gen_ai.operation.name``,
``gen_ai.provider.name``, ``gen_ai.request.model``, ``gen_ai.usage.input_tokens``...).

The SDK never installs a tracer provider itself: it only uses the one the application chose, so
it never captures other libraries' spans. With ``otel=None`` (the default) the bridge is on when
a real provider is set at ``init()``; OpenTelemetry is not even imported when the application
has not imported it.
"""

from __future__ import annotations

from contextvars import Token
from typing import TYPE_CHECKING, Any

from opentelemetry import context, trace

from agentops_sdk._version import __version__

if TYPE_CHECKING:
    from opentelemetry.context import Context

    from agentops_sdk.config import Options
    from agentops_sdk.spans import Span

__all__ = ["OtelBridge", "OtelSpan", "bridge_for"]

_OPERATION = {"agent": "invoke_agent", "tool": "execute_tool", "llm": "chat"}


def bridge_for(options: Options) -> OtelBridge | None:
    """The bridge to use for ``options``, or None when OpenTelemetry is not in use."""
    provider = trace.get_tracer_provider()
    if options.otel is None and isinstance(
        provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider
    ):
        return None
    return OtelBridge(trace.get_tracer("agentops_sdk", __version__))


class OtelBridge:
    """Starts an OpenTelemetry span for each AgentOps span."""

    def __init__(self, tracer: trace.Tracer) -> None:
        self._tracer = tracer

    def start(self, span: Span) -> OtelSpan:
        """Start the OpenTelemetry twin of ``span`` under the current OpenTelemetry context."""
        operation = _OPERATION.get(span.kind)
        attributes: dict[str, Any] = {
            "agentops.span.kind": span.kind,
            "agentops.span.id": span.span_id,
            "agentops.run.id": span.run_id,
            "gen_ai.agent.name": span.run.agent,
        }
        if operation is not None:
            attributes["gen_ai.operation.name"] = operation
        if span.kind == "tool":
            attributes["gen_ai.tool.name"] = span.name
        if span.model is not None:
            attributes["gen_ai.request.model"] = span.model
        if span.provider is not None:
            attributes["gen_ai.provider.name"] = span.provider
        target = span.model if span.kind == "llm" and span.model else span.name
        name = f"{operation} {target}" if operation else span.name
        return OtelSpan(
            self._tracer.start_span(name, attributes=attributes, start_time=span.start_ns)
        )


class OtelSpan:
    """One OpenTelemetry span, made current while its AgentOps span's code runs."""

    __slots__ = ("_tokens", "span")

    def __init__(self, span: trace.Span) -> None:
        self.span = span
        self._tokens: list[Token[Context]] = []

    def attach(self) -> None:
        """Make this span the current OpenTelemetry span."""
        self._tokens.append(context.attach(trace.set_span_in_context(self.span)))

    def detach(self) -> None:
        """Undo the matching :meth:`attach`."""
        context.detach(self._tokens.pop())

    def end(self, span: Span) -> None:
        """Copy the outcome of ``span`` (status, error, usage) and end the twin."""
        otel = self.span
        if span.model is not None:
            otel.set_attribute("gen_ai.response.model", span.model)
        if span.provider is not None:
            otel.set_attribute("gen_ai.provider.name", span.provider)
        if span.usage is not None:
            otel.set_attribute("gen_ai.usage.input_tokens", span.usage["input_tokens"])
            otel.set_attribute("gen_ai.usage.output_tokens", span.usage["output_tokens"])
        otel.set_attribute("agentops.status", span.status)
        if span.error is not None:
            otel.set_attribute("error.type", span.error["type"])
            otel.set_status(trace.Status(trace.StatusCode.ERROR, span.error["message"]))
        otel.end(end_time=span.end_ns)
