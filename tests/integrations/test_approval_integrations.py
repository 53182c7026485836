"""Approvals on framework calls: a LangChain tool runs with a reviewer's edits or returns a
rejection as its result, and an OpenAI request approved with edits is sent edited. The hub is
the SDK tests' fake hub on 127.0.0.1 (:class:`~tests.sdk.fake_approvals.ApprovalDesk`); the
model is the real ``openai`` client over a mocked transport."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import ToolMessage
from langchain_core.tools import tool

import agentops_sdk as agentops
from agentops_sdk import integrations
from agentops_sdk.enforcement.hub_stream import HubStream
from agentops_sdk.testing import CapturedEvents, capture_events
from tests.integrations.test_openai import MESSAGES, FakeOpenAI
from tests.sdk.fake_approvals import ApprovalDesk
from tests.sdk.fake_hub import FakeHub

pytestmark = pytest.mark.extras

KEY = "ak_integrations"
DEADLINE = 10.0

sent: list[tuple[str, str]] = []


@tool
def send_email(to: str, body: str) -> str:
    """Send an email."""
    sent.append((to, body))
    return f"sent to {to}"


@tool
async def asend_email(to: str, body: str) -> str:
    """Send an email, asynchronously."""
    sent.append((to, body))
    return f"sent to {to}"


def policy(on_reject: str) -> dict[str, Any]:
    """Mail outside example.com and long answers from a model need a reviewer."""
    return {
        "version": 1,
        "rules": [
            {
                "id": "external-mail",
                "match": {"kind": "tool", "name": ["send_email", "asend_email"]},
                "when": {"argument": "to", "not_regex": r"@example\.com$"},
                "outcome": "require_approval",
                "approval": {"on_reject": on_reject},
            },
            {
                "id": "long-answers",
                "match": {"kind": "llm"},
                "limit": {"max_tokens": 100},
                "outcome": "require_approval",
            },
        ],
    }


@pytest.fixture
def hub() -> Iterator[FakeHub]:
    server = FakeHub().start()
    yield server
    server.stop()


@pytest.fixture
def desk(hub: FakeHub) -> ApprovalDesk:
    return hub.approvals


@pytest.fixture
def connect(hub: FakeHub, tmp_path: Path) -> Iterator[Callable[..., CapturedEvents]]:
    """``connect(on_reject=...)``: a client of the hub under :func:`policy`, LangChain and
    OpenAI instrumented."""
    sent.clear()
    assert integrations.enable("langchain")
    assert integrations.enable("openai")
    opened: list[Any] = []

    def start(on_reject: str = "raise") -> CapturedEvents:
        path = tmp_path / "policy.json"
        path.write_text(json.dumps(policy(on_reject)))
        source = HubStream(hub.url, KEY, poll_interval=0.2, retry_delay=0.05, max_retry_delay=0.2)
        context = capture_events(
            hub_source=source,
            hub_url=hub.url,
            api_key=KEY,
            spool_dir=tmp_path / "spool",
            policy_file=path,
        )
        opened.append(context)
        return context.__enter__()

    yield start
    for context in reversed(opened):
        context.__exit__(None, None, None)
    integrations.disable("openai")
    integrations.disable("langchain")


def in_thread(call: Callable[[], Any]) -> Callable[[], Any]:
    """Run ``call`` in a thread; the returned function waits for its result (or exception)."""
    outcome: list[Any] = []

    def target() -> None:
        try:
            outcome.append(call())
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=target)
    thread.start()

    def result() -> Any:
        thread.join(DEADLINE)
        assert not thread.is_alive()
        (value,) = outcome
        return value

    return result


async def pending_soon(desk: ApprovalDesk) -> Any:
    """The one pending request, awaited without blocking the event loop."""
    async with asyncio.timeout(DEADLINE):
        while not desk.pending():
            await asyncio.sleep(0.01)
    (request,) = desk.pending()
    return request


# -- LangChain tools ----------------------------------------------------------------------------


def test_a_langchain_tool_runs_with_the_reviewers_edits(
    connect: Callable[..., CapturedEvents], desk: ApprovalDesk
) -> None:
    events = connect()
    given = {"to": "bob@other.org", "body": "draft"}
    result = in_thread(lambda: send_email.invoke(given))
    request = desk.one_pending()
    assert request.arguments == given

    desk.decide(request.id, "approve", edited_arguments={"body": "reviewed text"})

    assert result() == "sent to bob@other.org"
    assert sent == [("bob@other.org", "reviewed text")], "once, as edited"
    assert given == {"to": "bob@other.org", "body": "draft"}, "the caller's dict is untouched"
    [decision] = [d for d in events.span("send_email").decisions if d.stage == "approval"]
    assert decision.details["edited"] is True
    assert len(desk.claims) == 1


async def test_an_async_langchain_tool_runs_with_the_reviewers_edits(
    connect: Callable[..., CapturedEvents], desk: ApprovalDesk
) -> None:
    connect()
    call = asyncio.create_task(asend_email.ainvoke({"to": "bob@other.org", "body": "draft"}))
    request = await pending_soon(desk)

    desk.decide(request.id, "approve", edited_arguments={"to": "team@other.org"})

    assert await asyncio.wait_for(call, DEADLINE) == "sent to team@other.org"
    assert sent == [("team@other.org", "draft")]


def test_a_rejection_returned_as_result_is_the_tool_message_the_model_reads(
    connect: Callable[..., CapturedEvents], desk: ApprovalDesk
) -> None:
    events = connect(on_reject="result")
    tool_call = {
        "name": "send_email",
        "args": {"to": "bob@other.org", "body": "hi"},
        "id": "call_7",
        "type": "tool_call",
    }
    result = in_thread(lambda: send_email.invoke(tool_call))

    desk.decide(desk.one_pending().id, "reject", comment="ask the customer first")

    message = result()
    assert isinstance(message, ToolMessage)
    assert (message.tool_call_id, message.name, message.status) == (
        "call_7",
        "send_email",
        "error",
    )
    assert "ask the customer first" in str(message.content)
    assert sent == []
    assert events.span("send_email").status == "blocked"


async def test_an_async_tool_returns_a_rejection_as_its_text(
    connect: Callable[..., CapturedEvents], desk: ApprovalDesk
) -> None:
    connect(on_reject="result")
    call = asyncio.create_task(asend_email.ainvoke({"to": "bob@other.org", "body": "hi"}))

    desk.decide((await pending_soon(desk)).id, "reject", comment="not today")

    text = await asyncio.wait_for(call, DEADLINE)
    assert isinstance(text, str)
    assert "not today" in text
    assert sent == []


def test_a_rejection_the_rule_raises_still_raises(
    connect: Callable[..., CapturedEvents], desk: ApprovalDesk
) -> None:
    connect()
    result = in_thread(lambda: send_email.invoke({"to": "bob@other.org", "body": "hi"}))

    desk.decide(desk.one_pending().id, "reject", comment="no")

    refused = result()
    assert isinstance(refused, agentops.ApprovalDenied)
    assert sent == []


# -- OpenAI ------------------------------------------------------------------------------------


def test_an_openai_request_approved_with_edits_is_sent_edited(
    connect: Callable[..., CapturedEvents], desk: ApprovalDesk
) -> None:
    events = connect()
    api = FakeOpenAI()
    client = api.client()
    result = in_thread(
        lambda: client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, max_tokens=500
        )
    )
    request = desk.one_pending()
    assert request.rule == "long-answers"
    assert api.requests == [], "nothing is sent before the reviewer answers"

    desk.decide(request.id, "approve", edited_arguments={"max_tokens": 80})

    completion = result()
    assert completion.choices[0].message.content
    [body] = api.requests
    assert (body["model"], body["max_tokens"], body["messages"]) == ("gpt-4o-mini", 80, MESSAGES)
    [span] = [s for s in events.spans if s.kind == "llm"]
    assert span.status == "ok"


async def test_an_async_openai_request_approved_with_edits_is_sent_edited(
    connect: Callable[..., CapturedEvents], desk: ApprovalDesk
) -> None:
    connect()
    api = FakeOpenAI()
    client = api.async_client()
    call = asyncio.create_task(
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=500)
    )
    request = await pending_soon(desk)

    desk.decide(request.id, "approve", edited_arguments={"max_tokens": 60})

    await asyncio.wait_for(call, DEADLINE)
    [body] = api.requests
    assert body["max_tokens"] == 60
