"""Local pricing: golden costs, computed here by hand from the published prices per million
tokens (never by the code under test), exact to the Decimal; worst cases; how names match; and
that ``import agentops_sdk`` never imports the price data."""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal

import pytest

from agentops_sdk.contract.pricing import ModelPrice, Rates, Tier, Usage, check_rate, cost_of

pytestmark = pytest.mark.extras  # genai-prices: the pricing extra

M = Decimal(1_000_000)


def per_million(tokens: int, usd: str) -> Decimal:
    return tokens * Decimal(usd) / M


# (model, provider, usage, hand-computed cost): prices as published per million tokens.
GOLDEN = [
    # gpt-4o: $2.50 input, $1.25 cached input, $10 output.
    ("gpt-4o", "openai", Usage(1000, 200), per_million(1000, "2.5") + per_million(200, "10")),
    (
        "gpt-4o",
        "openai",
        Usage(10_000, 500, cached_input_tokens=8_000),
        per_million(2_000, "2.5") + per_million(8_000, "1.25") + per_million(500, "10"),
    ),
    # A dated name the data lists: the same price.
    ("gpt-4o-2024-08-06", "openai", Usage(1, 1), per_million(1, "2.5") + per_million(1, "10")),
    # gpt-4o-mini: $0.15, $0.075 cached, $0.60.
    (
        "gpt-4o-mini",
        "openai",
        Usage(31, 9),
        per_million(31, "0.15") + per_million(9, "0.6"),
    ),
    (
        "gpt-4o-mini",
        None,
        Usage(2048, 100, cached_input_tokens=1024),
        per_million(1024, "0.15") + per_million(1024, "0.075") + per_million(100, "0.6"),
    ),
    # o3-mini: $1.10, $0.55 cached, $4.40; reasoning tokens are output tokens at the output rate.
    (
        "o3-mini",
        "openai",
        Usage(500, 1000, reasoning_tokens=800),
        per_million(500, "1.1") + per_million(1000, "4.4"),
    ),
    # o1-pro: $150 and $600.
    ("o1-pro", "openai", Usage(100, 50), per_million(100, "150") + per_million(50, "600")),
    # claude-sonnet-4-5: $3, $0.30 cache read, $3.75 cache write, $15; above 200k input tokens
    # every token at $6, $0.60, $7.50, $22.50.
    (
        "claude-sonnet-4-5",
        "anthropic",
        Usage(10_000, 1_000, cached_input_tokens=6_000, cache_write_tokens=2_000),
        per_million(2_000, "3")
        + per_million(6_000, "0.3")
        + per_million(2_000, "3.75")
        + per_million(1_000, "15"),
    ),
    (
        "claude-sonnet-4-5",
        "anthropic",
        Usage(200_000, 1_000),
        per_million(200_000, "3") + per_million(1_000, "15"),
    ),
    (
        "claude-sonnet-4-5",
        "anthropic",
        Usage(250_000, 1_000, cached_input_tokens=50_000),
        per_million(200_000, "6") + per_million(50_000, "0.6") + per_million(1_000, "22.5"),
    ),
    # A dated snapshot of it, matched by its base name (fallback): the same price.
    (
        "claude-sonnet-4-5-20250929",
        "anthropic",
        Usage(1_000, 100, cache_write_tokens=1_000),
        per_million(1_000, "3.75") + per_million(100, "15"),
    ),
    # claude-opus-4-1: $15, $1.50, $18.75, $75.
    (
        "claude-opus-4-1",
        "anthropic",
        Usage(3_000, 400, cached_input_tokens=1_000, cache_write_tokens=1_000),
        per_million(1_000, "15")
        + per_million(1_000, "1.5")
        + per_million(1_000, "18.75")
        + per_million(400, "75"),
    ),
    # gemini-2.5-pro: $1.25, $0.125 cached, $10; above 200k: $2.50, $0.25, $15.
    (
        "gemini-2.5-pro",
        "google",
        Usage(100_000, 2_000, cached_input_tokens=40_000),
        per_million(60_000, "1.25") + per_million(40_000, "0.125") + per_million(2_000, "10"),
    ),
    (
        "gemini-2.5-pro",
        "google",
        Usage(300_000, 2_000, reasoning_tokens=1_500),
        per_million(300_000, "2.5") + per_million(2_000, "15"),
    ),
    # claude-3-5-haiku: $0.80, $0.08, $1, $4.
    (
        "claude-3-5-haiku-latest",
        "anthropic",
        Usage(4_000, 300, cached_input_tokens=3_000),
        per_million(1_000, "0.8") + per_million(3_000, "0.08") + per_million(300, "4"),
    ),
]


@pytest.mark.parametrize(("model", "provider", "usage", "expected"), GOLDEN)
def test_a_call_costs_each_kind_of_token_at_its_published_rate(
    model: str, provider: str | None, usage: Usage, expected: Decimal
) -> None:
    from agentops_sdk import pricing

    assert pricing.price(model, usage, provider=provider) == expected


def test_an_unknown_model_has_no_price_rather_than_zero() -> None:
    from agentops_sdk import pricing

    assert pricing.price("acme-secret-llm-9", Usage(1000, 1000)) is None
    assert pricing.worst_case("acme-secret-llm-9", 1000, 1000) is None


def test_a_usage_mapping_is_priced_like_a_usage() -> None:
    from agentops_sdk import pricing

    usage = {"input_tokens": 1000, "output_tokens": 200, "cached_input_tokens": 1000}
    assert pricing.price("gpt-4o", usage, provider="openai") == per_million(
        1000, "1.25"
    ) + per_million(200, "10")


def test_names_match_exactly_by_name_or_alias_and_by_fallback_otherwise() -> None:
    from agentops_sdk import pricing

    kinds = {
        (model, provider): (found.provider, found.model, found.kind)
        for model, provider in [
            ("gpt-4o", "openai"),
            ("gpt-4o-2024-08-06", "openai"),
            ("gpt-4o", None),
            ("claude-sonnet-4-5-20250929", "anthropic"),
        ]
        if (found := pricing.lookup(model, provider)) is not None
    }

    assert kinds == {
        ("gpt-4o", "openai"): ("openai", "gpt-4o", "exact"),
        ("gpt-4o-2024-08-06", "openai"): ("openai", "gpt-4o", "exact"),
        ("gpt-4o", None): ("openai", "gpt-4o", "fallback"),  # provider inferred
        ("claude-sonnet-4-5-20250929", "anthropic"): (
            "anthropic",
            "claude-sonnet-4-5",
            "fallback",
        ),
    }
    assert pricing.lookup("gpt-4o").version.startswith("genai-prices ")  # type: ignore[union-attr]


def test_the_worst_case_prices_every_token_at_the_dearest_applicable_rate() -> None:
    from agentops_sdk import pricing

    # Under the tier: input at the dearest input-side rate (cache write $3.75), output at $15.
    assert pricing.worst_case("claude-sonnet-4-5", 1_000, 500, provider="anthropic") == (
        per_million(1_000, "3.75") + per_million(500, "15")
    )
    # Over it: $7.50 and $22.50.
    assert pricing.worst_case("claude-sonnet-4-5", 250_000, 500, provider="anthropic") == (
        per_million(250_000, "7.5") + per_million(500, "22.5")
    )
    assert pricing.worst_case("gpt-4o", 1000, 500) == per_million(1000, "2.5") + per_million(
        500, "10"
    )


def test_a_reasoning_rate_and_a_tier_of_ones_own_apply() -> None:
    price = ModelPrice(
        Rates(input=Decimal(1), output=Decimal(4), reasoning=Decimal(8)),
        (Tier(1000, Rates(input=Decimal(2), output=Decimal(6), reasoning=Decimal(12))),),
    )

    under = cost_of(price, Usage(1000, 300, reasoning_tokens=200))
    over = cost_of(price, Usage(1001, 300, reasoning_tokens=200))

    assert under.total == per_million(1000, "1") + per_million(100, "4") + per_million(200, "8")
    assert over.total == per_million(1001, "2") + per_million(100, "6") + per_million(200, "12")


def test_a_per_token_price_is_refused_as_such_and_a_per_million_one_is_not() -> None:
    assert check_rate("input", Decimal("3")) is None
    assert check_rate("input", Decimal("0")) is None
    per_token = check_rate("input", Decimal("0.000003"))
    assert per_token is not None
    assert "per million" in per_token
    assert "would be 3" in per_token
    assert check_rate("output", Decimal("5000")) is not None


@pytest.mark.filterwarnings("ignore")
def test_importing_the_sdk_does_not_import_the_price_data() -> None:
    code = (
        "import sys, agentops_sdk, agentops_sdk.pricing;"
        "assert 'genai_prices' not in sys.modules, 'imported';"
        "from agentops_sdk import pricing; pricing.catalog();"
        "assert 'genai_prices' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
