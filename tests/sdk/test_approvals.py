"""Human approvals in the SDK: a call a rule says needs approval asks the hub and waits for a
reviewer, sync calls blocking and async ones awaiting; what the reviewer answers decides whether
(and with which arguments) it runs, at most once.

The hub is a real HTTP server on 127.0.0.1 (:class:`~tests.sdk.fake_hub.FakeHub`): its approval
endpoints (:class:`~tests.sdk.fake_approvals.ApprovalDesk`) keep one request per key, push each
decision on the event stream and refuse a second claim with ``409 approval_claimed``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

import agentops_sdk as agentops
from agentops_sdk.contract.approvals import TOPIC, approval_key
from agentops_sdk.enforcement import approvals
from agentops_sdk.enforcement.hub_stream import HubStream
from agentops_sdk.testing import CapturedEvents, capture_events
from tests.sdk.fake_approvals import ApprovalDesk
from tests.sdk.fake_hub import FakeHub, free_port

KEY = "ak_approvals"
DEADLINE = 10.0
REPO = Path(__file__).resolve().parents[2]

ran: list[tuple[str, str]] = []


@agentops.tool
def send_email(to: str, body: str = "hello") -> str:
    ran.append((to, body))
    return f"sent to {to}"


@agentops.tool
async def asend_email(to: str, body: str = "hello") -> str:
    ran.append((to, body))
    return f"sent to {to}"


@agentops.tool
def send_each(to: str, bodies: list[str]) -> Iterator[str]:
    for body in bodies:
        ran.append((to, body))
        yield body


class Unfreezable:
    """An argument with no JSON form."""


@agentops.tool
def send_object(to: str, attachment: object) -> str:
    ran.append((to, type(attachment).__name__))
    return "sent"


@pytest.fixture(autouse=True)
def nothing_ran_yet() -> None:
    ran.clear()


def policy(rules: tuple[dict[str, Any], ...] = (), **terms: Any) -> dict[str, Any]:
    """Mail outside example.com needs approval (on ``terms``); a body with a password is denied;
    then ``rules``."""
    approval_rule: dict[str, Any] = {
        "id": "external-mail",
        "match": {
            "kind": "tool",
            "name": ["send_email", "asend_email", "send_object", "send_each"],
        },
        "when": {"argument": "to", "not_regex": r"@example\.com$"},
        "outcome": "require_approval",
    }
    if terms:
        approval_rule["approval"] = terms
    return {
        "version": 1,
        "rules": [
            {
                "id": "no-secrets",
                "match": {"kind": "tool"},
                "when": {"argument": "body", "regex": "password"},
                "outcome": "deny",
                "message": "Mail must not carry passwords.",
            },
            approval_rule,
            *rules,
        ],
    }


@pytest.fixture
def desk(hub: FakeHub) -> ApprovalDesk:
    return hub.approvals


@pytest.fixture
def connect(
    hub: FakeHub, tmp_path: Path, spool_dir: Path
) -> Iterator[Callable[..., CapturedEvents]]:
    """``connect(hub_url=hub.url, **terms)``: a client of the hub under :func:`policy`."""
    with ExitStack() as stack:
        started = itertools.count()

        def start(
            hub_url: str = hub.url, rules: tuple[dict[str, Any], ...] = (), **terms: Any
        ) -> CapturedEvents:
            policy_file = tmp_path / f"policy-{next(started)}.json"
            policy_file.write_text(json.dumps(policy(rules, **terms)))
            source = HubStream(
                hub_url, KEY, poll_interval=0.2, retry_delay=0.05, max_retry_delay=0.2
            )
            return stack.enter_context(
                capture_events(
                    hub_source=source,
                    hub_url=hub_url,
                    api_key=KEY,
                    spool_dir=spool_dir,
                    policy_file=policy_file,
                )
            )

        yield start


def in_thread(call: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    """Run ``call`` in a thread; its result (or exception) lands in the list."""
    outcome: list[Any] = []

    def target() -> None:
        try:
            outcome.append(call())
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    return thread, outcome


def finished(thread: threading.Thread, outcome: list[Any]) -> Any:
    thread.join(DEADLINE)
    assert not thread.is_alive()
    (result,) = outcome
    return result


def approval_decisions(events: CapturedEvents, name: str) -> list[Any]:
    return [d for d in events.span(name).decisions if d.stage == "approval"]


def no_helper_left() -> bool:
    deadline = threading.Event()
    for _ in range(int(DEADLINE / 0.02)):
        if not any(t.name == "agentops-approval" for t in threading.enumerate()):
            return True
        deadline.wait(0.02)
    return False


# -- approve ------------------------------------------------------------------------------------


def test_the_topic_is_the_contracts() -> None:
    assert approvals.TOPIC == TOPIC


def test_a_sync_call_blocks_until_approved_then_claims_and_runs_once(
    connect: Callable[..., CapturedEvents], desk: ApprovalDesk
) -> None:
    events = connect()
    with agentops.run("mailer"):
        run_id = agentops.current_run_id()
        thread, outcome = in_thread(agentops.bind_context(lambda: send_email("bob@other.org")))
        request = desk.one_pending()
        assert ran == []
        desk.decide(request.id, "approve", comment="fine")
        assert finished(thread, outcome) == "sent to bob@other.org"

    assert ran == [("bob@other.org", "hello")]
    ask, status = desk.asks[0]
    assert status == 201
    assert ask.run_id == run_id
    assert ask.arguments == {"to": "bob@other.org", "body": "hello"}
    assert ask.key == approval_key(run_id, "send_email", ask.arguments_sha256)
    assert (ask.rule, ask.on_expiry, ask.expires_in) == ("external-mail", "deny", 3600.0)
    assert [status for _, _, status in desk.claims] == [200]
    span = events.span("send_email")
    assert span.status == "ok"
    (settled,) = approval_decisions(events, "send_email")
    assert settled.outcome == "allow"
    assert settled.details["decided_by"] == "reviewer@example.com"
    assert settled.details["comment"] == "fine"
    assert settled.details["request_id"] == str(request.id)
    assert settled.details["waited_ms"] > 0
    (requested,) = [e for e in span.events if e.name == approvals.REQUESTED_EVENT]
    assert requested.attributes["request_id"] == str(request.id)


async def test_an_async_call_awaits_its_approval_with_the_event_loop_free(
    connect: Callable[..., CapturedEvents], desk: ApprovalDesk
) -> None:
    connect()
    call = asyncio.create_task(asend_email("bob@other.org"))
    ticks = 0
    while not desk.pending() and ticks < 100_000:
        ticks += 1
        await asyncio.sleep(0)  # the loop runs other work while the call waits
    assert desk.pending()
    assert not call.done()

    desk.decide(desk.pending()[0].id, "approve")

    assert await asyncio.wait_for(call, DEADLINE) == "sent to bob@other.org"
    assert ran == [("bob@other.org", "hello")]


def test_a_call_inside_the_policy_needs_no_approval(
    connect: Callable[..., CapturedEvents], desk: ApprovalDesk
) -> None:
    connect()
    assert send_email("ann@example.com") == "sent to ann@example.com"
    assert desk.asks == []


def test_the_decision_is_found_by_polling_while_the_stream_is_down(
    hub: FakeHub, connect: Callable[..., CapturedEvents], desk: ApprovalDesk
) -> None:
    hub.controls.stream_status = 503
    desk.push = False
    connect()
    thread, outcome = in_thread(lambda: send_email("bob@other.org"))
    request = desk.one_pending()

    desk.decide(request.id, "approve")

    assert finished(thread, outcome) == "sent to bob@other.org"
    assert desk.reads >= 1


# -- approve with edits -------------------------------------------------------------------------


def test_an_approval_with_edits_runs_the_call_with_the_edited_arguments(
    connect: Callable[..., CapturedEvents], desk: ApprovalDesk
) -> None:
    events = connect()
    thread, outcome = in_thread(lambda: send_email("bob@other.org", "draft"))
    request = desk.one_pending()

    desk.decide(
        request.id, "approve", edited_arguments={"to": "bob@other.org", "body": "final text"}
    )

    assert finished(thread, outcome) == "sent to bob@other.org"
    assert ran == [("bob@other.org", "final text")]
    (settled,) = approval_decisions(events, "send_email")
    assert settled.details["edited"] is True
    assert len(desk.claims) == 1


async def test_an_async_call_runs_with_the_edited_arguments(
    connect: Callable[..., CapturedEvents], desk: ApprovalDesk
) -> None:
    connect()
    call = asyncio.create_task(asend_email(to="bob@other.org"))
    while not desk.pending():
        await asyncio.sleep(0.01)

    desk.decide(desk.pending()[0].id, "approve", edited_arguments={"to": "team@other.org"})

    assert await asyncio.wait_for(call, DEADLINE) == "sent to team@other.org"
    assert ran == [("team@other.org", "hello")]


def test_edits_the_policy_denies_are_refused_and_nothing_is_claimed(
    connect: Callable[..., CapturedEvents], desk: ApprovalDesk
) -> None:
    events = connect()
    thread, outcome = in_thread(lambda: send_email("bob@other.org"))
    request = desk.one_pending()

    desk.decide(
        request.id,
        "approve",
        edited_arguments={"to": "bob@other.org", "body": "the password is 1234"},
    )

    refused = finished(thread, outcome)
    assert isinstance(refused, agentops.PolicyViolation)
    assert refused.rule == "no-secrets"
    assert "Mail must not carry passwords." in str(refused)
    assert ran == []
    assert desk.claims == []
    assert events.span("send_email").status == "blocked"


def test_edits_are_judged_without_counting_the_call_twice(
    connect: Callable[..., CapturedEvents], desk: ApprovalDesk
) -> None:
    once = {
        "id": "one-mail-per-run",
        "match": {"kind": "tool", "name": "send_email"},
        "limit": {"calls_per_run": 1},
        "outcome": "deny",
    }
    connect(rules=(once,))

    @agentops.agent
    def mailer() -> tuple[str, str]:
        sent = send_email("bob@other.org", "draft")
        try:
            send_email("ann@example.com")
        except agentops.PolicyViolation as refused:
            return sent, str(refused.rule)
        return sent, "a second mail went out"

    thread, outcome = in_thread(mailer)
    request = desk.one_pending()

    desk.decide(request.id, "approve", edited_arguments={"body": "final"})

    assert finished(thread, outcome) == ("sent to bob@other.org", "one-mail-per-run")
    assert ran == [("bob@other.org", "final")]


def test_edits_another_rule_needs_approval_for_are_asked_for_again(
    connect: Callable[..., CapturedEvents], desk: ApprovalDesk
) -> None:
    long_mail = {
        "id": "long-mail",
        "match": {"kind": "tool", "name": "send_email"},
        "when": {"argument": "body", "length": {"gt": 20}},
        "outcome": "require_approval",
    }
    events = connect(rules=(long_mail,))
    thread, outcome = in_thread(lambda: send_email("bob@other.org", "short"))
    first = desk.one_pending()
    assert first.rule == "external-mail"

    longer = "a much longer body that needs its own look"
    desk.decide(first.id, "approve", edited_arguments={"body": longer})
    assert desk.wait_for(lambda d: any(p.rule == "long-mail" for p in d.pending()))
    (second,) = desk.pending()
    assert second.arguments == {"to": "bob@other.org", "body": longer}
    assert ran == [], "nothing runs before the second approval"
    desk.decide(second.id, "approve", edited_arguments={"body": longer + "!"})

    assert finished(thread, outcome) == "sent to bob@other.org"
    assert ran == [("bob@other.org", longer + "!")]
    assert [claim for claim, *_ in desk.claims] == [second.id], "the approval that ran it"
    settled = approval_decisions(events, "send_email")[-1]
    assert (settled.rule, settled.details["edited"]) == ("long-mail", True)


def test_a_rejection_of_the_second_approval_refuses_the_call(
    connect: Callable[..., CapturedEvents], desk: ApprovalDesk
) -> None:
    long_mail = {
        "id": "long-mail",
        "match": {"kind": "tool", "name": "send_email"},
        "when": {"argument": "body", "length": {"gt": 20}},
        "outcome": "require_approval",
    }
    connect(rules=(long_mail,))
    thread, outcome = in_thread(lambda: send_email("bob@other.org", "short"))
    desk.decide(desk.one_pending().id, "approve", edited_arguments={"body": "x" * 30})
    assert desk.wait_for(lambda d: len(d.pending()) == 1 and d.pending()[0].rule == "long-mail")

    desk.decide(desk.pending()[0].id, "reject", comment="too long")

    refused = finished(thread, outcome)
    assert isinstance(refused, agentops.ApprovalDenied)
    assert "too long" in str(refused)
    assert ran == []
    assert desk.claims == []


def test_a_generator_runs_with_the_edited_arguments(
    connect: Callable[..., CapturedEvents], desk: ApprovalDesk
) -> None:
    connect()
    thread, outcome = in_thread(lambda: list(send_each("bob@other.org", ["a", "b"])))
    request = desk.one_pending()

    desk.decide(request.id, "approve", edited_arguments={"bodies": ["c"]})

    assert finished(thread, outcome) == ["c"]
    assert ran == [("bob@other.org", "c")]


# -- reject ---------------------------------------------------------------------------------------


def test_a_rejection_raises_approval_denied_with_the_reviewers_comment(
    connect: Callable[..., CapturedEvents], desk: ApprovalDesk
) -> None:
    events = connect()
    thread, outcome = in_thread(lambda: send_email("bob@other.org"))
    request = desk.one_pending()

    desk.decide(request.id, "reject", comment="not to customers", by="lead@example.com")

    refused = finished(thread, outcome)
    assert isinstance(refused, agentops.ApprovalDenied)
    assert "rejected by lead@example.com: not to customers" in str(refused)
    assert refused.result is None
    assert ran == []
    (settled,) = approval_decisions(events, "send_email")
    assert (settled.outcome, settled.details["state"]) == ("deny", "rejected")
    assert settled.details["comment"] == "not to customers"


def test_a_rejection_the_rule_returns_as_result_is_the_tools_return_value(
    connect: Callable[..., CapturedEvents], desk: ApprovalDesk
) -> None:
    events = connect(on_reject="result")
    thread, outcome = in_thread(lambda: send_email("bob@other.org"))
    request = desk.one_pending()
    assert desk.asks[0][0].on_reject == "result"

    desk.decide(request.id, "reject", comment="ask the customer first")

    result = finished(thread, outcome)
    assert isinstance(result, str)
    assert "ask the customer first" in result
    assert ran == []
    assert events.span("send_email").status == "blocked"


async def test_an_async_tool_returns_a_rejection_as_its_result(
    connect: Callable[..., CapturedEvents], desk: ApprovalDesk
) -> None:
    connect(on_reject="result")
    call = asyncio.create_task(asend_email("bob@other.org"))
    while not desk.pending():
        await asyncio.sleep(0.01)

    desk.decide(desk.pending()[0].id, "reject", comment="no")

    assert (await asyncio.wait_for(call, DEADLINE)).endswith(": no")
    assert ran == []


# -- expiry ---------------------------------------------------------------------------------------


def test_an_unanswered_request_expires_to_deny(
    connect: Callable[..., CapturedEvents], desk: ApprovalDesk
) -> None:
    connect(expires_in=0.5)
    with pytest.raises(agentops.ApprovalDenied, match="expired"):
        send_email("bob@other.org")
    assert ran == []
    assert desk.claims == []


def test_an_unanswered_request_expires_to_allow_when_the_rule_says_so(
    connect: Callable[..., CapturedEvents], desk: ApprovalDesk
) -> None:
    events = connect(expires_in=0.5, on_expiry="allow")
    assert send_email("bob@other.org") == "sent to bob@other.org"
    (settled,) = approval_decisions(events, "send_email")
    assert (settled.outcome, settled.details["state"]) == ("allow", "expired")


def test_arguments_that_cannot_be_frozen_never_expire_to_allow(
    connect: Callable[..., CapturedEvents], desk: ApprovalDesk
) -> None:
    connect(expires_in=0.5, on_expiry="allow")
    with pytest.raises(agentops.ApprovalDenied, match="could not be frozen"):
        send_object("bob@other.org", Unfreezable())
    ask, _ = desk.asks[0]
    assert (ask.arguments, ask.arguments_valid) == (None, False)
    assert ran == []


# -- at most once ---------------------------------------------------------------------------------


def test_a_retry_after_the_approved_call_ran_is_refused(
    connect: Callable[..., CapturedEvents], desk: ApprovalDesk
) -> None:
    connect()
    with agentops.run("mailer"):
        thread, outcome = in_thread(agentops.bind_context(lambda: send_email("bob@other.org")))
        desk.decide(desk.one_pending().id, "approve")
        assert finished(thread, outcome) == "sent to bob@other.org"

        with pytest.raises(agentops.ApprovalDenied, match="used by an earlier call"):
            send_email("bob@other.org")

    assert ran == [("bob@other.org", "hello")]
    assert [status for _, status in desk.asks] == [201, 200]  # one request, found again
    assert [status for _, _, status in desk.claims] == [200, 409]


def test_two_calls_racing_for_one_approval_run_it_once(
    connect: Callable[..., CapturedEvents], desk: ApprovalDesk
) -> None:
    connect()
    with agentops.run("mailer"):
        first = in_thread(agentops.bind_context(lambda: send_email("bob@other.org")))
        second = in_thread(agentops.bind_context(lambda: send_email("bob@other.org")))
        assert desk.wait_for(lambda d: len(d.asks) == 2, DEADLINE)
        desk.decide(desk.one_pending().id, "approve")
        outcomes = [finished(*first), finished(*second)]

    assert ran == [("bob@other.org", "hello")]
    assert sorted(type(o).__name__ for o in outcomes) == ["ApprovalDenied", "str"]
    assert sorted(status for _, _, status in desk.claims) == [200, 409]


def test_a_restarted_process_resumes_the_run_and_runs_the_approved_call_once(
    hub: FakeHub, connect: Callable[..., CapturedEvents], desk: ApprovalDesk, tmp_path: Path
) -> None:
    policy_file = tmp_path / "policy.json"
    policy_file.write_text(json.dumps(policy()))
    agent = tmp_path / "first.py"
    agent.write_text(
        "import agentops_sdk as agentops\n"
        "agentops.init()\n"
        "@agentops.tool\n"
        "def send_email(to: str, body: str = 'hello') -> str:\n"
        "    raise SystemExit('the first process must never run it')\n"
        "with agentops.run('mailer'):\n"
        "    send_email('bob@other.org')\n"
    )
    env = os.environ | {
        "AGENTOPS_HUB_URL": hub.url,
        "AGENTOPS_API_KEY": KEY,
        "AGENTOPS_POLICY_FILE": str(policy_file),
        "AGENTOPS_SPOOL_DIR": str(tmp_path / "first-spool"),
        "PYTHONPATH": str(REPO),
    }
    first = subprocess.Popen([sys.executable, str(agent)], env=env)
    try:
        request = desk.one_pending(timeout=30.0)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(DEADLINE)
    assert first.returncode == -signal.SIGKILL

    connect()
    with agentops.resume_run(request.run_id), agentops.run("mailer"):
        assert agentops.current_run_id() == request.run_id
        thread, outcome = in_thread(agentops.bind_context(lambda: send_email("bob@other.org")))
        assert desk.wait_for(lambda d: len(d.asks) == 2, DEADLINE)
        desk.decide(request.id, "approve")
        assert finished(thread, outcome) == "sent to bob@other.org"
        with pytest.raises(agentops.ApprovalDenied, match="used by an earlier call"):
            send_email("bob@other.org")

    assert ran == [("bob@other.org", "hello")]
    assert [status for _, status in desk.asks] == [201, 200, 200]
    assert len(desk.requests) == 1


# -- failures and cancellation --------------------------------------------------------------------


def test_a_hub_that_cannot_be_reached_refuses_the_call(
    connect: Callable[..., CapturedEvents],
) -> None:
    events = connect(hub_url=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(agentops.EnforcementUnavailable, match="could not be asked"):
        send_email("bob@other.org")
    assert ran == []
    (settled,) = approval_decisions(events, "send_email")
    assert (settled.outcome, settled.details["state"]) == ("deny", "unavailable")


def test_a_hub_that_refuses_the_ask_refuses_the_call(
    connect: Callable[..., CapturedEvents], desk: ApprovalDesk
) -> None:
    connect()
    desk.down = True
    with pytest.raises(agentops.EnforcementUnavailable, match="503"):
        send_email("bob@other.org")
    assert ran == []


async def test_cancelling_an_awaiting_call_withdraws_it_and_nothing_is_claimed(
    connect: Callable[..., CapturedEvents], desk: ApprovalDesk
) -> None:
    events = connect()
    call = asyncio.create_task(asend_email("bob@other.org"))
    while not desk.pending():
        await asyncio.sleep(0.01)

    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call

    assert await asyncio.to_thread(no_helper_left)
    desk.decide(desk.pending()[0].id, "approve")
    link = events.client.enforcer.link
    assert await asyncio.to_thread(link.wait_until, lambda: link.waiting == 0, DEADLINE)
    assert ran == []
    assert desk.claims == []
    assert events.span("asend_email").status == "cancelled"


def test_resume_run_refuses_what_is_not_a_run_id() -> None:
    with pytest.raises(ValueError, match="not a run id"):
        agentops.resume_run("run-42")
