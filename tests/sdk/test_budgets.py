"""Budgets in the SDK: each LLM call reserves its worst-case cost from a lease of every budget
it falls in before any request is sent, and reconciles to what it cost after.

The hub is a real HTTP server on 127.0.0.1 (:class:`~tests.sdk.fake_hub.FakeHub`) whose budget
endpoints (:class:`~tests.sdk.fake_budgets.BudgetDesk`) grant leases atomically and expire them
when read; the LLM is the real ``openai`` client over a mocked transport that counts requests
(:class:`~tests.sdk.fake_llm.FakeLLM`).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage

import agentops_sdk as agentops
from agentops_sdk import integrations, pricing
from agentops_sdk.contract import budgets as contract
from agentops_sdk.contract.budgets import Budget, OrgModelPrice
from agentops_sdk.contract.controls import AgentProfile
from agentops_sdk.contract.pricing import Usage, cost_of, worst_case_cost
from agentops_sdk.enforcement import budgets
from agentops_sdk.enforcement.budget_costs import DEFAULT_OUTPUT_BOUND, input_bound, output_bound
from agentops_sdk.enforcement.budget_leases import Account
from agentops_sdk.enforcement.budgets import BudgetStage
from agentops_sdk.enforcement.hub_stream import HubStream
from agentops_sdk.schema import SpanEvent
from agentops_sdk.testing import CapturedEvents, capture_events
from tests.sdk.fake_budgets import BudgetDesk, budget
from tests.sdk.fake_controls import control_set
from tests.sdk.fake_hub import FakeHub
from tests.sdk.fake_llm import MODEL, FakeLLM, ask

pytestmark = pytest.mark.extras  # openai, LangChain and the pricing extra

KEY = "ak_budgets"
DEADLINE = 10.0
REPO = Path(__file__).resolve().parents[2]
MESSAGES = [{"role": "user", "content": "hello"}]
WORST = pricing.worst_case(
    MODEL, input_bound({"messages": MESSAGES}), output_bound({"max_tokens": 100})
)
"""What one :func:`ask` reserves."""
COST = pricing.price(MODEL, {"input_tokens": 1, "output_tokens": 100})
"""What one :func:`ask` costs (the fake LLM reports 1 input token for "hello", max_tokens out)."""


@pytest.fixture(autouse=True)
def openai_enabled() -> Iterator[None]:
    assert integrations.enable("openai")
    yield
    integrations.disable("openai")


@pytest.fixture
def desk(hub: FakeHub) -> BudgetDesk:
    return hub.budgets


@pytest.fixture
def llm() -> FakeLLM:
    return FakeLLM()


@pytest.fixture
def connect(hub: FakeHub, spool_dir: Path) -> Iterator[Callable[..., CapturedEvents]]:
    """``connect(**options)``: a client of the hub (it waits for the hub's budgets at start)."""
    with ExitStack() as stack:

        def start(**options: Any) -> CapturedEvents:
            source = HubStream(
                hub.url, KEY, poll_interval=0.2, retry_delay=0.05, max_retry_delay=0.2
            )
            return stack.enter_context(
                capture_events(
                    hub_source=source,
                    hub_url=hub.url,
                    api_key=KEY,
                    spool_dir=spool_dir,
                    **options,
                )
            )

        yield start


def stage_of(events: CapturedEvents) -> BudgetStage:
    (stage,) = [s for s in events.client.enforcer.stages if isinstance(s, BudgetStage)]
    return stage


def account(events: CapturedEvents, of: Budget) -> Account:
    return stage_of(events).keeper.accounts[of.id]


def eventually(condition: Callable[[], bool]) -> bool:
    """Whether ``condition`` holds within the deadline (checked every 10 ms)."""
    deadline = time.monotonic() + DEADLINE
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)
    return True


def llm_spans(events: CapturedEvents) -> list[SpanEvent]:
    return [span for span in events.spans if span.kind == "llm"]


def budget_decisions(span: SpanEvent) -> list[Any]:
    return [d for d in span.decisions if d.stage == "budget"]


# -- the contract ---------------------------------------------------------------------------------


def test_the_topic_and_the_span_attribute_are_the_contracts() -> None:
    assert budgets.TOPIC == contract.TOPIC
    assert budgets.LEASES_ATTRIBUTE == contract.LEASES_ATTRIBUTE


def test_the_worst_case_bounds_the_cost_of_what_the_fake_llm_answers() -> None:
    assert WORST is not None
    assert COST is not None
    assert COST <= WORST


def test_input_is_bounded_by_the_bytes_of_the_text_and_output_by_max_tokens_times_choices() -> None:
    text = "héllo wörld " * 100
    assert input_bound({"messages": [{"role": "user", "content": text}]}) >= len(text.encode())
    assert output_bound({"max_completion_tokens": 50, "n": 3}) == 150
    assert output_bound({}, 4096) == 4096


# -- admission ------------------------------------------------------------------------------------


def test_the_stage_idles_while_the_org_has_no_budget_and_engages_when_one_comes(
    connect: Callable[..., CapturedEvents], desk: BudgetDesk, llm: FakeLLM
) -> None:
    events = connect()
    assert not any(s.name == "budget" for s in events.client.enforcer.stages)
    ask(llm.client())
    assert desk.asks == []

    desk.publish([budget("1")])
    assert eventually(lambda: any(s.name == "budget" for s in events.client.enforcer.stages))
    ask(llm.client())
    assert [status for _, status in desk.asks] == [201]


def test_with_the_stream_down_the_budgets_are_polled_with_their_etag(
    connect: Callable[..., CapturedEvents], hub: FakeHub, desk: BudgetDesk, llm: FakeLLM
) -> None:
    hub.controls.stream_status = 503
    desk.publish([budget("1")])
    events = connect()
    assert eventually(lambda: any(s.name == "budget" for s in events.client.enforcer.stages))
    assert desk.polls >= 1
    ask(llm.client())
    assert [status for _, status in desk.asks] == [201]


def test_calls_reserve_from_one_lease_and_reconcile_to_their_actual_cost(
    connect: Callable[..., CapturedEvents], desk: BudgetDesk, llm: FakeLLM
) -> None:
    monthly = budget("1")
    desk.publish([monthly])
    events = connect()
    client = llm.client()
    for _ in range(5):
        ask(client)

    assert [status for _, status in desk.asks] == [201]  # one lease; no network per call
    (lease,) = desk.live(monthly.id)
    grant = account(events, monthly).grant
    assert grant is not None
    assert grant.lease.id == lease.id
    assert grant.reserved == 0
    assert grant.spent == 5 * COST
    spans = llm_spans(events)
    assert len(spans) == 5
    for span in spans:
        assert span.attributes[contract.LEASES_ATTRIBUTE] == [str(lease.id)]
        assert span.llm is not None
        assert span.llm.cost == COST


def test_a_call_that_cannot_fit_is_refused_before_any_request_is_sent(
    connect: Callable[..., CapturedEvents], desk: BudgetDesk, llm: FakeLLM
) -> None:
    assert WORST is not None
    desk.publish([budget(WORST / 2, name="tiny")])
    events = connect()

    with pytest.raises(agentops.BudgetExceeded, match="tiny"):
        ask(llm.client())
    assert llm.requests == 0
    (span,) = llm_spans(events)
    assert span.status == "blocked"
    (decision,) = budget_decisions(span)
    assert (decision.outcome, decision.rule) == ("deny", "budget:tiny")


def test_calls_stop_when_the_budget_is_spent_and_spend_never_passes_the_limit(
    connect: Callable[..., CapturedEvents], desk: BudgetDesk, llm: FakeLLM
) -> None:
    assert WORST is not None
    assert COST is not None
    limit = WORST * Decimal("4.5")
    capped = budget(limit)
    desk.publish([capped])
    connect()
    client = llm.client()
    admitted = 0
    for _ in range(20):
        try:
            ask(client)
        except agentops.BudgetExceeded:
            break
        admitted += 1

    assert admitted == 4  # a fifth worst case does not fit what four calls left
    assert llm.requests == admitted  # the refused call sent nothing
    assert admitted * COST <= limit
    assert desk.peak[capped.id] <= limit


def test_calls_reserve_and_spend_at_the_orgs_own_price_of_their_model(
    connect: Callable[..., CapturedEvents], desk: BudgetDesk, llm: FakeLLM
) -> None:
    assert WORST is not None
    own = OrgModelPrice(model=MODEL, input=Decimal(30), output=Decimal(120))  # 200 x the catalog
    own_worst = worst_case_cost(
        own.price(), input_bound({"messages": MESSAGES}), output_bound({"max_tokens": 100})
    )
    capped = budget(WORST * 50)  # room for the catalog's worst case, not the org's
    desk.publish([capped], prices=[own])
    events = connect()
    client = llm.client()

    with pytest.raises(agentops.BudgetExceeded, match=f"{own_worst:.6f}"):
        ask(client)
    roomy = budget(own_worst * 2, name="roomy")
    desk.publish([roomy], prices=[own])
    assert eventually(lambda: roomy.id in stage_of(events).keeper.accounts)
    ask(client)

    grant = account(events, roomy).grant
    assert grant is not None
    assert grant.spent == cost_of(own.price(), Usage(input_tokens=1, output_tokens=100)).total
    assert llm.requests == 1


def test_a_policys_cost_per_call_prices_at_the_orgs_own_price_too(
    connect: Callable[..., CapturedEvents], desk: BudgetDesk, llm: FakeLLM, tmp_path: Path
) -> None:
    assert WORST is not None
    own = OrgModelPrice(model=MODEL, input=Decimal(30), output=Decimal(120))
    rule = {"id": "dear", "limit": {"cost_per_call": float(WORST * 10)}, "outcome": "deny"}
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"version": 1, "rules": [rule]}))
    desk.publish([], prices=[own])
    connect(policy_file=policy)

    with pytest.raises(agentops.PolicyViolation, match="cost_per_call"):
        ask(llm.client())  # under the cap at the catalog's price, 20 x over it at the org's
    assert llm.requests == 0


TOKENS = input_bound({"messages": MESSAGES}) + 100
"""The tokens one :func:`ask` reserves under a budget limiting tokens."""
USED = 1 + 100
"""The tokens one :func:`ask` uses (1 input token for "hello", ``max_tokens`` out)."""


def test_a_call_over_a_budgets_token_limit_is_refused_before_any_request_is_sent(
    connect: Callable[..., CapturedEvents], desk: BudgetDesk, llm: FakeLLM
) -> None:
    desk.publish([budget("100", name="few tokens", limit_tokens=TOKENS - 1)])
    events = connect()

    with pytest.raises(agentops.BudgetExceeded, match=f"up to {TOKENS} tokens"):
        ask(llm.client())
    assert llm.requests == 0
    (span,) = llm_spans(events)
    (decision,) = budget_decisions(span)
    assert (decision.outcome, decision.rule) == ("deny", "budget:few tokens")


def test_calls_reserve_tokens_beside_usd_and_reconcile_to_the_tokens_they_used(
    connect: Callable[..., CapturedEvents], desk: BudgetDesk, llm: FakeLLM
) -> None:
    capped, usd_only = budget("100", limit_tokens=100_000), budget("100", name="usd only")
    desk.publish([capped, usd_only])
    events = connect()
    client = llm.client()
    for _ in range(3):
        ask(client)
    grant = account(events, capped).grant
    assert grant is not None
    held = (grant.reserved_tokens, grant.spent_tokens, grant.granted_tokens)
    events.client.shutdown(5.0)

    asked = {ask.request_id: ask.tokens for ask, _ in desk.asks}
    (lease,) = [h.lease for h in desk.leases.values() if h.lease.budget_id == capped.id]
    (other,) = [h.lease for h in desk.leases.values() if h.lease.budget_id == usd_only.id]
    assert (asked[lease.request_id] or 0) >= TOKENS
    assert asked[other.request_id] is None, "a budget limiting no tokens is asked for none"
    assert held == (0, 3 * USED, lease.granted_tokens)
    _, report, _ = next(r for r in reversed(desk.reports) if r[0] == lease.id)
    assert (report.release, report.spent_tokens) == (True, 3 * USED)


def test_calls_stop_when_a_budgets_tokens_are_spent_and_never_pass_its_token_limit(
    connect: Callable[..., CapturedEvents], desk: BudgetDesk, llm: FakeLLM
) -> None:
    limit = TOKENS * 9 // 2
    capped = budget("100", limit_tokens=limit)
    desk.publish([capped])
    connect()
    client = llm.client()
    admitted = 0
    for _ in range(20):
        try:
            ask(client)
        except agentops.BudgetExceeded:
            break
        admitted += 1

    # each call reserves its worst case and gives back what it did not use
    assert admitted == (limit - TOKENS) // USED + 1
    assert llm.requests == admitted  # the refused call sent nothing
    assert admitted * USED <= limit
    assert desk.peak_tokens[capped.id] <= limit


def test_an_async_call_awaits_its_first_lease(
    connect: Callable[..., CapturedEvents], desk: BudgetDesk, llm: FakeLLM
) -> None:
    desk.publish([budget("1")])
    events = connect()

    async def calls() -> None:
        client = llm.async_client()
        await asyncio.gather(
            *(
                client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=100)
                for _ in range(3)
            )
        )

    asyncio.run(calls())
    assert llm.requests == 3
    assert [status for _, status in desk.asks] == [201]
    assert all(s.status == "ok" for s in llm_spans(events))


def test_only_the_budgets_whose_scope_applies_reserve(
    connect: Callable[..., CapturedEvents], hub: FakeHub, desk: BudgetDesk, llm: FakeLLM
) -> None:
    team = budget("1", name="team", scope=("team", "search"))
    other = budget("1", name="other", scope=("agent", "someone-else"))
    tagged = budget("1", name="tagged", scope=("tag", "beta"))
    hub.controls.publish(control_set(agents=(AgentProfile(name="finder", team="search", tags=()),)))
    desk.publish([team, other, tagged])
    events = connect()
    with agentops.run("finder", tags=["beta"]):
        ask(llm.client())

    asked = {ask_.request_id for ask_, _ in desk.asks}
    assert len(asked) == 2
    assert account(events, other).grant is None
    for applies in (team, tagged):
        grant = account(events, applies).grant
        assert grant is not None
        assert grant.spent == COST


# -- unknown cost ---------------------------------------------------------------------------------

UNPRICED = "a-model-nobody-prices"


def test_an_unpriced_model_is_refused_when_its_budget_denies_unknown_costs(
    connect: Callable[..., CapturedEvents], desk: BudgetDesk, llm: FakeLLM
) -> None:
    desk.publish([budget("1", on_unknown_cost="deny")])
    connect()
    with pytest.raises(agentops.BudgetExceeded, match="cannot be priced"):
        ask(llm.client(), model=UNPRICED)
    assert llm.requests == 0


def test_an_unpriced_model_reserves_and_is_charged_its_budgets_ceiling(
    connect: Callable[..., CapturedEvents], desk: BudgetDesk, llm: FakeLLM
) -> None:
    ceiling = budget("1", on_unknown_cost="ceiling", unknown_cost_ceiling=Decimal("0.25"))
    desk.publish([ceiling])
    events = connect()
    ask(llm.client(), model=UNPRICED)
    ask(llm.client(), model=UNPRICED)
    ask(llm.client(), model=UNPRICED)
    ask(llm.client(), model=UNPRICED)
    with pytest.raises(agentops.BudgetExceeded):
        ask(llm.client(), model=UNPRICED)  # four ceilings spent the dollar

    assert llm.requests == 4
    grant = account(events, ceiling).grant
    assert grant is not None
    assert grant.spent == Decimal("1.00")


def test_an_unpriced_model_waits_for_an_approval_when_its_budget_asks_for_one(
    connect: Callable[..., CapturedEvents], hub: FakeHub, desk: BudgetDesk, llm: FakeLLM
) -> None:
    desk.publish([budget("1", name="guarded", on_unknown_cost="require_approval")])
    events = connect()
    outcome: list[Any] = []

    def call() -> None:
        outcome.append(ask(llm.client(), model=UNPRICED))

    runner = threading.Thread(target=agentops.bind_context(call))
    runner.start()
    request = hub.approvals.one_pending()
    assert request.rule == "budget:guarded"
    assert llm.requests == 0
    hub.approvals.decide(request.id, "approve")
    runner.join(DEADLINE)
    assert outcome
    assert llm.requests == 1
    (span,) = llm_spans(events)
    assert [d.outcome for d in span.decisions] == ["require_approval", "allow"]


def test_an_unpriced_model_reserves_one_budgets_ceiling_then_asks_anothers_approval(
    connect: Callable[..., CapturedEvents], hub: FakeHub, desk: BudgetDesk, llm: FakeLLM
) -> None:
    ceiling = budget("1", name="ceiling", on_unknown_cost="ceiling", unknown_cost_ceiling="0.5")
    guarded = budget("1", name="guarded", on_unknown_cost="require_approval")
    desk.publish([ceiling, guarded])
    events = connect()
    runner = threading.Thread(
        target=agentops.bind_context(lambda: ask(llm.client(), model=UNPRICED))
    )
    runner.start()
    request = hub.approvals.one_pending()  # asked once the ceiling was reserved from a lease
    assert request.rule == "budget:guarded"
    hub.approvals.decide(request.id, "approve")
    runner.join(DEADLINE)

    assert llm.requests == 1
    grant = account(events, ceiling).grant
    assert grant is not None
    assert grant.spent == Decimal("0.5")
    assert account(events, guarded).grant is None


def test_a_lease_too_slow_for_a_budget_failing_open_still_asks_anothers_approval(
    connect: Callable[..., CapturedEvents], hub: FakeHub, desk: BudgetDesk, llm: FakeLLM
) -> None:
    lenient = budget(
        "1", name="lenient", fail_mode="open", on_unknown_cost="ceiling", unknown_cost_ceiling="0.5"
    )
    guarded = budget("1", name="guarded", on_unknown_cost="require_approval")
    desk.publish([lenient, guarded])
    events = connect(budget_wait=0.2)
    desk.answering.clear()  # the lease of the ceiling comes after the call stopped waiting
    try:
        runner = threading.Thread(
            target=agentops.bind_context(lambda: ask(llm.client(), model=UNPRICED))
        )
        runner.start()
        request = hub.approvals.one_pending()
        assert request.rule == "budget:guarded"
        assert llm.requests == 0
        hub.approvals.decide(request.id, "approve")
        runner.join(DEADLINE)
    finally:
        desk.answering.set()

    assert llm.requests == 1
    (span,) = llm_spans(events)
    assert [d.outcome for d in span.decisions] == ["require_approval", "allow"]


# -- soft budgets and fail modes ------------------------------------------------------------------


def test_a_soft_budget_never_refuses_but_reserves_and_reports_its_spend(
    connect: Callable[..., CapturedEvents], desk: BudgetDesk, llm: FakeLLM
) -> None:
    assert WORST is not None
    assert COST is not None
    soft = budget(WORST, name="soft", hard=False)
    desk.publish([soft])
    events = connect()
    client = llm.client()
    ask(client)  # runs at once; its lease is asked for meanwhile
    assert llm.requests == 1
    assert eventually(lambda: account(events, soft).grant is not None)
    for _ in range(4):
        ask(client)
    assert llm.requests == 5
    grant = account(events, soft).grant
    assert grant is not None
    assert grant.spent == 4 * COST > grant.granted
    events.client.shutdown(5.0)

    lease_id, report, status = desk.reports[-1]
    assert (lease_id, report.release, status) == (grant.lease.id, True, 200)
    assert report.spent_usd == 4 * COST  # past what it was granted: the hub sees the spend


def test_with_the_hub_down_a_budget_failing_closed_refuses_calls(
    connect: Callable[..., CapturedEvents], desk: BudgetDesk, llm: FakeLLM
) -> None:
    desk.publish([budget("1", name="closed")])
    desk.down = True
    events = connect()
    with pytest.raises(agentops.EnforcementUnavailable, match="closed"):
        ask(llm.client())
    assert llm.requests == 0
    (decision,) = budget_decisions(llm_spans(events)[0])
    assert decision.outcome == "deny"


def test_with_the_hub_down_a_budget_failing_open_lets_calls_run_with_a_warning(
    connect: Callable[..., CapturedEvents],
    desk: BudgetDesk,
    llm: FakeLLM,
    caplog: pytest.LogCaptureFixture,
) -> None:
    desk.publish([budget("1", name="lenient", fail_mode="open")])
    desk.down = True
    events = connect()
    ask(llm.client())
    ask(llm.client())
    assert llm.requests == 2
    first, second = llm_spans(events)
    assert [d.outcome for d in budget_decisions(first)] == ["warn"]
    assert [d.outcome for d in budget_decisions(second)] == ["warn"]
    assert any("fails open" in record.getMessage() for record in caplog.records)


# -- leases over time -----------------------------------------------------------------------------


def test_a_lease_in_use_is_renewed_in_the_background_and_released_once_idle(
    connect: Callable[..., CapturedEvents], desk: BudgetDesk, llm: FakeLLM
) -> None:
    desk.publish([budget("1")])
    connect(budget_lease_ttl=0.6)
    ask(llm.client())

    assert desk.wait_for(
        lambda d: any(r.renew_ttl == 0.6 and not r.release for _, r, _ in d.reports), DEADLINE
    )
    assert desk.wait_for(lambda d: any(r.release for _, r, _ in d.reports), DEADLINE)
    assert desk.reports[-1][1].spent_usd == COST


def test_a_lease_running_low_is_topped_up_before_calls_must_wait(
    connect: Callable[..., CapturedEvents], desk: BudgetDesk, llm: FakeLLM
) -> None:
    desk.publish([budget("1")])
    events = connect()
    client = llm.client()
    for _ in range(400):
        ask(client)

    assert any(r.more_usd is not None and status == 200 for _, r, status in desk.reports)
    waited = [s for s in llm_spans(events) if budget_decisions(s)]
    assert len(waited) <= 2  # the first call waited for the first lease; a burst, maybe once


def test_leases_are_released_at_shutdown_with_their_spend(
    connect: Callable[..., CapturedEvents], desk: BudgetDesk, llm: FakeLLM
) -> None:
    monthly = budget("1")
    desk.publish([monthly])
    events = connect()
    ask(llm.client())
    ask(llm.client())
    events.client.shutdown(5.0)

    assert desk.live(monthly.id) == []
    _, report, status = desk.reports[-1]
    assert (report.release, report.spent_usd, status) == (True, 2 * COST, 200)


def test_a_killed_process_strands_its_reservation_no_longer_than_the_lease_ttl(
    hub: FakeHub, desk: BudgetDesk, tmp_path: Path
) -> None:
    monthly = budget("1")
    desk.publish([monthly])
    agent = tmp_path / "agent.py"
    agent.write_text(
        textwrap.dedent(
            f"""
            import agentops_sdk as agentops
            from tests.sdk.fake_llm import FakeLLM, ask

            agentops.init(hub_url={hub.url!r}, api_key={KEY!r}, spool=False,
                          budget_lease_ttl=2.0, integrations=["openai"])
            ask(FakeLLM(latency=600).client())  # holds its reservation until killed
            """
        )
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen([sys.executable, str(agent)], env=env)
    try:
        assert desk.wait_for(lambda d: len(d.live(monthly.id)) == 1, 30.0)
        held = desk.committed(monthly.id)
        assert held > 0
        process.send_signal(signal.SIGKILL)
        process.wait(DEADLINE)
        killed_at = time.monotonic()
        assert desk.committed(monthly.id) == held  # still held: the lease is live until its TTL
        assert desk.wait_for(lambda d: d.committed(monthly.id) == 0, DEADLINE)
        assert time.monotonic() - killed_at <= 2.0 + 1.0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


# -- LangChain ------------------------------------------------------------------------------------


class FakeMini(GenericFakeChatModel):
    """A fake chat model that says it is gpt-4o-mini (it sets no maximum of tokens)."""

    model: str = MODEL


@pytest.fixture
def langchain_enabled() -> Iterator[None]:
    assert integrations.enable("langchain")
    yield
    integrations.disable("langchain")


def test_a_langchain_model_call_that_does_not_fit_is_never_made(
    langchain_enabled: None, connect: Callable[..., CapturedEvents], desk: BudgetDesk
) -> None:
    assert WORST is not None
    desk.publish([budget(WORST / 2, name="tiny")])
    connect()
    answers = iter([AIMessage("hello")])

    with pytest.raises(agentops.BudgetExceeded, match="tiny"):
        FakeMini(messages=answers).invoke("hi")
    assert next(answers).content == "hello"  # the model never took its answer


def test_a_langchain_call_with_no_max_tokens_and_no_usage_is_charged_its_bounded_worst_case(
    langchain_enabled: None, connect: Callable[..., CapturedEvents], desk: BudgetDesk
) -> None:
    monthly = budget("1")
    desk.publish([monthly])
    events = connect()

    assert FakeMini(messages=iter([AIMessage("hello")])).invoke("hi").content == "hello"
    grant = account(events, monthly).grant
    assert grant is not None
    assert grant.reserved == 0
    bound = pricing.worst_case(MODEL, 0, DEFAULT_OUTPUT_BOUND)
    assert bound is not None
    assert bound <= grant.spent < 2 * bound  # output bounded by default; the input is "hi"
