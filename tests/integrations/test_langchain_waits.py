"""The LangChain handler honours stages that wait: a sync run blocks, an async run awaits."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from typing import ClassVar

import pytest
from langchain_core.callbacks import manager as callback_manager
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.runnables import RunnableLambda
from langchain_core.tools import tool

import agentops_sdk as agentops
from agentops_sdk import integrations
from agentops_sdk.contract.decisions import Decision, StageName
from agentops_sdk.enforcement import CallInfo, Stage, Wait
from agentops_sdk.testing import CapturedEvents

pytestmark = pytest.mark.extras

DEADLINE = 5.0

ran: list[str] = []


@tool
def deploy(target: str) -> str:
    """Deploy to a target."""
    ran.append(target)
    return f"deployed to {target}"


@tool
async def adeploy(target: str) -> str:
    """Deploy to a target, asynchronously."""
    ran.append(target)
    return f"deployed to {target}"


class Approval(Stage):
    """Makes every call of ``kind`` wait for ``decision``; ``asked`` is set when one does."""

    name: ClassVar[StageName] = "approval"
    error = agentops.ApprovalDenied

    def __init__(self, decision: Future[Decision], kind: str = "tool") -> None:
        self.decision = decision
        self.kind = kind
        self.asked = threading.Event()

    def before(self, call: CallInfo) -> Wait | None:
        if call.kind != self.kind:
            return None
        self.asked.set()
        return Wait(self.decision)


@pytest.fixture(autouse=True)
def langchain() -> Iterator[None]:
    ran.clear()
    assert integrations.enable("langchain")
    yield
    integrations.disable("langchain")


def approve_later(decision: Future[Decision], outcome: Decision) -> None:
    """Settle ``decision`` from another thread, as the hub link's thread does."""
    threading.Thread(target=decision.set_result, args=(outcome,)).start()


# -- sync runs block --------------------------------------------------------------------------


def test_a_sync_tool_call_blocks_on_its_wait_and_runs_once_approved(
    agentops_events: CapturedEvents,
) -> None:
    decision: Future[Decision] = Future()
    approval = Approval(decision)
    agentops_events.client.enforcer.install(approval)
    outcome: list[str] = []
    caller = threading.Thread(target=lambda: outcome.append(deploy.invoke({"target": "prod"})))
    caller.start()

    assert approval.asked.wait(DEADLINE)
    assert ran == []
    approve_later(decision, Decision("allow", rule="request-1"))
    caller.join(DEADLINE)

    assert outcome == ["deployed to prod"]
    assert ran == ["prod"]
    (settled,) = agentops_events.span("deploy").decisions
    assert (settled.outcome, settled.rule) == ("allow", "request-1")


def test_a_sync_tool_call_refused_after_its_wait_never_runs(
    agentops_events: CapturedEvents,
) -> None:
    decision: Future[Decision] = Future()
    decision.set_result(Decision("deny", reason="not on a Friday"))
    agentops_events.client.enforcer.install(Approval(decision))
    agent = RunnableLambda(lambda target: deploy.invoke({"target": target}), name="release")

    with pytest.raises(agentops.ApprovalDenied, match="not on a Friday"):
        agent.invoke("prod")

    assert ran == []
    assert agentops_events.span("deploy").status == "blocked"


# -- async runs await ---------------------------------------------------------------------------


async def test_an_async_tool_call_awaits_its_wait_while_the_event_loop_runs_other_tasks(
    agentops_events: CapturedEvents,
) -> None:
    decision: Future[Decision] = Future()
    approval = Approval(decision)
    agentops_events.client.enforcer.install(approval)
    call = asyncio.create_task(adeploy.ainvoke({"target": "prod"}))
    ticks = 0
    while not approval.asked.is_set() and ticks < 1000:
        ticks += 1
        await asyncio.sleep(0)
    assert approval.asked.is_set()

    for _ in range(3):  # the loop is not held: this task keeps running while the call waits
        ticks += 1
        await asyncio.sleep(0)
    assert not call.done()
    assert ran == []
    approve_later(decision, Decision("allow", rule="request-2"))

    assert await asyncio.wait_for(call, DEADLINE) == "deployed to prod"
    assert ran == ["prod"]
    assert agentops_events.span("adeploy").status == "ok"


async def test_an_async_tool_call_refused_after_its_wait_never_runs(
    agentops_events: CapturedEvents,
) -> None:
    decision: Future[Decision] = Future()
    approval = Approval(decision)
    agentops_events.client.enforcer.install(approval)
    agent = RunnableLambda(adeploy.ainvoke, name="release")
    call = asyncio.create_task(agent.ainvoke({"target": "prod"}))
    while not approval.asked.is_set():
        await asyncio.sleep(0)
    approve_later(decision, Decision("deny", reason="change freeze"))

    with pytest.raises(agentops.ApprovalDenied, match="change freeze"):
        await asyncio.wait_for(call, DEADLINE)

    assert ran == []
    assert agentops_events.span("adeploy").status == "blocked"
    assert agentops_events.span("release").status == "blocked"


async def test_an_async_model_call_awaits_its_wait_before_the_model_is_called(
    agentops_events: CapturedEvents,
) -> None:
    decision: Future[Decision] = Future()
    approval = Approval(decision, kind="llm")
    agentops_events.client.enforcer.install(approval)
    model = FakeListChatModel(responses=["hello"])
    call = asyncio.create_task(model.ainvoke("hi"))
    while not approval.asked.is_set():
        await asyncio.sleep(0)
    assert not call.done()
    approve_later(decision, Decision("deny", reason="no model calls now"))

    with pytest.raises(agentops.ApprovalDenied):
        await asyncio.wait_for(call, DEADLINE)

    (span,) = agentops_events.spans
    assert (span.kind, span.status, span.output) == ("llm", "blocked", None)


async def test_an_async_guard_checks_an_async_langchain_tool_call(
    agentops_events: CapturedEvents,
) -> None:
    seen: list[str] = []

    class AsyncOnly:
        def __call__(self, call: CallInfo) -> None:
            raise AssertionError("an async run uses acheck")

        async def acheck(self, call: CallInfo) -> None:
            seen.append(call.name)

    agentops_events.client.guards.add(AsyncOnly())

    assert await adeploy.ainvoke({"target": "staging"}) == "deployed to staging"
    assert seen == ["adeploy"]


def test_disabling_the_integration_restores_langchains_async_dispatch() -> None:
    wrapped = callback_manager.ahandle_event

    integrations.disable("langchain")

    assert callback_manager.ahandle_event is not wrapped
    assert callback_manager.ahandle_event.__module__ == "langchain_core.callbacks.manager"
