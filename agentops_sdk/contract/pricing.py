"""Prices and the cost of an LLM call: the one arithmetic the SDK and the hub share.

A :class:`ModelPrice` holds a model's :class:`Rates` in USD per million tokens, for five kinds
of tokens, and optional :class:`Tier` s: when a call's input tokens exceed a tier's threshold,
*every* token of the call is priced at that tier's rates (the "cliff" the providers publish,
e.g. a dearer rate for prompts over 200,000 tokens). A :class:`Usage` counts a call's tokens the
way OpenAI reports them:

- ``input_tokens`` is every input token, the cached ones and the cache writes included;
- ``output_tokens`` is every output token, the reasoning ones included.

So :func:`cost_of` prices ``input - cached - cache writes`` at the input rate, the cached and
cache-write tokens at theirs, ``output - reasoning`` at the output rate and the reasoning tokens at
the reasoning rate. A rate left out (``None``) is the rate those tokens would pay without it:
cached input and cache writes pay the input rate, reasoning the output rate. A usage whose parts
exceed its total (more cached than input tokens) prices each part as given and the rest as zero.

Everything is :class:`~decimal.Decimal`, exact: no float touches a price or a cost.

    >>> price = ModelPrice(Rates(input=Decimal("2.5"), output=Decimal("10")))
    >>> cost_of(price, Usage(input_tokens=1000, output_tokens=200)).total
    Decimal('0.0045')

:func:`check_rate` holds the unit sanity rule for prices that people type: USD per *million*
tokens, between :data:`MIN_RATE` and :data:`MAX_RATE` (or zero); a per-token price
(``0.000003`` for $3 per million) is far below the floor.
"""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from typing import Final

__all__ = [
    "MAX_RATE",
    "MIN_RATE",
    "PER_MILLION",
    "CostBreakdown",
    "ModelPrice",
    "Rates",
    "Tier",
    "Usage",
    "check_rate",
    "cost_of",
    "worst_case_cost",
]

PER_MILLION: Final = Decimal(1_000_000)
MIN_RATE: Final = Decimal("0.001")
"""The smallest non-zero price per million tokens that is plausible (the cheapest published
rate, a cache read, is above it); below it the number is almost surely a per-token price."""
MAX_RATE: Final = Decimal(1000)
"""The largest plausible price per million tokens (the dearest published rate is $600)."""
_ZERO: Final = Decimal(0)


@dataclasses.dataclass(frozen=True, slots=True)
class Rates:
    """USD per million tokens of each kind; ``None``: the rate those tokens pay without it."""

    input: Decimal
    output: Decimal
    cached_input: Decimal | None = None
    """Input tokens read from the provider's prompt cache (``None``: the input rate)."""
    cache_write: Decimal | None = None
    """Input tokens written to the prompt cache (``None``: the input rate)."""
    reasoning: Decimal | None = None
    """Output tokens spent reasoning (``None``: the output rate)."""

    def effective(self) -> tuple[Decimal, Decimal, Decimal, Decimal, Decimal]:
        """(input, cached input, cache write, output, reasoning), the defaults filled in."""
        return (
            self.input,
            self.input if self.cached_input is None else self.cached_input,
            self.input if self.cache_write is None else self.cache_write,
            self.output,
            self.output if self.reasoning is None else self.reasoning,
        )


@dataclasses.dataclass(frozen=True, slots=True)
class Tier:
    """Rates for every token of a call whose input tokens exceed ``above_input_tokens``."""

    above_input_tokens: int
    rates: Rates


@dataclasses.dataclass(frozen=True, slots=True)
class ModelPrice:
    """A model's base rates and its tiers (sorted by threshold)."""

    rates: Rates
    tiers: tuple[Tier, ...] = ()

    def __post_init__(self) -> None:
        ordered = tuple(sorted(self.tiers, key=lambda tier: tier.above_input_tokens))
        object.__setattr__(self, "tiers", ordered)

    def rates_for(self, input_tokens: int) -> Rates:
        """The rates a call with ``input_tokens`` input tokens pays (its highest tier crossed)."""
        rates = self.rates
        for tier in self.tiers:
            if input_tokens > tier.above_input_tokens:
                rates = tier.rates
        return rates


@dataclasses.dataclass(frozen=True, slots=True)
class Usage:
    """A call's tokens: ``input_tokens`` includes the cached and cache-write ones,
    ``output_tokens`` the reasoning ones."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class CostBreakdown:
    """What each kind of token of a call cost, in USD."""

    input: Decimal
    cached_input: Decimal
    cache_write: Decimal
    output: Decimal
    reasoning: Decimal

    @property
    def total(self) -> Decimal:
        """The call's cost in USD."""
        return self.input + self.cached_input + self.cache_write + self.output + self.reasoning


def cost_of(price: ModelPrice, usage: Usage) -> CostBreakdown:
    """The exact cost of ``usage`` at ``price`` (see the module's docstring for the rules)."""
    input_rate, cached_rate, write_rate, output_rate, reasoning_rate = price.rates_for(
        usage.input_tokens
    ).effective()
    plain_input = max(usage.input_tokens - usage.cached_input_tokens - usage.cache_write_tokens, 0)
    plain_output = max(usage.output_tokens - usage.reasoning_tokens, 0)
    return CostBreakdown(
        input=plain_input * input_rate / PER_MILLION,
        cached_input=usage.cached_input_tokens * cached_rate / PER_MILLION,
        cache_write=usage.cache_write_tokens * write_rate / PER_MILLION,
        output=plain_output * output_rate / PER_MILLION,
        reasoning=usage.reasoning_tokens * reasoning_rate / PER_MILLION,
    )


def worst_case_cost(price: ModelPrice, input_tokens: int, max_output_tokens: int) -> Decimal:
    """The most a call with at most ``input_tokens`` input and ``max_output_tokens`` output tokens
    can cost: every input token at the dearest input-side rate and every output token at the
    dearest output-side rate, of every tier up to the one ``input_tokens`` crosses."""
    candidates = [price.rates] + [
        tier.rates for tier in price.tiers if input_tokens > tier.above_input_tokens
    ]
    input_rate = _ZERO
    output_rate = _ZERO
    for rates in candidates:
        plain, cached, write, output, reasoning = rates.effective()
        input_rate = max(input_rate, plain, cached, write)
        output_rate = max(output_rate, output, reasoning)
    return (input_tokens * input_rate + max_output_tokens * output_rate) / PER_MILLION


def check_rate(name: str, value: Decimal) -> str | None:
    """Why ``value`` is not a plausible price in USD per million tokens (None: it is)."""
    if not value.is_finite() or value < 0:
        return f"{name}: {value} is not a price (a finite number, zero or more)"
    if value == 0:
        return None
    if value < MIN_RATE:
        return (
            f"{name}: {value} is USD per million tokens, so this is ${value} for a million "
            f"tokens, implausibly cheap (the floor is {MIN_RATE}). Was it typed per token? "
            f"Per million, it would be {(value * PER_MILLION).normalize():f}."
        )
    if value > MAX_RATE:
        return (
            f"{name}: {value} is USD per million tokens, above the plausible ceiling of "
            f"{MAX_RATE}. Prices are per million tokens, not per thousand or per billion."
        )
    return None
