"""The guard chain: every call passes it before its body runs, and a guard can stop the call."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

import agentops_sdk as agentops
import agentops_sdk.client
from agentops_sdk import PolicyViolation
from agentops_sdk.guards import CallInfo
from agentops_sdk.testing import CapturedEvents, capture_events
from tests.sdk.test_decorators import FUNCTION_KINDS, drive


class Recorder:
    """A guard that remembers what it saw and optionally refuses calls named in ``deny``."""

    def __init__(self, *deny: str, label: str = "guard", log: list[str] | None = None) -> None:
        self.deny = set(deny)
        self.label = label
        self.log = [] if log is None else log
        self.calls: list[CallInfo] = []

    def __call__(self, call: CallInfo) -> None:
        self.calls.append(call)
        self.log.append(self.label)
        if call.name in self.deny:
            raise agentops.PolicyViolation(f"{call.name} is not allowed", rule="no-" + call.name)


def make_guarded(function_kind: str, ran: list[str]) -> Callable[..., Any]:
    """``delete_user(user)`` of the given kind, noting in ``ran`` when its body runs."""

    def delete_user(user: str) -> str:
        ran.append(user)
        return user

    async def adelete_user(user: str) -> str:
        ran.append(user)
        return user

    def gdelete_user(user: str) -> Iterator[str]:
        ran.append(user)
        yield user

    async def agdelete_user(user: str) -> AsyncIterator[str]:
        ran.append(user)
        yield user

    functions = [delete_user, adelete_user, gdelete_user, agdelete_user]
    return agentops.tool(name="delete_user")(functions[FUNCTION_KINDS.index(function_kind)])


# -- stopping a call -------------------------------------------------------------------------


@pytest.mark.parametrize("function_kind", FUNCTION_KINDS)
async def test_tool_call_denied_by_policy_raises_and_records_blocked_span(
    agentops_events: CapturedEvents, function_kind: str
) -> None:
    agentops_events.client.guards.add(Recorder("delete_user"))
    ran: list[str] = []
    delete_user = make_guarded(function_kind, ran)

    with pytest.raises(agentops.PolicyViolation, match="delete_user is not allowed") as raised:
        await drive(function_kind, delete_user, "ada")

    assert ran == []
    assert raised.value.rule == "no-delete_user"
    (span,) = agentops_events.spans
    (run,) = agentops_events.runs
    assert span.status == "blocked"
    assert span.error is not None
    assert span.error.type == "agentops_sdk.errors.PolicyViolation"
    assert span.error.message == "delete_user is not allowed"
    assert span.input == {"user": "ada"}
    assert span.output is None
    assert (run.status, run.error_count) == ("blocked", 0)


@pytest.mark.parametrize("function_kind", FUNCTION_KINDS)
async def test_allowed_call_of_every_kind_passes_the_guard_and_runs(
    agentops_events: CapturedEvents, function_kind: str
) -> None:
    guard = Recorder()
    agentops_events.client.guards.add(guard)
    ran: list[str] = []

    result = await drive(function_kind, make_guarded(function_kind, ran), "ada")

    assert result in ("ada", ["ada"])
    assert ran == ["ada"]
    assert [call.name for call in guard.calls] == ["delete_user"]
    assert agentops_events.spans[0].status == "ok"


def test_the_guards_own_error_object_reaches_the_caller(agentops_events: CapturedEvents) -> None:
    error = agentops.BudgetExceeded("monthly budget spent", rule="budget-1")

    def over_budget(call: CallInfo) -> None:
        raise error

    agentops_events.client.guards.add(over_budget)

    @agentops.llm
    def ask(prompt: str) -> str:
        return "never"

    with pytest.raises(agentops.BudgetExceeded) as raised:
        ask("hi")

    assert raised.value is error
    assert agentops_events.spans[0].status == "blocked"


def test_blocked_tool_inside_an_agent_blocks_the_agent_unless_it_handles_the_error(
    agentops_events: CapturedEvents,
) -> None:
    agentops_events.client.guards.add(Recorder("send_email"))

    @agentops.tool
    def send_email(to: str) -> None:
        raise AssertionError("never runs")

    @agentops.agent
    def careful() -> str:
        try:
            send_email("ceo@example.com")
        except agentops.PolicyViolation as exc:
            return f"skipped: {exc.rule}"
        return "sent"

    assert careful() == "skipped: no-send_email"

    assert agentops_events.span("send_email").status == "blocked"
    assert agentops_events.span("careful").status == "ok"


# -- what a guard sees -----------------------------------------------------------------------


def test_guard_sees_kind_name_agent_environment_tags_and_named_arguments() -> None:
    guard = Recorder()

    @agentops.tool(name="refund", tags=["payments"])
    def issue_refund(order: int, amount: float, *rest: Any, currency: str = "EUR") -> None:
        return None

    @agentops.agent(name="support", tags=["beta"])
    def support() -> None:
        issue_refund(42, 9.5, "extra", currency="USD")

    with capture_events(environment="staging", tags=("global",)) as events:
        events.client.guards.add(guard)
        support()

    agent_call, tool_call = guard.calls
    assert (agent_call.kind, agent_call.name, agent_call.agent) == ("agent", "support", "support")
    assert (tool_call.kind, tool_call.name, tool_call.agent) == ("tool", "refund", "support")
    assert tool_call.environment == "staging"
    assert agent_call.tags == ("beta", "global")
    assert tool_call.tags == ("payments", "beta", "global")
    assert tool_call.arguments == {
        "order": 42,
        "amount": 9.5,
        "*args": ("extra",),
        "currency": "USD",
    }
    assert tool_call.model is None


def test_guard_sees_the_configured_agent_for_a_call_outside_any_agent() -> None:
    guard = Recorder()

    @agentops.tool
    def search(query: str) -> None:
        return None

    with capture_events(agent="helpdesk") as events:
        events.client.guards.add(guard)
        search("x")

    (call,) = guard.calls
    assert (call.agent, call.environment) == ("helpdesk", "test")


def test_guard_sees_method_arguments_without_self_and_the_model_of_an_llm_call(
    agentops_events: CapturedEvents,
) -> None:
    guard = Recorder()
    agentops_events.client.guards.add(guard)

    class Bot:
        @agentops.llm(model="gpt-4o")
        def ask(self, prompt: str) -> str:
            return prompt

    Bot().ask("hello")

    (call,) = guard.calls
    assert call.arguments == {"prompt": "hello"}
    assert (call.kind, call.model) == ("llm", "gpt-4o")


def test_guard_sees_the_original_arguments_not_a_snapshot(agentops_events: CapturedEvents) -> None:
    guard = Recorder()
    agentops_events.client.guards.add(guard)
    payload = {"rows": [1, 2]}

    @agentops.tool
    def save(data: dict[str, Any]) -> None:
        return None

    save(payload)

    (call,) = guard.calls
    assert call.arguments["data"] is payload


# -- the chain -------------------------------------------------------------------------------


def test_guards_run_in_the_order_added_and_the_first_refusal_wins(
    agentops_events: CapturedEvents,
) -> None:
    log: list[str] = []
    guards = agentops_events.client.guards
    guards.add(Recorder(label="first", log=log))
    guards.add(Recorder("wipe", label="second", log=log))
    guards.add(Recorder("wipe", label="third", log=log))

    @agentops.tool
    def wipe() -> None:
        return None

    @agentops.tool
    def read() -> None:
        return None

    read()
    with pytest.raises(agentops.PolicyViolation):
        wipe()

    assert log == ["first", "second", "third", "first", "second"]


def test_removed_guard_is_no_longer_consulted(agentops_events: CapturedEvents) -> None:
    guard = Recorder("wipe")
    remove = agentops_events.client.guards.add(guard)

    @agentops.tool
    def wipe() -> str:
        return "wiped"

    with pytest.raises(agentops.PolicyViolation):
        wipe()
    remove()

    assert wipe() == "wiped"
    assert len(guard.calls) == 1
    assert agentops_events.client.guards.active is False
    assert [span.status for span in agentops_events.spans] == ["blocked", "ok"]


def test_removing_one_guard_keeps_the_others(agentops_events: CapturedEvents) -> None:
    first, second = Recorder(), Recorder("wipe")
    guards = agentops_events.client.guards
    remove_first = guards.add(first)
    guards.add(second)

    remove_first()

    @agentops.tool
    def wipe() -> None:
        return None

    with pytest.raises(agentops.PolicyViolation):
        wipe()
    assert (len(first.calls), len(second.calls)) == (0, 1)
    assert guards.active is True


def test_buggy_guard_is_logged_and_the_call_goes_ahead(
    agentops_events: CapturedEvents, caplog: pytest.LogCaptureFixture
) -> None:
    def buggy(call: CallInfo) -> None:
        raise ValueError("guard bug")

    after = Recorder()
    agentops_events.client.guards.add(buggy)
    agentops_events.client.guards.add(after)

    @agentops.tool
    def search(query: str) -> str:
        return query

    with caplog.at_level(logging.ERROR, logger="agentops_sdk"):
        assert search("cats") == "cats"

    (record,) = [r for r in caplog.records if r.name == "agentops_sdk"]
    assert record.levelno == logging.ERROR
    assert "buggy" in record.getMessage()
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], ValueError)
    assert len(after.calls) == 1
    assert agentops_events.spans[0].status == "ok"


async def test_buggy_async_guard_is_logged_and_the_async_call_goes_ahead(
    agentops_events: CapturedEvents, caplog: pytest.LogCaptureFixture
) -> None:
    class BuggyApproval:
        def __call__(self, call: CallInfo) -> None:
            raise AssertionError("the sync path must not be used for async calls")

        async def acheck(self, call: CallInfo) -> None:
            raise ValueError("approval service bug")

    agentops_events.client.guards.add(BuggyApproval())

    @agentops.tool
    async def search(query: str) -> str:
        return query

    with caplog.at_level(logging.ERROR, logger="agentops_sdk"):
        assert await search("cats") == "cats"

    assert [r.exc_info[1].args for r in caplog.records if r.exc_info] == [("approval service bug",)]


# -- async guards ----------------------------------------------------------------------------


class Approval:
    """Waits (asynchronously) for a decision in async calls; decides at once in sync ones."""

    def __init__(self, decision: asyncio.Future[bool] | None = None) -> None:
        self.decision = decision
        self.paths: list[str] = []

    def __call__(self, call: CallInfo) -> None:
        self.paths.append("sync")

    async def acheck(self, call: CallInfo) -> None:
        self.paths.append("async")
        assert self.decision is not None
        if not await self.decision:
            raise agentops.ApprovalDenied(f"{call.name} was refused", rule="approval")


@pytest.mark.parametrize("function_kind", ["async", "async_generator"])
async def test_async_functions_await_a_guards_acheck(
    agentops_events: CapturedEvents, function_kind: str
) -> None:
    decision: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
    approval = Approval(decision)
    agentops_events.client.guards.add(approval)
    ran: list[str] = []

    call = asyncio.create_task(drive(function_kind, make_guarded(function_kind, ran), "ada"))
    await asyncio.sleep(0)
    assert not call.done()
    assert ran == []  # waiting for the decision, the body has not started
    decision.set_result(False)

    with pytest.raises(agentops.ApprovalDenied, match="delete_user was refused"):
        await asyncio.wait_for(call, timeout=5)
    assert ran == []
    assert approval.paths == ["async"]
    assert agentops_events.spans[0].status == "blocked"


@pytest.mark.parametrize("function_kind", ["sync", "generator"])
async def test_sync_functions_use_the_guards_plain_call(
    agentops_events: CapturedEvents, function_kind: str
) -> None:
    approval = Approval()
    agentops_events.client.guards.add(approval)
    ran: list[str] = []

    await drive(function_kind, make_guarded(function_kind, ran), "ada")

    assert ran == ["ada"]
    assert approval.paths == ["sync"]


async def test_async_call_uses_plain_guards_that_offer_no_acheck(
    agentops_events: CapturedEvents,
) -> None:
    agentops_events.client.guards.add(Recorder("delete_user"))

    with pytest.raises(agentops.PolicyViolation):
        await make_guarded("async", [])("ada")


# -- run() and span() ------------------------------------------------------------------------


def test_run_and_span_blocks_pass_the_guard_chain(agentops_events: CapturedEvents) -> None:
    guard = Recorder("rerank")
    agentops_events.client.guards.add(guard)
    ran: list[str] = []

    def triage() -> None:
        with agentops.run("triage", input={"ticket": 7}):
            ran.append("triage")
            with agentops.span("rerank", kind="tool"):
                ran.append("rerank")

    with pytest.raises(agentops.PolicyViolation):
        triage()

    assert ran == ["triage"]
    run_call, span_call = guard.calls
    assert (run_call.kind, run_call.name, run_call.arguments) == (
        "agent",
        "triage",
        {"input": {"ticket": 7}},
    )
    assert (span_call.kind, span_call.name, span_call.agent) == ("tool", "rerank", "triage")
    assert agentops_events.span("rerank").status == "blocked"
    assert agentops_events.runs[0].status == "blocked"


async def test_async_run_block_awaits_the_guards_acheck(agentops_events: CapturedEvents) -> None:
    decision: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
    decision.set_result(False)
    approval = Approval(decision)
    agentops_events.client.guards.add(approval)
    ran: list[str] = []

    async def triage() -> None:
        async with agentops.run("triage"):
            ran.append("triage")

    with pytest.raises(agentops.ApprovalDenied):
        await triage()

    assert ran == []
    assert approval.paths == ["async"]
    (run,) = agentops_events.runs
    assert run.status == "blocked"
    assert run.error is not None
    assert run.error.type == "agentops_sdk.errors.ApprovalDenied"


async def test_a_coroutine_guard_is_awaited_for_async_calls(
    agentops_events: CapturedEvents,
) -> None:
    async def deny_all(call: CallInfo) -> None:
        raise PolicyViolation(f"{call.name} denied", rule="async-rule")

    client = agentops_sdk.client.current
    assert client is not None
    remove = client.guards.add(deny_all)
    ran = []

    @agentops.tool
    async def fetch() -> None:
        ran.append(True)

    try:
        with pytest.raises(PolicyViolation, match="fetch denied"):
            await fetch()
    finally:
        remove()
    assert ran == []
    assert agentops_events.span("fetch").status == "blocked"


def test_a_coroutine_guard_cannot_check_a_sync_call_and_says_so(
    agentops_events: CapturedEvents, caplog: pytest.LogCaptureFixture
) -> None:
    async def deny_all(call: CallInfo) -> None:
        raise PolicyViolation("never reached")

    client = agentops_sdk.client.current
    assert client is not None
    remove = client.guards.add(deny_all)

    @agentops.tool
    def fetch() -> str:
        return "ran"

    try:
        with caplog.at_level(logging.ERROR, logger="agentops_sdk"):
            assert fetch() == "ran"
    finally:
        remove()
    assert any("is async and cannot check the sync call fetch" in r.message for r in caplog.records)
