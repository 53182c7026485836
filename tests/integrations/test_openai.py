"""The OpenAI integration: the real ``openai`` client over a mocked HTTP transport.

Every response below has the shape the API sends (JSON bodies and ``text/event-stream``
bodies); the fake answers streaming chat requests with a usage chunk only when
``stream_options.include_usage`` asks for one, as the API does.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai.resources.chat.completions import AsyncCompletions, Completions
from openai.resources.responses import AsyncResponses, Responses

import agentops_sdk as agentops
from agentops_sdk import integrations
from agentops_sdk.contract.controls import Control
from agentops_sdk.enforcement import LocalHub
from agentops_sdk.guards import CallInfo
from agentops_sdk.schema import SpanEvent
from agentops_sdk.testing import CapturedEvents, capture_events
from tests.sdk.fake_controls import control, control_set

pytestmark = pytest.mark.extras

MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Weather in Paris?"},
]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
PATCHED = (Completions, AsyncCompletions, Responses, AsyncResponses)


# -- recorded-shape payloads -----------------------------------------------------------------


def chat_completion(*, tool_call: bool = False) -> dict[str, Any]:
    message: dict[str, Any] = {
        "role": "assistant",
        "content": None if tool_call else "Sunny, 21°C.",
        "refusal": None,
        "annotations": [],
    }
    if tool_call:
        message["tool_calls"] = [
            {
                "id": "call_pXq0TfYdJj1B6qMZ8w7Xk3aF",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
            }
        ]
    return {
        "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
        "object": "chat.completion",
        "created": 1741570283,
        "model": "gpt-4o-2024-08-06",
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": "tool_calls" if tool_call else "stop",
            }
        ],
        "usage": {
            "prompt_tokens": 1117,
            "completion_tokens": 46,
            "total_tokens": 1163,
            "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 12,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        },
        "service_tier": "default",
        "system_fingerprint": "fp_fc9f1d7035",
    }


def chat_chunk(delta: dict[str, Any] | None, finish_reason: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
        "object": "chat.completion.chunk",
        "created": 1741570283,
        "model": "gpt-4o-2024-08-06",
        "service_tier": "default",
        "system_fingerprint": "fp_fc9f1d7035",
        "choices": []
        if delta is None
        else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
    }


TEXT_CHUNKS = [
    chat_chunk({"role": "assistant", "content": "", "refusal": None}),
    chat_chunk({"content": "Sunny"}),
    chat_chunk({"content": ", 21°C."}),
    chat_chunk({}, "stop"),
]
TOOL_CHUNKS = [
    chat_chunk(
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "index": 0,
                    "id": "call_pXq0TfYdJj1B6qMZ8w7Xk3aF",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": ""},
                }
            ],
        }
    ),
    chat_chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]}),
    chat_chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}),
    chat_chunk({}, "tool_calls"),
]
USAGE_CHUNK = {
    **chat_chunk(None),
    "usage": {
        "prompt_tokens": 19,
        "completion_tokens": 10,
        "total_tokens": 29,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
    },
}


def response_object(*, status: str = "completed", function_call: bool = False) -> dict[str, Any]:
    output: list[dict[str, Any]] = [
        {
            "type": "reasoning",
            "id": "rs_67ccd3a9da748190baa7f1570fe91ac604becb25c45c1d41",
            "summary": [],
        }
    ]
    if function_call:
        output.append(
            {
                "type": "function_call",
                "id": "fc_67ca09c6bedc8190a7abfec07b1a1332096610f474011cc0",
                "call_id": "call_unLAR8MvFNptuiZK6K6HCy5k",
                "name": "get_weather",
                "arguments": '{"city":"Paris"}',
                "status": "completed",
            }
        )
    else:
        output.append(
            {
                "type": "message",
                "id": "msg_67ccd3acc8d48190a77525dc6de64b4104becb25c45c1d41",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "Sunny, 21°C.", "annotations": []}],
            }
        )
    return {
        "id": "resp_67ccd3a9da748190baa7f1570fe91ac604becb25c45c1d41",
        "object": "response",
        "created_at": 1741476777,
        "status": status,
        "error": None,
        "incomplete_details": None,
        "instructions": "You are terse.",
        "max_output_tokens": None,
        "model": "o3-mini-2025-01-31",
        "output": output if status != "in_progress" else [],
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "reasoning": {"effort": "medium", "summary": None},
        "store": True,
        "temperature": 1.0,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": None
        if status == "in_progress"
        else {
            "input_tokens": 81,
            "input_tokens_details": {"cached_tokens": 64},
            "output_tokens": 1035,
            "output_tokens_details": {"reasoning_tokens": 832},
            "total_tokens": 1116,
        },
        "user": None,
        "metadata": {},
    }


def response_events() -> list[dict[str, Any]]:
    item_id = "msg_67ccd3acc8d48190a77525dc6de64b4104becb25c45c1d41"
    delta = {"item_id": item_id, "output_index": 1, "content_index": 0, "logprobs": []}
    return [
        {"type": "response.created", "response": response_object(status="in_progress")},
        {"type": "response.in_progress", "response": response_object(status="in_progress")},
        {"type": "response.output_text.delta", **delta, "delta": "Sunny"},
        {"type": "response.output_text.delta", **delta, "delta": ", 21°C."},
        {"type": "response.output_text.done", **delta, "text": "Sunny, 21°C."},
        {"type": "response.completed", "response": response_object()},
    ]


def event_stream(events: list[dict[str, Any]], *, named: bool = False, done: bool = True) -> bytes:
    """An SSE body: ``data:`` lines (with ``event:`` lines as the Responses API sends them)."""
    lines = []
    for number, event in enumerate(events):
        if named:
            numbered = {**event, "sequence_number": number}
            lines.append(f"event: {event['type']}\ndata: {json.dumps(numbered)}\n\n")
        else:
            lines.append(f"data: {json.dumps(event)}\n\n")
    if done:
        lines.append("data: [DONE]\n\n")
    return "".join(lines).encode()


# -- the fake API ----------------------------------------------------------------------------


class FakeOpenAI:
    """A mocked transport answering like the OpenAI API; keeps the request bodies it got."""

    def __init__(self, answer: Callable[[dict[str, Any]], httpx.Response] | None = None) -> None:
        self.requests: list[dict[str, Any]] = []
        self.answer = answer or self.openai_api
        self.chunks = TEXT_CHUNKS

    def handle(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.requests.append(body)
        return self.answer(body)

    def openai_api(self, body: dict[str, Any]) -> httpx.Response:
        """Chat and responses, streamed or not, as the API answers them."""
        streamed = body.get("stream") is True
        if body.get("messages") is None:
            if streamed:
                return sse(event_stream(response_events(), named=True, done=False))
            return httpx.Response(200, json=response_object(function_call="tools" in body))
        if not streamed:
            return httpx.Response(200, json=chat_completion(tool_call="tools" in body))
        chunks = list(self.chunks)
        if (body.get("stream_options") or {}).get("include_usage"):
            chunks.append(USAGE_CHUNK)
        return sse(event_stream(chunks))

    def client(self) -> openai.OpenAI:
        transport = httpx.MockTransport(self.handle)
        return openai.OpenAI(
            api_key="test",
            base_url="http://test/v1",
            http_client=httpx.Client(transport=transport),
            max_retries=0,
        )

    def async_client(self) -> openai.AsyncOpenAI:
        transport = httpx.MockTransport(self.handle)
        return openai.AsyncOpenAI(
            api_key="test",
            base_url="http://test/v1",
            http_client=httpx.AsyncClient(transport=transport),
            max_retries=0,
        )


def sse(body: bytes) -> httpx.Response:
    return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})


def api_error(status: int, message: str, kind: str) -> Callable[[dict[str, Any]], httpx.Response]:
    def answer(body: dict[str, Any]) -> httpx.Response:
        error = {"message": message, "type": kind, "param": None, "code": None}
        return httpx.Response(status, json={"error": error}, headers={"x-request-id": "req_42"})

    return answer


@pytest.fixture
def enabled() -> Iterator[None]:
    """The integration enabled as ``init()`` does it, disabled after the test."""
    assert integrations.enable("openai")
    yield
    integrations.disable("openai")


@pytest.fixture
def api() -> FakeOpenAI:
    return FakeOpenAI()


def only_span(captured: CapturedEvents) -> SpanEvent:
    (span,) = captured.spans
    return span


def usage(span: SpanEvent) -> tuple[str | None, int | None, int | None]:
    assert span.llm is not None
    return span.llm.model, span.llm.input_tokens, span.llm.output_tokens


# -- enabling --------------------------------------------------------------------------------


def test_the_module_does_not_import_openai_and_the_sdk_works_without_it() -> None:
    script = (
        "import sys; sys.modules['openai'] = None\n"  # as if openai were not installed
        "import agentops_openai, agentops_sdk as agentops\n"
        "from agentops_sdk import integrations\n"
        "agentops.init(exporter='memory')\n"
        "assert 'openai' not in integrations.enabled(), integrations.enabled()\n"
        "assert not agentops_openai.OpenAIIntegration.available()\n"
        "print('ok')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False
    )
    assert done.stdout.strip() == "ok", done.stderr
    imported = subprocess.run(
        [sys.executable, "-c", "import sys, agentops_openai; print('openai' in sys.modules)"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert imported.stdout.strip() == "False", imported.stderr


def test_enabling_before_openai_is_imported_patches_it_on_import_not_before() -> None:
    script = (
        "import sys, agentops_sdk as agentops\n"
        "from agentops_sdk import integrations\n"
        "agentops.init(exporter='memory', integrations=['openai'])\n"
        "assert integrations.enabled() == ['openai']\n"
        "assert 'openai' not in sys.modules\n"
        "from openai.resources.chat.completions import Completions\n"
        "assert 'agentops_openai' in Completions.create.__code__.co_filename\n"
        "integrations.disable('openai')\n"
        "assert 'agentops_openai' not in Completions.create.__code__.co_filename\n"
        "print('ok')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False
    )
    assert done.stdout.strip() == "ok", done.stderr


def test_disabling_before_openai_is_imported_leaves_it_unpatched() -> None:
    script = (
        "from agentops_sdk import integrations\n"
        "assert integrations.enable('openai')\n"
        "integrations.disable('openai')\n"
        "from openai.resources.chat.completions import Completions\n"
        "assert 'agentops_openai' not in Completions.create.__code__.co_filename\n"
        "print('ok')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False
    )
    assert done.stdout.strip() == "ok", done.stderr


def test_the_registered_entry_point_loads_the_integration() -> None:
    from agentops_openai import OpenAIIntegration

    assert integrations.registered()["openai"] is OpenAIIntegration
    assert (OpenAIIntegration.name, OpenAIIntegration.framework) == ("openai", "openai")


def test_a_client_created_before_enabling_is_instrumented(
    api: FakeOpenAI, agentops_events: CapturedEvents
) -> None:
    client = api.client()
    assert integrations.enable("openai")
    try:
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    finally:
        integrations.disable("openai")
    assert only_span(agentops_events).name == "chat gpt-4o"


def test_uninstrument_restores_the_original_methods_exactly(
    api: FakeOpenAI, agentops_events: CapturedEvents
) -> None:
    originals = [owner.__dict__["create"] for owner in PATCHED]
    assert integrations.enable("openai")
    assert all(
        owner.__dict__["create"] is not original
        for owner, original in zip(PATCHED, originals, strict=True)
    )
    integrations.disable("openai")
    assert [owner.__dict__["create"] for owner in PATCHED] == originals
    api.client().chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert agentops_events.spans == []


# -- chat completions ------------------------------------------------------------------------


def test_a_chat_completion_becomes_an_llm_span_with_model_usage_and_parameters(
    enabled: None, api: FakeOpenAI, agentops_events: CapturedEvents
) -> None:
    completion = api.client().chat.completions.create(
        model="gpt-4o", messages=MESSAGES, temperature=0.2, max_tokens=200, seed=7
    )
    assert completion.choices[0].message.content == "Sunny, 21°C."
    span = only_span(agentops_events)
    assert (span.kind, span.name, span.status) == ("llm", "chat gpt-4o", "ok")
    assert usage(span) == ("gpt-4o-2024-08-06", 1117, 46)
    assert span.llm is not None
    assert span.llm.provider == "openai"
    assert span.input == MESSAGES
    assert span.output == {"role": "assistant", "content": "Sunny, 21°C."}
    assert span.attributes == {
        "request_model": "gpt-4o",
        "temperature": 0.2,
        "max_tokens": 200,
        "seed": 7,
        "response_id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
        "cached_tokens": 1024,
        "reasoning_tokens": 12,
        "finish_reason": "stop",
    }
    assert span.ended_at is not None
    assert span.ended_at >= span.started_at


def test_tool_calls_the_model_requests_are_recorded_under_the_agent(
    enabled: None, api: FakeOpenAI, agentops_events: CapturedEvents
) -> None:
    @agentops.agent
    def assistant() -> Any:
        return api.client().chat.completions.create(
            model="gpt-4o", messages=MESSAGES, tools=[WEATHER_TOOL], tool_choice="auto"
        )

    assistant()
    call = agentops_events.span("chat gpt-4o")
    assert call.parent_id == agentops_events.span("assistant").id
    assert call.attributes["tools"] == ["get_weather"]
    assert call.attributes["tool_choice"] == "auto"
    assert call.attributes["tool_calls"] == ["get_weather"]
    assert call.attributes["finish_reason"] == "tool_calls"
    assert call.output == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_pXq0TfYdJj1B6qMZ8w7Xk3aF",
                "name": "get_weather",
                "arguments": '{"city":"Paris"}',
            }
        ],
    }


def test_with_capture_off_messages_stay_out_but_tool_names_are_kept(
    enabled: None, api: FakeOpenAI
) -> None:
    with capture_events(capture=False) as captured:
        api.client().chat.completions.create(
            model="gpt-4o", messages=MESSAGES, tools=[WEATHER_TOOL]
        )
        span = only_span(captured)
    assert (span.input, span.output) == (None, None)
    assert span.attributes["tool_calls"] == ["get_weather"]
    assert usage(span) == ("gpt-4o-2024-08-06", 1117, 46)


@pytest.mark.parametrize(
    ("status", "error_type", "kind"),
    [
        (400, openai.BadRequestError, "invalid_request_error"),
        (429, openai.RateLimitError, "rate_limit_exceeded"),
        (500, openai.InternalServerError, "server_error"),
    ],
)
def test_an_api_error_is_recorded_and_re_raised(
    enabled: None,
    agentops_events: CapturedEvents,
    status: int,
    error_type: type[openai.APIStatusError],
    kind: str,
) -> None:
    api = FakeOpenAI(api_error(status, "it went wrong", kind))
    with pytest.raises(error_type, match="it went wrong") as raised:
        api.client().chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert raised.value.status_code == status
    span = only_span(agentops_events)
    assert span.status == "error"
    assert span.error is not None
    assert span.error.type == f"openai.{error_type.__name__}"
    assert span.attributes["status_code"] == status
    assert span.attributes["request_id"] == "req_42"


def test_a_connection_error_is_recorded_and_re_raised(
    enabled: None, agentops_events: CapturedEvents
) -> None:
    down = httpx.ConnectError("connection refused")

    def refuse(body: dict[str, Any]) -> httpx.Response:
        raise down

    with pytest.raises(openai.APIConnectionError) as raised:
        FakeOpenAI(refuse).client().chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert raised.value.__cause__ is down
    span = only_span(agentops_events)
    assert span.status == "error"
    assert span.error is not None
    assert span.error.type == "openai.APIConnectionError"


def test_the_exception_the_client_raises_reaches_the_caller_as_the_same_object(
    monkeypatch: pytest.MonkeyPatch, agentops_events: CapturedEvents
) -> None:
    error = openai.APIConnectionError(request=httpx.Request("POST", "http://test/v1/x"))

    def create(self: Any, **kwargs: Any) -> Any:
        raise error

    monkeypatch.setattr(Completions, "create", create)
    assert integrations.enable("openai")
    try:
        with pytest.raises(openai.APIConnectionError) as raised:
            FakeOpenAI().client().chat.completions.create(model="gpt-4o", messages=MESSAGES)
    finally:
        integrations.disable("openai")
    assert raised.value is error
    assert only_span(agentops_events).status == "error"


def test_a_denying_guard_stops_the_call_before_any_request(
    enabled: None, api: FakeOpenAI, agentops_events: CapturedEvents
) -> None:
    def deny(call: CallInfo) -> None:
        if call.kind == "llm":
            raise agentops.PolicyViolation("no LLM calls", rule="no-llm")

    agentops_events.client.guards.add(deny)
    with pytest.raises(agentops.PolicyViolation):
        api.client().chat.completions.create(model="gpt-4o", messages=MESSAGES)
    with pytest.raises(agentops.PolicyViolation):
        api.client().responses.create(model="o3-mini", input="hi", stream=True)
    assert api.requests == []
    assert [span.status for span in agentops_events.spans] == ["blocked", "blocked"]


async def test_a_denying_guard_stops_an_async_call_before_any_request(
    enabled: None, api: FakeOpenAI, agentops_events: CapturedEvents
) -> None:
    async def deny(call: CallInfo) -> None:
        raise agentops.BudgetExceeded("over budget")

    agentops_events.client.guards.add(deny)
    with pytest.raises(agentops.BudgetExceeded):
        await api.async_client().chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert api.requests == []
    assert only_span(agentops_events).status == "blocked"


# -- chat completion streams -----------------------------------------------------------------


def test_a_stream_reports_usage_the_caller_never_sees_the_usage_chunk(
    enabled: None, api: FakeOpenAI, agentops_events: CapturedEvents
) -> None:
    stream = api.client().chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
    assert isinstance(stream, openai.Stream)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream)
    assert text == "Sunny, 21°C."
    assert api.requests[0]["stream_options"] == {"include_usage": True}
    span = only_span(agentops_events)
    assert usage(span) == ("gpt-4o-2024-08-06", 19, 10)
    assert span.output == {"role": "assistant", "content": "Sunny, 21°C."}
    assert span.attributes["finish_reason"] == "stop"
    assert span.attributes["stream"] is True
    assert span.attributes["time_to_first_token_ms"] >= 0
    assert "usage_missing" not in span.attributes


def test_a_caller_who_asked_for_usage_keeps_the_usage_chunk(
    enabled: None, api: FakeOpenAI, agentops_events: CapturedEvents
) -> None:
    stream = api.client().chat.completions.create(
        model="gpt-4o", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert usage(only_span(agentops_events)) == ("gpt-4o-2024-08-06", 19, 10)


def test_a_stream_without_usage_is_marked_usage_missing_not_invented(
    enabled: None, api: FakeOpenAI, agentops_events: CapturedEvents
) -> None:
    stream = api.client().chat.completions.create(
        model="gpt-4o", messages=MESSAGES, stream=True, stream_options={"include_usage": False}
    )
    assert len(list(stream)) == len(TEXT_CHUNKS)
    span = only_span(agentops_events)
    assert usage(span) == ("gpt-4o-2024-08-06", None, None)
    assert span.attributes["usage_missing"] is True


def test_streamed_tool_calls_are_assembled(
    enabled: None, api: FakeOpenAI, agentops_events: CapturedEvents
) -> None:
    api.chunks = TOOL_CHUNKS
    stream = api.client().chat.completions.create(
        model="gpt-4o", messages=MESSAGES, tools=[WEATHER_TOOL], stream=True
    )
    for _ in stream:
        pass
    span = only_span(agentops_events)
    assert span.attributes["tool_calls"] == ["get_weather"]
    assert span.attributes["finish_reason"] == "tool_calls"
    assert span.output == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_pXq0TfYdJj1B6qMZ8w7Xk3aF",
                "name": "get_weather",
                "arguments": '{"city":"Paris"}',
            }
        ],
    }


def test_the_stream_helper_still_works_on_a_recorded_stream(
    enabled: None, api: FakeOpenAI, agentops_events: CapturedEvents
) -> None:
    with api.client().chat.completions.stream(model="gpt-4o", messages=MESSAGES) as stream:
        final = stream.get_final_completion()
    assert final.choices[0].message.content == "Sunny, 21°C."
    assert usage(only_span(agentops_events)) == ("gpt-4o-2024-08-06", 19, 10)


def test_a_stream_read_to_its_end_ends_its_span_once(
    enabled: None, api: FakeOpenAI, agentops_events: CapturedEvents
) -> None:
    with api.client().chat.completions.create(
        model="gpt-4o", messages=MESSAGES, stream=True
    ) as stream:
        for _ in stream:
            pass
        assert len(agentops_events.spans) == 1
    stream.close()
    del stream
    gc.collect()
    span = only_span(agentops_events)
    assert "stream_closed_early" not in span.attributes


def test_a_stream_left_by_break_ends_its_span_on_close(
    enabled: None, api: FakeOpenAI, agentops_events: CapturedEvents
) -> None:
    stream = api.client().chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
    for chunk in stream:
        if chunk.choices[0].delta.content:
            break
    assert agentops_events.spans == []
    stream.close()
    span = only_span(agentops_events)
    assert span.status == "ok"
    assert span.attributes["stream_closed_early"] is True
    assert span.attributes["usage_missing"] is True
    assert span.output == {"role": "assistant", "content": "Sunny"}
    del stream
    gc.collect()
    assert len(agentops_events.spans) == 1


def test_an_abandoned_stream_ends_its_span_when_collected(
    enabled: None, api: FakeOpenAI, agentops_events: CapturedEvents
) -> None:
    client = api.client()
    unread = client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
    half_read = client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
    next(half_read)
    assert agentops_events.spans == []
    del unread, half_read
    gc.collect()
    spans = agentops_events.spans
    assert len(spans) == 2
    assert all(span.attributes["stream_closed_early"] for span in spans)


def test_an_error_inside_a_stream_is_recorded_and_re_raised(
    enabled: None, agentops_events: CapturedEvents
) -> None:
    failing = [TEXT_CHUNKS[0], {"error": {"message": "overloaded", "type": "server_error"}}]
    api = FakeOpenAI(lambda body: sse(event_stream(failing)))
    stream = api.client().chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
    with pytest.raises(openai.APIError, match="overloaded"):
        for _ in stream:
            pass
    stream.close()
    span = only_span(agentops_events)
    assert span.status == "error"
    assert span.error is not None
    assert span.error.type == "openai.APIError"


def test_an_error_in_the_callers_loop_ends_the_span_when_the_stream_closes(
    enabled: None, api: FakeOpenAI, agentops_events: CapturedEvents
) -> None:
    def read_with_a_bug() -> None:
        with api.client().chat.completions.create(
            model="gpt-4o", messages=MESSAGES, stream=True
        ) as stream:
            for _ in stream:
                raise KeyError("caller's bug")

    with pytest.raises(KeyError):
        read_with_a_bug()
    span = only_span(agentops_events)
    assert (span.status, span.attributes["stream_closed_early"]) == ("ok", True)


# -- responses -------------------------------------------------------------------------------


def test_a_response_becomes_an_llm_span_with_reasoning_and_cached_tokens(
    enabled: None, api: FakeOpenAI, agentops_events: CapturedEvents
) -> None:
    response = api.client().responses.create(
        model="o3-mini",
        instructions="You are terse.",
        input="Weather in Paris?",
        reasoning={"effort": "medium"},
        max_output_tokens=2000,
    )
    assert response.output_text == "Sunny, 21°C."
    span = only_span(agentops_events)
    assert (span.kind, span.name) == ("llm", "responses o3-mini")
    assert usage(span) == ("o3-mini-2025-01-31", 81, 1035)
    assert span.input == {"instructions": "You are terse.", "input": "Weather in Paris?"}
    assert span.output == {"role": "assistant", "content": "Sunny, 21°C."}
    assert span.attributes["request_model"] == "o3-mini"
    assert span.attributes["reasoning"] == {"effort": "medium"}
    assert span.attributes["max_output_tokens"] == 2000
    assert span.attributes["cached_tokens"] == 64
    assert span.attributes["reasoning_tokens"] == 832
    assert span.attributes["finish_reason"] == "completed"


def test_a_response_function_call_is_recorded(
    enabled: None, api: FakeOpenAI, agentops_events: CapturedEvents
) -> None:
    tool = {"type": "function", "name": "get_weather", "parameters": {"type": "object"}}
    api.client().responses.create(model="o3-mini", input="Weather in Paris?", tools=[tool])
    span = only_span(agentops_events)
    assert span.attributes["tools"] == ["get_weather"]
    assert span.attributes["tool_calls"] == ["get_weather"]
    assert span.output == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_unLAR8MvFNptuiZK6K6HCy5k",
                "name": "get_weather",
                "arguments": '{"city":"Paris"}',
            }
        ],
    }


def test_a_response_stream_takes_usage_from_the_completed_event(
    enabled: None, api: FakeOpenAI, agentops_events: CapturedEvents
) -> None:
    stream = api.client().responses.create(model="o3-mini", input="Weather?", stream=True)
    assert isinstance(stream, openai.Stream)
    kinds = [event.type for event in stream]
    assert kinds[0] == "response.created"
    assert kinds[-1] == "response.completed"
    assert "stream_options" not in api.requests[0]
    span = only_span(agentops_events)
    assert usage(span) == ("o3-mini-2025-01-31", 81, 1035)
    assert span.output == {"role": "assistant", "content": "Sunny, 21°C."}
    assert span.attributes["time_to_first_token_ms"] >= 0


def test_a_response_stream_closed_early_keeps_the_text_so_far(
    enabled: None, api: FakeOpenAI, agentops_events: CapturedEvents
) -> None:
    with api.client().responses.create(model="o3-mini", input="Weather?", stream=True) as stream:
        for event in stream:
            if event.type == "response.output_text.delta":
                break
    span = only_span(agentops_events)
    assert span.output == {"role": "assistant", "content": "Sunny"}
    assert span.attributes["usage_missing"] is True


# -- async -----------------------------------------------------------------------------------


async def test_an_async_chat_completion_is_recorded(
    enabled: None, api: FakeOpenAI, agentops_events: CapturedEvents
) -> None:
    completion = await api.async_client().chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert completion.choices[0].message.content == "Sunny, 21°C."
    assert usage(only_span(agentops_events)) == ("gpt-4o-2024-08-06", 1117, 46)


async def test_an_async_stream_reports_usage_and_hides_the_usage_chunk(
    enabled: None, api: FakeOpenAI, agentops_events: CapturedEvents
) -> None:
    stream = await api.async_client().chat.completions.create(
        model="gpt-4o", messages=MESSAGES, stream=True
    )
    assert isinstance(stream, openai.AsyncStream)
    contents = [chunk.choices[0].delta.content async for chunk in stream]
    assert "".join(filter(None, contents)) == "Sunny, 21°C."
    assert usage(only_span(agentops_events)) == ("gpt-4o-2024-08-06", 19, 10)


async def test_an_async_stream_left_by_break_ends_its_span_on_aclose(
    enabled: None, api: FakeOpenAI, agentops_events: CapturedEvents
) -> None:
    stream = await api.async_client().chat.completions.create(
        model="gpt-4o", messages=MESSAGES, stream=True
    )
    async for _ in stream:
        break
    assert agentops_events.spans == []
    await stream.aclose()
    assert only_span(agentops_events).attributes["stream_closed_early"] is True


async def test_an_abandoned_async_stream_ends_its_span_when_collected(
    enabled: None, api: FakeOpenAI, agentops_events: CapturedEvents
) -> None:
    stream = await api.async_client().chat.completions.create(
        model="gpt-4o", messages=MESSAGES, stream=True
    )
    del stream
    gc.collect()
    assert only_span(agentops_events).attributes["stream_closed_early"] is True


async def test_an_async_response_stream_is_recorded(
    enabled: None, api: FakeOpenAI, agentops_events: CapturedEvents
) -> None:
    stream = await api.async_client().responses.create(
        model="o3-mini", input="Weather?", stream=True
    )
    async with stream:
        events: AsyncIterator[Any] = stream.__aiter__()
        kinds = [event.type async for event in events]
    assert kinds[-1] == "response.completed"
    assert usage(only_span(agentops_events)) == ("o3-mini-2025-01-31", 81, 1035)


# -- a kill stops a stream in flight -----------------------------------------------------------


@pytest.fixture
def governed(tmp_path: Path) -> Iterator[tuple[CapturedEvents, LocalHub]]:
    """A client obeying the controls a ``LocalHub`` publishes (the hub's stream, played)."""
    hub = LocalHub()
    with capture_events(
        hub_url="http://hub.invalid", api_key="ak_test", hub_source=hub, spool_dir=tmp_path
    ) as events:
        yield events, hub


def kill_everything(events: CapturedEvents, hub: LocalHub) -> Control:
    kill = control("killed", reason="runaway spend")
    controls = control_set(kill)
    hub.publish("controls", controls)
    link = events.client.enforcer.link
    assert link.wait_until(lambda: link.snapshot.get("controls") is controls, 5)
    return kill


def assert_killed_in_flight(events: CapturedEvents, kill: Control) -> None:
    span = only_span(events)
    assert span.status == "blocked"
    assert span.error is not None
    assert span.error.type == "agentops_sdk.errors.AgentKilled"
    (decision,) = span.decisions
    assert (decision.outcome, decision.stage, decision.rule) == ("deny", "controls", str(kill.id))


def test_a_kill_stops_a_stream_being_read_and_closes_its_response(
    enabled: None, api: FakeOpenAI, governed: tuple[CapturedEvents, LocalHub]
) -> None:
    events, hub = governed
    stream = api.client().chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
    read = [next(stream), next(stream)]  # the role, then "Sunny"
    assert read[1].choices[0].delta.content == "Sunny"

    kill = kill_everything(events, hub)

    with pytest.raises(agentops.AgentKilled, match="runaway spend"):
        next(stream)
    assert stream.response.is_closed
    assert_killed_in_flight(events, kill)


async def test_a_kill_stops_an_async_stream_being_read(
    enabled: None, api: FakeOpenAI, governed: tuple[CapturedEvents, LocalHub]
) -> None:
    events, hub = governed
    stream = await api.async_client().chat.completions.create(
        model="gpt-4o", messages=MESSAGES, stream=True
    )
    chunks = stream.__aiter__()
    await chunks.__anext__()
    await chunks.__anext__()

    kill = kill_everything(events, hub)

    with pytest.raises(agentops.AgentKilled):
        await chunks.__anext__()
    assert stream.response.is_closed
    assert_killed_in_flight(events, kill)


def test_a_stream_read_with_no_kill_in_force_is_untouched_by_the_controls(
    enabled: None, api: FakeOpenAI, governed: tuple[CapturedEvents, LocalHub]
) -> None:
    events, hub = governed
    hub.publish("controls", control_set(control("killed", "agent", "someone-else")))
    link = events.client.enforcer.link
    assert link.wait_until(lambda: link.snapshot.get("controls") is not None, 5)

    stream = api.client().chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream)

    assert text == "Sunny, 21°C."
    assert only_span(events).status == "ok"


async def test_an_async_api_error_is_recorded_and_re_raised(
    enabled: None, agentops_events: CapturedEvents
) -> None:
    api = FakeOpenAI(api_error(429, "slow down", "rate_limit_exceeded"))
    with pytest.raises(openai.RateLimitError):
        await api.async_client().responses.create(model="o3-mini", input="hi")
    span = only_span(agentops_events)
    assert (span.status, span.attributes["status_code"]) == ("error", 429)


# -- raw responses ---------------------------------------------------------------------------


def test_a_raw_response_is_recorded_without_reading_its_body(
    enabled: None, api: FakeOpenAI, agentops_events: CapturedEvents
) -> None:
    raw = api.client().chat.completions.with_raw_response.create(
        model="gpt-4o", messages=MESSAGES, stream=True
    )
    assert "stream_options" not in api.requests[0]
    assert len(list(raw.parse())) == len(TEXT_CHUNKS)
    span = only_span(agentops_events)
    assert span.attributes["usage_missing"] is True


# -- the example -----------------------------------------------------------------------------


def test_the_example_agent_runs_without_a_key_and_records_its_calls(tmp_path: Path) -> None:
    example = Path(__file__).parents[2] / "examples" / "openai_agent.py"
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("AGENTOPS_", "OPENAI_"))
    }
    done = subprocess.run(
        [sys.executable, str(example)],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "local fake" in done.stdout
    assert "Paris: 18°C, light rain." in done.stdout
    events = [json.loads(line) for line in (tmp_path / ".agentops/events.jsonl").open()]
    spans = [(e["kind"], e["name"]) for e in events if e["type"] == "span"]
    assert spans == [
        ("llm", "chat gpt-4o-mini"),
        ("tool", "get_weather"),
        ("llm", "chat gpt-4o-mini"),
        ("agent", "weather-agent"),
    ]
