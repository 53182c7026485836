"""The budget stage's prices: per-token rates kept per model give exactly what the shared
arithmetic (:func:`~agentops_sdk.contract.pricing.cost_of`, ``worst_case_cost``) gives."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentops_sdk.contract.pricing import ModelPrice, Rates, Tier, Usage, cost_of, worst_case_cost
from agentops_sdk.enforcement import budget_costs
from agentops_sdk.enforcement.budget_costs import WorstCase, input_bound, output_bound

RATE = st.decimals(min_value=0, max_value=1000, places=6, allow_nan=False, allow_infinity=False)
OPTIONAL_RATE = st.none() | RATE
TOKENS = st.integers(min_value=0, max_value=2_000_000)


def rates() -> st.SearchStrategy[Rates]:
    return st.builds(
        Rates,
        input=RATE,
        output=RATE,
        cached_input=OPTIONAL_RATE,
        cache_write=OPTIONAL_RATE,
        reasoning=OPTIONAL_RATE,
    )


PRICES = st.builds(
    ModelPrice,
    rates=rates(),
    tiers=st.lists(st.builds(Tier, above_input_tokens=TOKENS, rates=rates()), max_size=2).map(
        tuple
    ),
)


def keeping(price: ModelPrice, monkeypatch: pytest.MonkeyPatch) -> WorstCase:
    """A WorstCase whose every model has ``price``."""

    class Match:
        def __init__(self) -> None:
            self.price = price

    monkeypatch.setattr("agentops_sdk.pricing.lookup", lambda *_: Match())
    return WorstCase()


@given(
    price=PRICES,
    usage=st.builds(
        Usage,
        input_tokens=TOKENS,
        output_tokens=TOKENS,
        cached_input_tokens=TOKENS,
        cache_write_tokens=TOKENS,
        reasoning_tokens=TOKENS,
    ),
    as_mapping=st.booleans(),
)
def test_the_cost_of_a_call_is_the_shared_arithmetics(
    price: ModelPrice, usage: Usage, as_mapping: bool
) -> None:
    with pytest.MonkeyPatch.context() as patch:
        costs = keeping(price, patch)
        given_usage: Any = usage
        if as_mapping:
            given_usage = {
                "input_tokens": usage.input_tokens,
                "output_tokens": usage.output_tokens,
                "cached_input_tokens": usage.cached_input_tokens,
                "cache_write_tokens": usage.cache_write_tokens,
                "reasoning_tokens": usage.reasoning_tokens,
            }
        assert costs.actual("m", None, given_usage) == cost_of(price, usage).total


@given(price=PRICES, messages=st.text(max_size=200), max_tokens=st.integers(1, 100_000))
def test_the_worst_case_of_a_call_is_the_shared_arithmetics(
    price: ModelPrice, messages: str, max_tokens: int
) -> None:
    arguments = {"messages": [{"role": "user", "content": messages}], "max_tokens": max_tokens}
    with pytest.MonkeyPatch.context() as patch:
        costs = keeping(price, patch)
        expected = worst_case_cost(price, input_bound(arguments), output_bound(arguments))
        assert costs.of("m", None, arguments) == expected


def test_a_usage_that_leaves_kinds_out_prices_them_at_nothing() -> None:
    price = ModelPrice(Rates(input=Decimal("2.5"), output=Decimal(10), cached_input=Decimal(1)))
    per_token = budget_costs._PerToken(price).per_token
    assert per_token is not None
    cost = budget_costs._cost_per_token(per_token, {"input_tokens": 1000, "output_tokens": 200})
    assert cost == Decimal("0.0045")
