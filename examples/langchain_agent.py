"""A LangChain agent loop recorded by AgentOps: the model asks for a tool, then answers.

``agentops.init()`` enables the LangChain integration by itself, so no callback is passed
anywhere: the model calls and the tool call are recorded under the ``weather-agent`` run, and the
tool call passes the enforcer before it runs. With ``OPENAI_API_KEY`` set and
``langchain-openai`` installed the model is ``ChatOpenAI``; otherwise LangChain's own fake chat
model plays its part, so the example runs without any key.

With no hub configured the events go to ``.agentops/events.jsonl``; set ``AGENTOPS_HUB_URL`` (and
``AGENTOPS_API_KEY``) to send them to a hub.

    python examples/langchain_agent.py
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from typing import Any

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.runnables import Runnable
from langchain_core.tools import tool

import agentops_sdk as agentops

WEATHER = {"paris": "18°C, light rain", "lisbon": "24°C, sunny", "oslo": "7°C, overcast"}


@tool
def get_weather(city: str) -> str:
    """Look up today's weather in a city (a stand-in for a real API)."""
    return WEATHER.get(city.lower(), "unknown")


def chat_model() -> Runnable[Any, BaseMessage]:
    """ChatOpenAI with the tool bound when a key and the package are there, else a fake."""
    if not os.environ.get("OPENAI_API_KEY"):
        print("OPENAI_API_KEY is not set: using LangChain's fake chat model.")
    elif importlib.util.find_spec("langchain_openai") is None:
        print("langchain-openai is not installed: using LangChain's fake chat model.")
    else:
        openai_models = importlib.import_module("langchain_openai")
        model: Runnable[Any, BaseMessage] = openai_models.ChatOpenAI(
            model="gpt-4o-mini"
        ).bind_tools([get_weather])
        return model
    usage = {"input_tokens": 42, "output_tokens": 9, "total_tokens": 51}
    metadata = {"model_name": "fake-chat-model"}
    return GenericFakeChatModel(
        messages=iter(
            [
                AIMessage(
                    "",
                    tool_calls=[{"name": "get_weather", "args": {"city": "Paris"}, "id": "call-1"}],
                    usage_metadata=usage,
                    response_metadata=metadata,
                ),
                AIMessage(
                    "It is 18°C with light rain in Paris.",
                    usage_metadata=usage,
                    response_metadata=metadata,
                ),
            ]
        )
    )


@agentops.agent(name="weather-agent")
def weather_agent(question: str, model: Runnable[Any, BaseMessage]) -> str:
    """Call the model until it stops asking for tools; return its answer."""
    messages: list[BaseMessage] = [HumanMessage(question)]
    while True:
        reply = model.invoke(messages)
        messages.append(reply)
        if not isinstance(reply, AIMessage) or not reply.tool_calls:
            return str(reply.content)
        for call in reply.tool_calls:
            messages.append(get_weather.invoke(call))


def main() -> None:
    """Run the agent once, flush, and say where the events went."""
    client = agentops.init(environment="dev")
    print(weather_agent("What's the weather in Paris?", chat_model()))
    result = agentops.flush(timeout=5)
    if client is not None and client.options.exporter_name == "jsonl":
        print(f"recorded {result.sent} events to {client.options.jsonl_path}")
    else:
        print(f"sent {result.sent} events ({os.environ.get('AGENTOPS_HUB_URL', 'exporter')})")


if __name__ == "__main__":
    main()
