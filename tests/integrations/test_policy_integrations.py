"""Policies on framework calls: the real ``openai`` client over a mocked transport, and LangChain
with its fake models. A denied model or tool sends no request and runs nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langchain_core.tools import tool

import agentops_sdk as agentops
from agentops_sdk import integrations
from agentops_sdk.contract.decisions import DECISION_EVENT
from agentops_sdk.testing import CapturedEvents, capture_events
from tests.integrations.test_openai import MESSAGES, FakeOpenAI
from tests.sdk.test_policy import EXAMPLE_YAML

pytestmark = pytest.mark.extras

POLICY = {
    "version": 4,
    "rules": [
        {"id": "no-gpt4", "match": {"kind": "llm", "model": "gpt-4"}, "outcome": "deny"},
        {
            "id": "short-answers",
            "match": {"kind": "llm"},
            "limit": {"max_tokens": 1000},
            "outcome": "deny",
            "message": "Ask for at most 1000 tokens.",
        },
        {
            "id": "no-secrets",
            "match": {"kind": "llm"},
            "when": {"argument": "messages", "regex": "(?i)password"},
            "outcome": "deny",
        },
        {"id": "watch-o3", "match": {"kind": "llm", "model": "o3*"}, "outcome": "warn"},
        {
            "id": "external-mail",
            "match": {"kind": "tool", "name": "send_email"},
            "when": {"argument": "to", "not_regex": r"@example\.com$"},
            "outcome": "require_approval",
        },
    ],
}


@pytest.fixture
def governed(tmp_path: Path) -> Iterator[CapturedEvents]:
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(POLICY))
    with capture_events(policy_file=path) as captured:
        yield captured


@pytest.fixture
def openai_enabled() -> Iterator[None]:
    assert integrations.enable("openai")
    yield
    integrations.disable("openai")


@pytest.fixture
def langchain_enabled() -> Iterator[None]:
    assert integrations.enable("langchain")
    yield
    integrations.disable("langchain")


def decision_of(captured: CapturedEvents) -> dict[str, Any]:
    [span] = captured.spans
    [event] = [event for event in span.events if event.name == DECISION_EVENT]
    return event.attributes


# -- OpenAI -----------------------------------------------------------------------------------


def test_a_denied_model_sends_no_request(openai_enabled: None, governed: CapturedEvents) -> None:
    api = FakeOpenAI()

    with pytest.raises(agentops.PolicyViolation) as raised:
        api.client().chat.completions.create(model="gpt-4", messages=MESSAGES, max_tokens=100)

    assert api.requests == []
    assert raised.value.rule == "no-gpt4"
    assert decision_of(governed)["details"]["policy_version"] == 4
    assert governed.spans[0].status == "blocked"


async def test_a_denied_model_sends_no_request_from_async_code_or_the_responses_api(
    openai_enabled: None, governed: CapturedEvents
) -> None:
    api = FakeOpenAI()

    with pytest.raises(agentops.PolicyViolation, match="no-gpt4"):
        await api.async_client().chat.completions.create(
            model="gpt-4", messages=MESSAGES, max_tokens=100
        )
    with pytest.raises(agentops.PolicyViolation, match="no-gpt4"):
        api.client().responses.create(model="gpt-4", input="hi", max_output_tokens=100)

    assert api.requests == []


def test_an_allowed_model_is_called(openai_enabled: None, governed: CapturedEvents) -> None:
    api = FakeOpenAI()

    api.client().chat.completions.create(model="gpt-4o", messages=MESSAGES, max_tokens=100)

    assert [request["model"] for request in api.requests] == ["gpt-4o"]
    assert governed.spans[0].status == "ok"


def test_max_tokens_is_read_from_the_request(
    openai_enabled: None, governed: CapturedEvents
) -> None:
    api = FakeOpenAI()
    client = api.client()

    with pytest.raises(agentops.PolicyViolation, match="Ask for at most 1000 tokens"):
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES, max_tokens=4000)
    with pytest.raises(agentops.PolicyViolation, match="Ask for at most 1000 tokens"):
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES)  # no maximum at all
    client.chat.completions.create(model="gpt-4o", messages=MESSAGES, max_completion_tokens=500)

    assert [request.get("max_completion_tokens") for request in api.requests] == [500]


def test_a_condition_on_the_messages_stops_the_request(
    openai_enabled: None, governed: CapturedEvents
) -> None:
    api = FakeOpenAI()
    leaking = [{"role": "user", "content": "My password is hunter2, remember it."}]

    with pytest.raises(agentops.PolicyViolation, match="no-secrets"):
        api.client().chat.completions.create(model="gpt-4o", messages=leaking, max_tokens=10)

    assert api.requests == []


def test_a_warning_on_a_model_is_recorded_and_the_request_sent(
    openai_enabled: None, governed: CapturedEvents
) -> None:
    api = FakeOpenAI()

    api.client().responses.create(model="o3-mini", input="hi", max_output_tokens=100)

    assert len(api.requests) == 1
    decision = decision_of(governed)
    assert (decision["outcome"], decision["rule"]) == ("warn", "watch-o3")


def test_the_issues_example_file_denies_gpt4_with_no_request_sent(openai_enabled: None) -> None:
    api = FakeOpenAI()
    with capture_events(policy_file=EXAMPLE_YAML):
        client = api.client()
        with pytest.raises(agentops.PolicyViolation) as raised:
            client.chat.completions.create(model="gpt-4", messages=MESSAGES)
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES)

    assert raised.value.rule == "no-gpt4"
    assert [request["model"] for request in api.requests] == ["gpt-4o"]


# -- LangChain --------------------------------------------------------------------------------


class FakeGpt4(GenericFakeChatModel):
    """A fake chat model that says it is gpt-4 (LangChain reads ``model`` for the model name)."""

    model: str = "gpt-4"


def test_a_denied_langchain_model_is_never_called(
    langchain_enabled: None, governed: CapturedEvents
) -> None:
    answers = iter([AIMessage("hello")])
    model = FakeGpt4(messages=answers)

    with pytest.raises(agentops.PolicyViolation) as raised:
        model.invoke("hi")

    assert raised.value.rule == "no-gpt4"
    assert next(answers).content == "hello"  # the model never took its answer
    [span] = governed.spans
    assert (span.kind, span.status) == ("llm", "blocked")


async def test_a_denied_langchain_model_is_never_called_in_async_code(
    langchain_enabled: None, governed: CapturedEvents
) -> None:
    answers = iter([AIMessage("hello")])

    with pytest.raises(agentops.PolicyViolation):
        await FakeGpt4(messages=answers).ainvoke("hi")

    assert next(answers).content == "hello"


def test_a_langchain_tools_arguments_meet_the_policys_conditions(
    langchain_enabled: None, governed: CapturedEvents
) -> None:
    sent: list[str] = []

    @tool
    def send_email(to: str, body: str) -> str:
        """Send an email."""
        sent.append(to)
        return "sent"

    assert send_email.invoke({"to": "ann@example.com", "body": "hi"}) == "sent"
    with pytest.raises(agentops.ApprovalDenied) as raised:
        send_email.invoke({"to": "bob@gmail.com", "body": "hi"})

    assert raised.value.rule == "external-mail"
    assert sent == ["ann@example.com"]
