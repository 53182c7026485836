"""A LangChain chat model built on the openai client (as ChatOpenAI is), with both integrations
on: each model call is one llm span, its tokens counted once."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult

import agentops_sdk as agentops
from agentops_sdk import integrations
from agentops_sdk.testing import CapturedEvents
from tests.integrations.test_openai import FakeOpenAI


class OpenAIBackedChat(BaseChatModel):
    """The shape of ChatOpenAI: LangChain around the openai client."""

    sync_client: Any
    async_client: Any

    @property
    def _llm_type(self) -> str:
        return "openai-backed"

    def _generate(self, messages: list[BaseMessage], stop: Any = None, **kwargs: Any) -> ChatResult:
        reply = self.sync_client.chat.completions.create(
            model="gpt-4o-mini", messages=_wire(messages)
        )
        return _result(reply)

    async def _agenerate(
        self, messages: list[BaseMessage], stop: Any = None, **kwargs: Any
    ) -> ChatResult:
        reply = await self.async_client.chat.completions.create(
            model="gpt-4o-mini", messages=_wire(messages)
        )
        return _result(reply)


def _wire(messages: list[BaseMessage]) -> list[dict[str, Any]]:
    return [{"role": "user", "content": str(message.content)} for message in messages]


def _result(reply: Any) -> ChatResult:
    usage = {
        "input_tokens": reply.usage.prompt_tokens,
        "output_tokens": reply.usage.completion_tokens,
        "total_tokens": reply.usage.total_tokens,
    }
    message = AIMessage(content=reply.choices[0].message.content or "", usage_metadata=usage)
    return ChatResult(generations=[ChatGeneration(message=message)])


@pytest.fixture
def both() -> Iterator[None]:
    assert integrations.enable("openai")
    assert integrations.enable("langchain")
    yield
    integrations.disable("langchain")
    integrations.disable("openai")


def test_a_model_call_through_langchain_is_one_span_counted_once(
    both: None, agentops_events: CapturedEvents
) -> None:
    api = FakeOpenAI()
    model = OpenAIBackedChat(sync_client=api.client(), async_client=api.async_client())

    @agentops.agent
    def assistant() -> None:
        model.invoke("hi")
        # A direct call afterwards, in the same context, is recorded as usual.
        api.client().chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "again"}]
        )

    assistant()

    llm_spans = [span for span in agentops_events.spans if span.kind == "llm"]
    assert len(api.requests) == 2
    assert len(llm_spans) == 2
    by_parent = {span.parent_id for span in llm_spans}
    (root,) = [span for span in agentops_events.spans if span.kind == "agent"]
    assert by_parent == {root.id}  # neither nests a duplicate under the other
    (run,) = agentops_events.runs
    per_call = llm_spans[0].llm
    assert per_call is not None
    assert per_call.input_tokens is not None
    assert run.input_tokens == sum(span.llm.input_tokens or 0 for span in llm_spans if span.llm)
    assert run.input_tokens == 2 * per_call.input_tokens


async def test_an_async_model_call_through_langchain_is_one_span(
    both: None, agentops_events: CapturedEvents
) -> None:
    api = FakeOpenAI()
    model = OpenAIBackedChat(sync_client=api.client(), async_client=api.async_client())

    await model.ainvoke("hi")

    llm_spans = [span for span in agentops_events.spans if span.kind == "llm"]
    assert len(api.requests) == 1
    assert len(llm_spans) == 1
    assert llm_spans[0].name == "OpenAIBackedChat"
