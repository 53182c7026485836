"""What an OpenAI call records: the request's parameters, then the response or the stream's chunks.

The two APIs differ only in their shapes, so each is one :class:`Api` object (:data:`CHAT`,
:data:`RESPONSES`) that knows how to read its requests, responses and stream chunks. Both report
their output in one shape, an assistant message: ``{"role", "content", "tool_calls"?}``, with
each tool call as ``{"id", "name", "arguments"}``.

Attributes (recorded whatever the capture settings; messages in and out follow them):
``request_model``, the sampling parameters as given (``temperature``, ``max_tokens``...),
``tools`` (names), ``stream``, ``response_id``, ``finish_reason``, ``tool_calls`` (names the
model asked for), ``cached_tokens``, ``reasoning_tokens``, ``time_to_first_token_ms`` (streams),
``usage_missing`` (the provider sent no usage: nothing is invented), ``stream_closed_early``,
``status_code`` (HTTP errors).
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Mapping, Sequence
from time import time_ns
from typing import Any

from openai import NotGiven, Omit
from openai._constants import RAW_RESPONSE_HEADER
from openai.types.chat import ChatCompletion
from openai.types.responses import Response

from agentops_sdk.integrations import ExternalCall
from agentops_sdk.spans import Span

__all__ = ["CHAT", "RESPONSES", "Api", "Request", "StreamState", "record_failure"]

logger = logging.getLogger("agentops_sdk")

_ABSENT = (Omit, NotGiven, type(None))
"""What the client passes for a parameter nobody set (its stream helpers pass all of them)."""


class Request:
    """One ``create`` call as the integration sees it before it is made."""

    __slots__ = ("api", "include_usage_injected", "input", "kwargs", "model", "name")

    def __init__(self, api: Api, kwargs: dict[str, Any]) -> None:
        self.api = api
        model = kwargs.get("model")
        self.model = model if isinstance(model, str) else None
        self.name = api.operation if self.model is None else f"{api.operation} {self.model}"
        self.input = api.input_of(kwargs)
        self.include_usage_injected = False
        if kwargs.get("stream") is True and api.usage_on_request and not _raw_response(kwargs):
            options = kwargs.get("stream_options")
            if isinstance(options, _ABSENT):
                kwargs = {**kwargs, "stream_options": {"include_usage": True}}
                self.include_usage_injected = True
            elif isinstance(options, Mapping) and "include_usage" not in options:
                kwargs = {**kwargs, "stream_options": {**options, "include_usage": True}}
                self.include_usage_injected = True
        self.kwargs = kwargs
        """What the original method is called with (``stream_options`` may be added)."""

    def parameters(self) -> dict[str, Any]:
        """The parameters given (model, messages, max_tokens...): the call's arguments, as the
        enforcer's stages see them."""
        return {
            name: value for name, value in self.kwargs.items() if not isinstance(value, _ABSENT)
        }

    def describe(self, span: Span) -> None:
        """Record the request's parameters as span attributes."""
        try:
            kwargs = self.kwargs
            if self.model is not None:
                span.set_attribute("request_model", self.model)
            for name in self.api.parameters:
                value = kwargs.get(name)
                if not isinstance(value, _ABSENT):
                    span.set_attribute(name, value)
            tools = kwargs.get("tools")
            if not isinstance(tools, _ABSENT):
                span.set_attribute("tools", [_tool_name(tool) for tool in tools])
            response_format = kwargs.get("response_format")
            if isinstance(response_format, Mapping):
                span.set_attribute("response_format", response_format.get("type"))
        except Exception:
            logger.exception("agentops: could not record the parameters of %s", span.name)


class StreamState(abc.ABC):
    """What a stream has shown so far; told each chunk, asked for the output at the end."""

    def __init__(self, span: Span) -> None:
        self.span = span
        self.first_token_ns: int | None = None

    @abc.abstractmethod
    def observe(self, chunk: Any) -> bool:
        """Take in one chunk; False if the caller must not see it (a chunk we asked for)."""

    @abc.abstractmethod
    def output(self, completed: bool) -> Any:
        """Record what the stream carried on the span and return the call's output."""

    def first_token(self) -> None:
        if self.first_token_ns is None:
            self.first_token_ns = time_ns()
            elapsed_ms = (self.first_token_ns - self.span.start_ns) / 1e6
            self.span.set_attribute("time_to_first_token_ms", round(elapsed_ms, 3))


class Api(abc.ABC):
    """How one OpenAI API names and shapes its requests, responses and stream chunks."""

    operation: str
    """The first word of a span's name: ``chat gpt-4o``."""
    parameters: tuple[str, ...]
    """Request parameters recorded as attributes, as given."""
    usage_on_request: bool
    """Whether a stream reports usage only when ``stream_options.include_usage`` asks for it."""

    @abc.abstractmethod
    def input_of(self, kwargs: Mapping[str, Any]) -> Any:
        """The messages a request sends."""

    @abc.abstractmethod
    def record_result(self, span: Span, result: Any) -> Any:
        """Record a non-streamed result on the span; return the call's output."""

    @abc.abstractmethod
    def stream_state(self, span: Span, request: Request) -> StreamState:
        """A fresh :class:`StreamState` for a streamed result."""


class ChatApi(Api):
    """Chat Completions: ``client.chat.completions.create``."""

    operation = "chat"
    parameters = (
        "temperature",
        "top_p",
        "max_tokens",
        "max_completion_tokens",
        "n",
        "seed",
        "stop",
        "frequency_penalty",
        "presence_penalty",
        "tool_choice",
        "parallel_tool_calls",
        "reasoning_effort",
        "service_tier",
        "stream",
    )
    usage_on_request = True

    def input_of(self, kwargs: Mapping[str, Any]) -> Any:
        return kwargs.get("messages")

    def record_result(self, span: Span, result: Any) -> Any:
        if not isinstance(result, ChatCompletion):  # with_raw_response: not read here
            span.set_attribute("usage_missing", True)
            return None
        span.set_usage(model=result.model)
        span.set_attribute("response_id", result.id)
        _record_usage(span, result.usage, _CHAT_USAGE)
        messages = []
        finish_reasons = []
        for choice in result.choices:
            message = choice.message
            calls = [_chat_tool_call(call) for call in message.tool_calls or ()]
            if message.function_call is not None:
                function = message.function_call
                calls.append({"id": None, "name": function.name, "arguments": function.arguments})
            messages.append(_message(message.content, calls, message.refusal))
            finish_reasons.append(choice.finish_reason)
        _record_finish(span, finish_reasons, messages)
        return messages[0] if len(messages) == 1 else messages

    def stream_state(self, span: Span, request: Request) -> StreamState:
        return ChatStreamState(span, request.include_usage_injected)


class ChatStreamState(StreamState):
    """Assembles a chat stream's choices from their deltas."""

    def __init__(self, span: Span, include_usage_injected: bool) -> None:
        super().__init__(span)
        self.include_usage_injected = include_usage_injected
        self.model: str | None = None
        self.response_id: str | None = None
        self.usage: Any = None
        self.choices: dict[int, _ChoiceParts] = {}

    def observe(self, chunk: Any) -> bool:
        if self.model is None:
            self.model = chunk.model
            self.response_id = chunk.id
        if chunk.usage is not None:
            self.usage = chunk.usage
            if not chunk.choices:  # the usage chunk: ours to hide if we asked for it
                return not self.include_usage_injected
        for choice in chunk.choices:
            parts = self.choices.get(choice.index)
            if parts is None:
                parts = self.choices[choice.index] = _ChoiceParts()
            delta = choice.delta
            if delta.content:
                self.first_token()
                parts.content.append(delta.content)
            if delta.refusal:
                parts.refusal.append(delta.refusal)
            for call in delta.tool_calls or ():
                self.first_token()
                parts.tool_call(call.index, call.id, call.function)
            if delta.function_call is not None:
                self.first_token()
                parts.tool_call(-1, None, delta.function_call)
            if choice.finish_reason is not None:
                parts.finish_reason = choice.finish_reason
        return True

    def output(self, completed: bool) -> Any:
        span = self.span
        if self.model is not None:
            span.set_usage(model=self.model)
            span.set_attribute("response_id", self.response_id)
        _record_usage(span, self.usage, _CHAT_USAGE)
        messages = []
        finish_reasons = []
        for _, parts in sorted(self.choices.items()):
            calls = [
                {"id": id_, "name": "".join(name), "arguments": "".join(arguments)}
                for id_, name, arguments in parts.tool_calls.values()
            ]
            refusal = "".join(parts.refusal) or None
            messages.append(_message("".join(parts.content) or None, calls, refusal))
            finish_reasons.append(parts.finish_reason)
        if not messages:
            return None
        _record_finish(span, finish_reasons, messages)
        return messages[0] if len(messages) == 1 else messages


class _ChoiceParts:
    """One streamed choice's deltas, joined when the stream ends."""

    __slots__ = ("content", "finish_reason", "refusal", "tool_calls")

    def __init__(self) -> None:
        self.content: list[str] = []
        self.refusal: list[str] = []
        self.finish_reason: str | None = None
        self.tool_calls: dict[int, tuple[str | None, list[str], list[str]]] = {}

    def tool_call(self, index: int, call_id: str | None, function: Any) -> None:
        entry = self.tool_calls.get(index)
        if entry is None:
            entry = self.tool_calls[index] = (call_id, [], [])
        if function is not None:
            if function.name:
                entry[1].append(function.name)
            if function.arguments:
                entry[2].append(function.arguments)


class ResponsesApi(Api):
    """The Responses API: ``client.responses.create``."""

    operation = "responses"
    parameters = (
        "temperature",
        "top_p",
        "max_output_tokens",
        "max_tool_calls",
        "tool_choice",
        "parallel_tool_calls",
        "reasoning",
        "service_tier",
        "truncation",
        "previous_response_id",
        "stream",
    )
    usage_on_request = False  # the completed event always carries it

    def input_of(self, kwargs: Mapping[str, Any]) -> Any:
        given = kwargs.get("input")
        instructions = kwargs.get("instructions")
        if isinstance(instructions, _ABSENT):
            return None if isinstance(given, _ABSENT) else given
        return {
            "instructions": instructions,
            "input": None if isinstance(given, _ABSENT) else given,
        }

    def record_result(self, span: Span, result: Any) -> Any:
        if not isinstance(result, Response):  # with_raw_response: not read here
            span.set_attribute("usage_missing", True)
            return None
        span.set_usage(model=result.model)
        span.set_attribute("response_id", result.id)
        _record_usage(span, result.usage, _RESPONSES_USAGE)
        calls: list[dict[str, Any]] = []
        for item in result.output:
            if item.type == "function_call":
                calls.append({"id": item.call_id, "name": item.name, "arguments": item.arguments})
            elif item.type == "custom_tool_call":
                calls.append({"id": item.call_id, "name": item.name, "arguments": item.input})
            elif item.type.endswith("_call"):  # built-in tools: web_search_call, ...
                calls.append(
                    {"id": getattr(item, "id", None), "name": item.type, "arguments": None}
                )
        message = _message(result.output_text or None, calls, None)
        details = result.incomplete_details
        reason = details.reason if details is not None and details.reason else result.status
        _record_finish(span, [reason], [message])
        if result.error is not None:
            span.add_event("error", code=result.error.code, message=result.error.message)
        return message

    def stream_state(self, span: Span, request: Request) -> StreamState:
        return ResponsesStreamState(span)


class ResponsesStreamState(StreamState):
    """A Responses stream: the final event carries the whole response, usage included."""

    _FINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})

    def __init__(self, span: Span) -> None:
        super().__init__(span)
        self.final: Response | None = None
        self.text: list[str] = []

    def observe(self, chunk: Any) -> bool:
        kind = chunk.type
        if kind.endswith(".delta"):
            self.first_token()
            if kind == "response.output_text.delta":
                self.text.append(chunk.delta)
        elif kind in self._FINAL:
            self.final = chunk.response
        return True

    def output(self, completed: bool) -> Any:
        if self.final is not None:
            return RESPONSES.record_result(self.span, self.final)
        self.span.set_attribute("usage_missing", True)
        return _message("".join(self.text), [], None) if self.text else None


CHAT = ChatApi()
RESPONSES = ResponsesApi()


def record_failure(call: ExternalCall, exc: BaseException) -> None:
    """End ``call`` failed with ``exc``, noting an HTTP error's status and request id."""
    status = getattr(exc, "status_code", None)
    if isinstance(status, int):
        call.span.set_attribute("status_code", status)
        request_id = getattr(exc, "request_id", None)
        if request_id:
            call.span.set_attribute("request_id", request_id)
    call.fail(exc)


_CHAT_USAGE = (
    "prompt_tokens",
    "completion_tokens",
    "prompt_tokens_details",
    "completion_tokens_details",
)
_RESPONSES_USAGE = (
    "input_tokens",
    "output_tokens",
    "input_tokens_details",
    "output_tokens_details",
)


def _record_usage(span: Span, usage: Any, names: tuple[str, ...]) -> None:
    if usage is None:
        span.set_attribute("usage_missing", True)
        return
    input_name, output_name, input_details, output_details = names
    # OpenAI counts the cached tokens in the input and the reasoning ones in the output, as
    # the wire schema does: they are priced at their own rates by the hub.
    cached = getattr(getattr(usage, input_details, None), "cached_tokens", None)
    reasoning = getattr(getattr(usage, output_details, None), "reasoning_tokens", None)
    span.set_usage(
        input_tokens=getattr(usage, input_name, None),
        output_tokens=getattr(usage, output_name, None),
        cached_input_tokens=cached if isinstance(cached, int) else None,
        reasoning_tokens=reasoning if isinstance(reasoning, int) else None,
    )
    if cached is not None:
        span.set_attribute("cached_tokens", cached)
    if reasoning is not None:
        span.set_attribute("reasoning_tokens", reasoning)


def _record_finish(
    span: Span, finish_reasons: Sequence[str | None], messages: list[dict[str, Any]]
) -> None:
    span.set_attribute(
        "finish_reason", finish_reasons[0] if len(finish_reasons) == 1 else finish_reasons
    )
    names = [call["name"] for message in messages for call in message.get("tool_calls", ())]
    if names:
        span.set_attribute("tool_calls", names)


def _message(
    content: str | None, tool_calls: list[dict[str, Any]], refusal: str | None
) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls:
        message["tool_calls"] = tool_calls
    if refusal:
        message["refusal"] = refusal
    return message


def _chat_tool_call(call: Any) -> dict[str, Any]:
    if call.type == "function":
        return {"id": call.id, "name": call.function.name, "arguments": call.function.arguments}
    return {"id": call.id, "name": call.custom.name, "arguments": call.custom.input}


def _tool_name(tool: Any) -> Any:
    """A tool definition's name (chat nests it under ``function``), else its type."""
    if not isinstance(tool, Mapping):
        return getattr(tool, "name", None) or type(tool).__name__
    for nested in ("function", "custom"):
        inner = tool.get(nested)
        if isinstance(inner, Mapping) and "name" in inner:
            return inner["name"]
    return tool.get("name") or tool.get("type")


def _raw_response(kwargs: Mapping[str, Any]) -> bool:
    """Whether the call comes through ``with_raw_response``/``with_streaming_response``."""
    headers = kwargs.get("extra_headers")
    return isinstance(headers, Mapping) and RAW_RESPONSE_HEADER in headers
