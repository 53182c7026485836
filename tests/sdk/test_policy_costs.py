"""Cost limits of policies, priced in the agent's process: ``cost_per_call`` refuses an LLM call
whose worst case (as a budget reserves it) is over the cap before the call is made, and
``cost_per_run`` refuses a run's calls once its finished LLM calls cost the cap."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import agentops_sdk as agentops
from agentops_sdk import integrations, pricing
from agentops_sdk.contract.decisions import DECISION_EVENT
from agentops_sdk.contract.policy import parse_policy
from agentops_sdk.contract.policy_engine import compile_policy
from agentops_sdk.enforcement import LocalHub
from agentops_sdk.enforcement.budget_costs import input_bound, output_bound
from agentops_sdk.testing import CapturedEvents, capture_events
from tests.sdk.fake_llm import MODEL, FakeLLM, ask

pytestmark = pytest.mark.extras  # the pricing extra, and openai

USAGE = {"input_tokens": 1_000, "output_tokens": 1_000}
COST = pricing.price(MODEL, USAGE)
"""What one :func:`chat` call costs."""
MESSAGES = [{"role": "user", "content": "hello"}]

ran: list[str] = []


@agentops.llm(model=MODEL)
def chat(prompt: str, max_tokens: int) -> str:
    ran.append(prompt)
    agentops.current_span().set_usage(**USAGE)
    return "answer"


@agentops.llm(model="a-model-nobody-prices")
def unpriced(prompt: str, max_tokens: int) -> str:
    ran.append(prompt)
    return "answer"


@pytest.fixture(autouse=True)
def nothing_ran_yet() -> None:
    ran.clear()


def policy(tmp_path: Path, **limit: Any) -> Path:
    rule = {"id": "spend", "match": {"kind": "llm"}, "limit": limit, "outcome": "deny"}
    path = tmp_path / "policy.json"
    path.write_text(json.dumps({"version": 1, "rules": [rule]}))
    return path


@pytest.fixture
def openai_enabled() -> Iterator[None]:
    assert integrations.enable("openai")
    yield
    integrations.disable("openai")


def decision_of(events: CapturedEvents, prompt_span: str = "chat") -> dict[str, Any]:
    blocked = [s for s in events.spans if s.name == prompt_span and s.status == "blocked"]
    (span,) = blocked
    (decision,) = [e.attributes for e in span.events if e.name == DECISION_EVENT]
    return decision


def test_a_call_whose_worst_case_is_over_the_per_call_cap_is_denied_before_it_runs(
    tmp_path: Path,
) -> None:
    small = pricing.worst_case(MODEL, input_bound({"prompt": "small"}), 100)
    big = pricing.worst_case(MODEL, input_bound({"prompt": "big"}), 100_000)
    assert small is not None
    assert big is not None
    cap = float(small * 2)

    with capture_events(policy_file=policy(tmp_path, cost_per_call=cap)) as events:
        assert chat("small", max_tokens=100) == "answer"
        with pytest.raises(agentops.PolicyViolation, match="cost_per_call"):
            chat("big", max_tokens=100_000)
        assert unpriced("unknown", max_tokens=100_000) == "answer", "an unknown cost fires none"

    assert ran == ["small", "unknown"]
    decision = decision_of(events)
    assert decision["rule"] == "spend"
    assert decision["outcome"] == "deny"


def test_an_openai_request_over_the_per_call_cap_is_never_sent(
    tmp_path: Path, openai_enabled: None
) -> None:
    worst = pricing.worst_case(
        MODEL, input_bound({"messages": MESSAGES}), output_bound({"max_tokens": 4_000})
    )
    assert worst is not None
    llm = FakeLLM()

    with capture_events(policy_file=policy(tmp_path, cost_per_call=float(worst) / 2)):
        client = llm.client()
        ask(client, max_tokens=100)
        with pytest.raises(agentops.PolicyViolation):
            ask(client, max_tokens=4_000)

    assert llm.requests == 1


def test_a_run_is_denied_its_next_call_once_its_calls_cost_the_per_run_cap(
    tmp_path: Path,
) -> None:
    assert COST is not None
    cap = COST * Decimal("2.5")

    with capture_events(policy_file=policy(tmp_path, cost_per_run=float(cap))) as events:
        with agentops.run("spender"):
            for index in range(3):
                chat(f"p{index}", max_tokens=1_000)  # 0, 1 and 2 calls' cost spent before each
            with pytest.raises(agentops.PolicyViolation, match="cost_per_run"):
                chat("p3", max_tokens=1_000)
        with agentops.run("spender"):
            assert chat("next run", max_tokens=1_000) == "answer"

    assert ran == ["p0", "p1", "p2", "next run"]
    decision = decision_of(events)
    assert decision["rule"] == "spend"


def test_a_per_run_cap_arriving_from_the_hub_counts_the_calls_the_run_made_before_it(
    tmp_path: Path,
) -> None:
    assert COST is not None
    hub = LocalHub()
    capped = compile_policy(
        parse_policy(
            {
                "version": 2,
                "rules": [
                    {"id": "hub-spend", "limit": {"cost_per_run": float(COST)}, "outcome": "deny"}
                ],
            }
        )
    )
    local = policy(tmp_path, max_tokens=10_000)  # no cost limit: nothing summed yet
    with capture_events(policy_file=local, hub_url="http://hub.invalid", hub_source=hub) as events:
        link = events.client.enforcer.link
        with agentops.run("spender"):
            chat("before", max_tokens=1_000)
            hub.publish("policies", capped)
            assert link.wait_until(lambda: link.snapshot.get("policies") is capped, 5.0)
            # The call made before the cap arrived cost the cap already.
            with pytest.raises(agentops.PolicyViolation, match="cost_per_run"):
                chat("first", max_tokens=1_000)
        with agentops.run("another"):  # another run starts from nothing
            chat("second", max_tokens=1_000)

    assert ran == ["before", "second"]
