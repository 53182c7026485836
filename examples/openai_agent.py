"""An OpenAI tool-calling agent recorded by AgentOps: the model asks for a tool, then answers.

``agentops.init()`` enables the OpenAI integration by itself: each ``chat.completions.create``
becomes an ``llm`` span (model, tokens, the tool call the model asked for) under the
``weather-agent`` run, after passing the enforcer. With ``OPENAI_API_KEY`` set the real API
answers; otherwise a local fake does (the real ``openai`` client over an ``httpx.MockTransport``
returning canned API responses), so the example runs without any key.

With no hub configured the events go to ``.agentops/events.jsonl``; set ``AGENTOPS_HUB_URL`` (and
``AGENTOPS_API_KEY``) to send them to a hub.

    python examples/openai_agent.py
"""

from __future__ import annotations

import json
import os
from typing import Any

import httpx
import openai

import agentops_sdk as agentops

WEATHER = {"paris": "18°C, light rain", "lisbon": "24°C, sunny", "oslo": "7°C, overcast"}
TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Today's weather in a city.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]


@agentops.tool
def get_weather(city: str) -> str:
    """Look up today's weather in a city (a stand-in for a real API)."""
    return WEATHER.get(city.lower(), "unknown")


@agentops.agent(name="weather-agent")
def assistant(client: openai.OpenAI, question: str) -> str:
    """Ask the model, run the tools it asks for, and return its final answer."""
    messages: list[Any] = [
        {"role": "system", "content": "Answer briefly. Use get_weather for weather."},
        {"role": "user", "content": question},
    ]
    for _ in range(5):
        reply = client.chat.completions.create(model="gpt-4o-mini", messages=messages, tools=TOOLS)
        message = reply.choices[0].message
        if not message.tool_calls:
            return message.content or ""
        messages.append(message.model_dump(exclude_none=True))
        for call in message.tool_calls:
            if call.type == "function" and call.function.name == "get_weather":
                result = get_weather(**json.loads(call.function.arguments))
                messages.append({"role": "tool", "tool_call_id": call.id, "content": result})
    return "I could not finish in five turns."


def openai_client() -> openai.OpenAI:
    """The real client with a key, else the same client talking to a local fake of the API."""
    if os.environ.get("OPENAI_API_KEY"):
        return openai.OpenAI()
    print("OPENAI_API_KEY is not set: the OpenAI API is a local fake with canned answers.")
    # openai 3 annotates its own httpx2.Client here and accepts an httpx.Client as well.
    http_client: Any = httpx.Client(transport=httpx.MockTransport(fake_chat_completions))
    return openai.OpenAI(api_key="fake", base_url="http://fake-openai/v1", http_client=http_client)


def fake_chat_completions(request: httpx.Request) -> httpx.Response:
    """Ask for get_weather first; once a tool result is in the messages, answer with it."""
    body = json.loads(request.content)
    results = [m["content"] for m in body["messages"] if m["role"] == "tool"]
    if results:
        message: dict[str, Any] = {"role": "assistant", "content": f"Paris: {results[-1]}."}
        finish_reason, completion_tokens = "stop", 9
    else:
        message = {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_fake_0001",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        }
        finish_reason, completion_tokens = "tool_calls", 17
    prompt_tokens = 60 + 12 * len(body["messages"])
    return httpx.Response(
        200,
        json={
            "id": f"chatcmpl-fake-{len(body['messages'])}",
            "object": "chat.completion",
            "created": 1741570283,
            "model": "gpt-4o-mini-2024-07-18",
            "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        },
    )


def main() -> None:
    """Run the agent once, flush, and say where the events went."""
    client = agentops.init(environment="dev")
    answer = assistant(openai_client(), "What's the weather in Paris?")
    result = agentops.flush(timeout=5)
    print(answer)
    if client is not None and client.options.exporter_name == "jsonl":
        print(f"recorded {result.sent} events to {client.options.jsonl_path}")
    else:
        print(f"sent {result.sent} events ({os.environ.get('AGENTOPS_HUB_URL', 'exporter')})")


if __name__ == "__main__":
    main()
