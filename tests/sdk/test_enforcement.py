"""The enforcement spine: fixed stages in a fixed order, decisions on spans, waits, after-hooks."""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from decimal import Decimal
from typing import Any, ClassVar

import pytest

import agentops_sdk as agentops
from agentops_sdk.contract.decisions import DECISION_EVENT, Decision, StageName
from agentops_sdk.enforcement import CallInfo, CallResult, Stage, Wait
from agentops_sdk.errors import EnforcementUnavailable
from agentops_sdk.testing import CapturedEvents

DEADLINE = 5.0
"""Seconds any test waits for something that happens at once in a healthy SDK."""

Verdict = Decision | Wait | None


class Scripted(Stage):
    """A stage that notes each call in ``log`` and answers what ``decide`` says (None: allow)."""

    def __init__(
        self, log: list[str] | None = None, decide: Callable[[CallInfo], Verdict] | None = None
    ) -> None:
        self.log = [] if log is None else log
        self.decide = decide
        self.results: list[CallResult] = []

    def before(self, call: CallInfo) -> Verdict:
        self.log.append(self.name)
        return None if self.decide is None else self.decide(call)


class Controls(Scripted):
    name: ClassVar[StageName] = "controls"
    error = agentops.AgentKilled


class Policy(Scripted):
    name: ClassVar[StageName] = "policy"
    error = agentops.PolicyViolation


class Budget(Scripted):
    name: ClassVar[StageName] = "budget"
    error = agentops.BudgetExceeded

    def after(self, call: CallInfo, result: CallResult) -> None:
        self.results.append(result)


class Approval(Scripted):
    name: ClassVar[StageName] = "approval"
    error = agentops.ApprovalDenied

    def after(self, call: CallInfo, result: CallResult) -> None:
        self.results.append(result)


def crash(call: CallInfo) -> Verdict:
    raise RuntimeError("stage bug")


def waits_for(future: Future[Decision], timeout: float | None = None) -> Callable[..., Verdict]:
    """A ``decide`` that makes every call wait for ``future``."""
    return lambda call: Wait(future, timeout=timeout)


def deny(rule: str) -> Callable[[CallInfo], Verdict]:
    return lambda call: Decision("deny", rule=rule, reason=f"{call.name} refused by {rule}")


@agentops.tool
def send_email(to: str) -> str:
    ran.append(to)
    return f"sent to {to}"


@agentops.tool
async def asend_email(to: str) -> str:
    ran.append(to)
    return f"sent to {to}"


ran: list[str] = []


@pytest.fixture(autouse=True)
def nothing_ran_yet() -> None:
    ran.clear()


def decisions_of(events: CapturedEvents, name: str) -> list[dict[str, Any]]:
    """The decision records of the span called ``name``, as the hub will validate them."""
    return [record.model_dump() for record in events.span(name).decisions]


# -- order ----------------------------------------------------------------------------------


def test_stages_run_in_the_fixed_order_whatever_order_they_were_installed_in(
    agentops_events: CapturedEvents,
) -> None:
    log: list[str] = []
    enforcer = agentops_events.client.enforcer
    for stage in (Approval(log), Budget(log), Policy(log), Controls(log)):
        enforcer.install(stage)
    agentops_events.client.guards.add(lambda call: log.append("guards"))

    assert send_email("ada@example.com") == "sent to ada@example.com"

    assert log == ["controls", "policy", "budget", "approval", "guards"]
    assert decisions_of(agentops_events, "send_email") == []  # plain allows are not recorded


def test_a_denial_stops_the_call_and_every_later_stage_and_is_recorded_with_its_rule(
    agentops_events: CapturedEvents,
) -> None:
    log: list[str] = []
    enforcer = agentops_events.client.enforcer
    enforcer.install(Controls(log))
    enforcer.install(Policy(log, deny("no-email")))
    enforcer.install(Budget(log))
    agentops_events.client.guards.add(lambda call: log.append("guards"))

    with pytest.raises(agentops.PolicyViolation, match="send_email refused by no-email") as raised:
        send_email("ada@example.com")

    assert ran == []
    assert log == ["controls", "policy"]
    assert raised.value.rule == "no-email"
    assert raised.value.decision == Decision(
        "deny", stage="policy", rule="no-email", reason="send_email refused by no-email"
    )
    span = agentops_events.span("send_email")
    assert span.status == "blocked"
    assert decisions_of(agentops_events, "send_email") == [
        {
            "outcome": "deny",
            "stage": "policy",
            "rule": "no-email",
            "reason": "send_email refused by no-email",
            "details": {},
        }
    ]


def test_a_user_guards_refusal_is_recorded_as_the_guards_stages_decision(
    agentops_events: CapturedEvents,
) -> None:
    def no_email(call: CallInfo) -> None:
        raise agentops.PolicyViolation("no email today", rule="quiet-day")

    agentops_events.client.guards.add(no_email)

    with pytest.raises(agentops.PolicyViolation):
        send_email("ada@example.com")

    (decision,) = decisions_of(agentops_events, "send_email")
    assert (decision["outcome"], decision["stage"], decision["rule"]) == (
        "deny",
        "guards",
        "quiet-day",
    )


def test_a_warning_is_recorded_and_the_call_runs(agentops_events: CapturedEvents) -> None:
    warn = Decision("warn", rule="shadow-no-email", details={"policy_version": 3})
    agentops_events.client.enforcer.install(Policy(decide=lambda call: warn))

    assert send_email("ada@example.com") == "sent to ada@example.com"

    assert ran == ["ada@example.com"]
    assert agentops_events.span("send_email").status == "ok"
    assert decisions_of(agentops_events, "send_email") == [
        {
            "outcome": "warn",
            "stage": "policy",
            "rule": "shadow-no-email",
            "reason": None,
            "details": {"policy_version": 3},
        }
    ]


def test_a_required_approval_with_no_approval_stage_is_refused(
    agentops_events: CapturedEvents,
) -> None:
    ask = Decision("require_approval", rule="external-mail")
    agentops_events.client.enforcer.install(Policy(decide=lambda call: ask))

    with pytest.raises(
        agentops.ApprovalDenied, match="needs an approval, and none was given"
    ) as raised:
        send_email("ceo@elsewhere.com")

    assert ran == []
    assert raised.value.rule == "external-mail"
    assert [d["outcome"] for d in decisions_of(agentops_events, "send_email")] == [
        "require_approval",
        "deny",
    ]


def test_a_stage_taken_out_is_no_longer_consulted(agentops_events: CapturedEvents) -> None:
    enforcer = agentops_events.client.enforcer
    uninstall = enforcer.install(Controls(decide=deny("kill-all")))
    with pytest.raises(agentops.AgentKilled):
        send_email("a@example.com")

    uninstall()

    assert send_email("b@example.com") == "sent to b@example.com"
    assert enforcer.active is False


def test_a_second_stage_of_a_kind_and_user_guards_as_a_stage_are_refused(
    agentops_events: CapturedEvents,
) -> None:
    enforcer = agentops_events.client.enforcer
    enforcer.install(Controls())

    with pytest.raises(ValueError, match="installed already"):
        enforcer.install(Controls())

    class Guards(Scripted):
        name: ClassVar[StageName] = "guards"

    with pytest.raises(ValueError, match=r"client\.guards\.add"):
        enforcer.install(Guards())


def test_with_no_stage_and_no_guard_a_call_never_meets_the_enforcer(
    agentops_events: CapturedEvents,
) -> None:
    seen: list[object] = []

    @agentops.tool
    def look() -> None:
        seen.append(agentops.current_span().call)

    look()

    assert agentops_events.client.enforcer.active is False
    assert seen == [None]  # no CallInfo was even made


# -- failure modes ----------------------------------------------------------------------------


@pytest.mark.parametrize("stage", [Controls, Budget], ids=["controls", "budget"])
def test_a_crashing_stage_that_fails_closed_refuses_every_call_and_logs_once(
    agentops_events: CapturedEvents, caplog: pytest.LogCaptureFixture, stage: type[Scripted]
) -> None:
    agentops_events.client.enforcer.install(stage(decide=crash))

    with caplog.at_level(logging.ERROR, logger="agentops_sdk"):
        for to in ("a@example.com", "b@example.com", "c@example.com"):
            with pytest.raises(EnforcementUnavailable, match="stage failed") as raised:
                send_email(to)

    assert ran == []
    assert isinstance(raised.value, agentops.EnforcementError)
    assert isinstance(raised.value.__context__, RuntimeError)
    (record,) = [r for r in caplog.records if r.name == "agentops_sdk"]
    assert "the call is refused" in record.getMessage()
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], RuntimeError)
    spans = agentops_events.spans
    assert [span.status for span in spans] == ["blocked"] * 3
    assert [(d.outcome, d.stage) for d in spans[0].decisions] == [("deny", stage.name)]


def test_a_crashing_stage_that_fails_open_lets_the_call_go_ahead(
    agentops_events: CapturedEvents, caplog: pytest.LogCaptureFixture
) -> None:
    class LenientPolicy(Policy):
        fails_closed = False

    agentops_events.client.enforcer.install(LenientPolicy(decide=crash))

    with caplog.at_level(logging.ERROR, logger="agentops_sdk"):
        assert send_email("a@example.com") == "sent to a@example.com"

    assert "the call goes ahead" in caplog.records[0].getMessage()
    assert agentops_events.span("send_email").status == "ok"


def test_a_crashing_user_guard_lets_the_call_go_ahead_after_the_stages(
    agentops_events: CapturedEvents,
) -> None:
    log: list[str] = []
    agentops_events.client.enforcer.install(Controls(log))

    def buggy(call: CallInfo) -> None:
        raise ValueError("guard bug")

    agentops_events.client.guards.add(buggy)

    assert send_email("a@example.com") == "sent to a@example.com"
    assert log == ["controls"]


# -- waiting ----------------------------------------------------------------------------------


def run_in_thread(fn: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    """Start ``fn`` in a thread that records its result or exception in the returned list."""
    outcome: list[Any] = []

    def target() -> None:
        try:
            outcome.append(fn())
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    return thread, outcome


def test_a_sync_call_blocks_until_its_wait_is_settled_and_then_runs(
    agentops_events: CapturedEvents,
) -> None:
    decision: Future[Decision] = Future()
    asked = threading.Event()
    log: list[str] = []

    def ask(call: CallInfo) -> Wait:
        asked.set()
        return Wait(decision)

    agentops_events.client.enforcer.install(Approval(log, ask))
    agentops_events.client.guards.add(lambda call: log.append("guards"))

    thread, outcome = run_in_thread(lambda: send_email("ceo@example.com"))
    assert asked.wait(DEADLINE)
    assert ran == []
    assert thread.is_alive()  # blocked on the wait: nothing can run the body before it is settled
    decision.set_result(Decision("allow", rule="request-7", reason="fine by me"))
    thread.join(DEADLINE)

    assert outcome == ["sent to ceo@example.com"]
    assert ran == ["ceo@example.com"]
    assert log == ["approval", "guards"]  # the stages after the wait ran once it was settled
    (settled,) = agentops_events.span("send_email").decisions
    assert (settled.outcome, settled.stage, settled.rule) == ("allow", "approval", "request-7")
    assert settled.details["waited_ms"] >= 0


def test_a_sync_wait_settled_with_a_denial_refuses_with_the_waiting_stages_error(
    agentops_events: CapturedEvents,
) -> None:
    decision: Future[Decision] = Future()
    decision.set_result(Decision("deny", rule="request-8", reason="not to the CEO"))
    agentops_events.client.enforcer.install(Approval(decide=waits_for(decision)))

    with pytest.raises(agentops.ApprovalDenied, match="not to the CEO"):
        send_email("ceo@example.com")

    assert ran == []
    assert agentops_events.span("send_email").status == "blocked"


def test_a_wait_that_runs_out_of_time_takes_its_timeout_decision_and_withdraws_the_question(
    agentops_events: CapturedEvents,
) -> None:
    decision: Future[Decision] = Future()
    agentops_events.client.enforcer.install(Approval(decide=waits_for(decision, timeout=0.05)))

    with pytest.raises(agentops.ApprovalDenied, match="no decision came in time"):
        send_email("ceo@example.com")

    assert ran == []
    assert decision.cancelled()


async def test_an_async_call_awaits_its_wait_while_the_event_loop_serves_other_tasks(
    agentops_events: CapturedEvents,
) -> None:
    decision: Future[Decision] = Future()
    asked = asyncio.Event()
    ticks: list[int] = []

    def ask(call: CallInfo) -> Wait:
        asked.set()
        return Wait(decision)

    agentops_events.client.enforcer.install(Approval(decide=ask))
    call = asyncio.create_task(asend_email("ceo@example.com"))
    await asyncio.wait_for(asked.wait(), DEADLINE)
    for tick in range(3):  # the loop is free: this task runs while the call waits
        ticks.append(tick)
        await asyncio.sleep(0)
    assert not call.done()
    assert ran == []
    # Settled from another thread, as the hub link's thread does.
    threading.Thread(target=decision.set_result, args=(Decision("allow"),)).start()

    assert await asyncio.wait_for(call, DEADLINE) == "sent to ceo@example.com"
    assert ticks == [0, 1, 2]
    assert ran == ["ceo@example.com"]


async def test_an_async_wait_that_runs_out_of_time_refuses_the_call(
    agentops_events: CapturedEvents,
) -> None:
    decision: Future[Decision] = Future()
    agentops_events.client.enforcer.install(Approval(decide=waits_for(decision, timeout=0.05)))

    with pytest.raises(agentops.ApprovalDenied):
        await asend_email("ceo@example.com")

    assert ran == []
    assert decision.cancelled()


async def test_cancelling_an_async_call_that_waits_cancels_its_question(
    agentops_events: CapturedEvents,
) -> None:
    decision: Future[Decision] = Future()
    asked = asyncio.Event()

    def ask(call: CallInfo) -> Wait:
        asked.set()
        return Wait(decision)

    agentops_events.client.enforcer.install(Approval(decide=ask))
    call = asyncio.create_task(asend_email("ceo@example.com"))
    await asyncio.wait_for(asked.wait(), DEADLINE)

    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call

    assert decision.cancelled()
    assert ran == []
    assert agentops_events.span("asend_email").status == "cancelled"


def test_a_block_waits_like_a_decorated_call(agentops_events: CapturedEvents) -> None:
    decision: Future[Decision] = Future()
    decision.set_result(Decision("deny", reason="blocks need approval too"))
    agentops_events.client.enforcer.install(Approval(decide=waits_for(decision)))
    entered: list[str] = []

    with pytest.raises(agentops.ApprovalDenied), agentops.run("triage", input={"ticket": 7}):
        entered.append("triage")

    assert entered == []
    assert agentops_events.runs[0].status == "blocked"


# -- after the call -----------------------------------------------------------------------------


def test_after_hooks_see_the_usage_of_a_finished_llm_call(agentops_events: CapturedEvents) -> None:
    budget = Budget()
    agentops_events.client.enforcer.install(budget)

    @agentops.llm(model="gpt-4o-mini")
    def ask(prompt: str) -> dict[str, Any]:
        usage = {"prompt_tokens": 31, "completion_tokens": 9}
        return {"model": "gpt-4o-mini-2024-07-18", "usage": usage}

    ask("weather in Paris?")

    (result,) = budget.results
    assert (result.status, result.error) == ("ok", None)
    assert (result.model, result.input_tokens, result.output_tokens) == (
        "gpt-4o-mini-2024-07-18",
        31,
        9,
    )
    # Priced in the process with the pricing extra: 31 tokens at $0.15 and 9 at $0.60 a million.
    priced = importlib.util.find_spec("genai_prices") is not None
    assert result.cost == (Decimal("0.00000465") + Decimal("0.0000054") if priced else None)
    assert result.duration_ns > 0


def test_after_hooks_run_for_the_stages_a_refused_call_passed_and_not_the_others(
    agentops_events: CapturedEvents,
) -> None:
    budget = Budget()
    approval = Approval(decide=lambda call: Decision("deny", reason="no"))
    agentops_events.client.enforcer.install(budget)
    agentops_events.client.enforcer.install(approval)

    with pytest.raises(agentops.ApprovalDenied) as raised:
        send_email("ceo@example.com")

    (budget_saw,) = budget.results  # its reservation can be given back
    assert (budget_saw.status, budget_saw.error) == ("blocked", raised.value)
    assert len(approval.results) == 1


def test_a_failing_after_hook_is_logged_and_changes_nothing(
    agentops_events: CapturedEvents, caplog: pytest.LogCaptureFixture
) -> None:
    class BrokenBudget(Budget):
        def after(self, call: CallInfo, result: CallResult) -> None:
            raise RuntimeError("ledger bug")

    agentops_events.client.enforcer.install(BrokenBudget())

    with caplog.at_level(logging.ERROR, logger="agentops_sdk"):
        assert send_email("a@example.com") == "sent to a@example.com"

    assert "failed after send_email" in caplog.records[0].getMessage()
    assert agentops_events.span("send_email").status == "ok"


# -- on the wire ----------------------------------------------------------------------------------


def test_decisions_travel_as_span_events_in_the_wire_form(agentops_events: CapturedEvents) -> None:
    agentops_events.client.enforcer.install(
        Controls(decide=lambda call: Decision("deny", rule="ctl-1", details={"scope": "agent"}))
    )

    with pytest.raises(agentops.AgentKilled):
        send_email("a@example.com")

    (span,) = [event for event in agentops_events.events if event["type"] == "span"]
    (event,) = span["events"]
    assert event["name"] == DECISION_EVENT
    assert event["attributes"] == {
        "outcome": "deny",
        "stage": "controls",
        "rule": "ctl-1",
        "reason": None,
        "details": {"scope": "agent"},
    }


def test_an_unhashable_guard_that_crashes_is_logged_and_the_call_goes_ahead(
    agentops_events: CapturedEvents, caplog: pytest.LogCaptureFixture
) -> None:
    class Unhashable:
        __hash__ = None  # type: ignore[assignment]

        def __call__(self, call: CallInfo) -> None:
            raise ValueError("guard bug")

    agentops_events.client.guards.add(Unhashable())

    with caplog.at_level(logging.ERROR, logger="agentops_sdk"):
        assert send_email("a@example.com") == "sent to a@example.com"
        assert send_email("b@example.com") == "sent to b@example.com"

    assert len([r for r in caplog.records if "failed; the call goes ahead" in r.getMessage()]) == 1
