"""What an LLM call can cost at most, before it runs: what the budget stage reserves.

- Input tokens are bounded, not counted with a tokenizer: every token a byte-level tokenizer
  makes covers at least one byte of UTF-8, so the bytes of the request's text (messages, input,
  instructions, prompt, tool and response-format definitions, each key included) plus a few
  tokens per message and per request bound them. An image part given by URL counts
  :data:`IMAGE_TOKENS`; one given inline is counted by its bytes, which is more.
- Output tokens are bounded by the request's ``max_tokens`` (``max_completion_tokens``,
  ``max_output_tokens``), times ``n`` choices; a request that sets none is bounded by the
  stage's ``output_bound`` (:data:`DEFAULT_OUTPUT_BOUND`), since the price data does not say
  how much a model may write.
- Both are priced at the dearest rate that can apply
  (:func:`agentops_sdk.contract.pricing.worst_case_cost`), at the org's own price of the model
  when the hub sent one (:meth:`WorstCase.use_prices`, from the budget set: matched as the hub
  matches them, by the model's name, or the name the catalog resolves it to, at its provider
  or any), else with the price data of :mod:`agentops_sdk.pricing`. A model neither prices (or
  no ``pricing`` extra, for a model the org does not price) has an unknown cost: ``None``,
  never $0.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final

from agentops_sdk.contract.llm_requests import max_tokens_of
from agentops_sdk.contract.pricing import ModelPrice, cost_of, worst_case_cost

if TYPE_CHECKING:
    from agentops_sdk.contract.budgets import OrgModelPrice
    from agentops_sdk.contract.pricing import Usage

__all__ = ["DEFAULT_OUTPUT_BOUND", "IMAGE_TOKENS", "WorstCase", "input_bound", "output_bound"]

logger = logging.getLogger("agentops_sdk")

DEFAULT_OUTPUT_BOUND: Final = 32_768
"""Output tokens assumed for a call that sets no maximum."""
IMAGE_TOKENS: Final = 6_000
"""Input tokens assumed for an image given by URL."""
_PER_ITEM: Final = 8
"""Tokens a message (or any mapping of a request) may add beyond its text: role, separators."""
_PER_REQUEST: Final = 16
_INPUT_FIELDS: Final = (
    "messages",
    "input",
    "instructions",
    "prompt",
    "system",
    "tools",
    "functions",
    "response_format",
)
_IMAGE_KINDS: Final = frozenset({"image_url", "input_image", "image"})
_MAX_DEPTH: Final = 32
_PRICES_KEPT: Final = 3600.0
"""Seconds a model's looked-up price is kept (the price data changes at dates, rarely)."""


def input_bound(arguments: Mapping[str, Any]) -> int:
    """At least as many input tokens as a request with these arguments sends."""
    total = _PER_REQUEST
    for name in _INPUT_FIELDS:
        value = arguments.get(name)
        if value is not None:
            total += _size(value, 0)
    return total


def output_bound(arguments: Mapping[str, Any], default: int = DEFAULT_OUTPUT_BOUND) -> int:
    """At least as many output tokens as a request with these arguments can get back."""
    most = max_tokens_of(arguments)
    if most is None:
        most = default
    choices = arguments.get("n")
    if isinstance(choices, int) and not isinstance(choices, bool) and choices > 1:
        most *= choices
    return most


class WorstCase:
    """Prices the worst case of calls, keeping each model's price for an hour.

    A price without tiers (nearly all of them) is kept as rates per token, the worst case's two
    rates worked out: a call's worst case is then two multiplications, and its cost one per
    kind of token it used (the same value as :func:`~agentops_sdk.contract.pricing.cost_of`,
    which a tiered price still goes through)."""

    def __init__(self, output_default: int = DEFAULT_OUTPUT_BOUND) -> None:
        self.output_default = output_default
        self._prices: dict[tuple[str, str | None], tuple[float, _PerToken | None]] = {}
        self._own: dict[tuple[str, str], _PerToken] = {}
        self._lock = threading.Lock()
        self._unavailable_logged = False

    def use_prices(self, prices: Iterable[OrgModelPrice]) -> None:
        """Price calls at the org's own ``prices`` before the catalog's (all of them: a price
        left out is the catalog's again)."""
        own = {
            (price.model.lower(), price.provider.lower()): _PerToken(price.price())
            for price in prices
        }
        with self._lock:
            self._own = own
            self._prices = {}

    def tokens(self, arguments: Mapping[str, Any]) -> int:
        """The most input and output tokens a call with ``arguments`` can use (what a budget
        limiting tokens reserves)."""
        return input_bound(arguments) + output_bound(arguments, self.output_default)

    def of(
        self, model: str | None, provider: str | None, arguments: Mapping[str, Any]
    ) -> Decimal | None:
        """The most a call of ``model`` with ``arguments`` can cost, in USD; None: unknown."""
        if model is None:
            return None
        rates = self._price(model, provider)
        if rates is None:
            return None
        input_tokens = input_bound(arguments)
        output_tokens = output_bound(arguments, self.output_default)
        if rates.worst is None:
            return worst_case_cost(rates.price, input_tokens, output_tokens)
        worst_input, worst_output = rates.worst
        return input_tokens * worst_input + output_tokens * worst_output

    def actual(
        self, model: str | None, provider: str | None, usage: Usage | Mapping[str, int]
    ) -> Decimal | None:
        """What a call of ``model`` with ``usage`` (a :class:`Usage`, or a span's usage by
        field name) cost, as :func:`agentops_sdk.pricing.price` prices it, from the price kept
        for the model; None: unknown."""
        rates = None if model is None else self._price(model, provider)
        if rates is None:
            return None
        if type(usage) is dict or isinstance(usage, Mapping):  # a span's usage: a dict
            if rates.per_token is not None:
                return _cost_per_token(rates.per_token, usage)
            from agentops_sdk.pricing import usage_of

            usage = usage_of(usage)
        return cost_of(rates.price, usage).total

    def _price(self, model: str, provider: str | None) -> _PerToken | None:
        key = (model, provider)
        now = time.monotonic()
        kept = self._prices.get(key)
        if kept is not None and kept[0] > now:
            return kept[1]
        own = self._own
        rates = _own_price(own, model, provider or "") if own else None
        if rates is None:
            rates = self._catalog_price(model, provider, own)
        with self._lock:
            if own is self._own:  # not priced at prices replaced meanwhile
                self._prices[key] = (now + _PRICES_KEPT, rates)
        return rates

    def _catalog_price(
        self, model: str, provider: str | None, own: dict[tuple[str, str], _PerToken]
    ) -> _PerToken | None:
        """The catalog's price of ``model``, or the org's of the model the catalog resolves
        it to."""
        from agentops_sdk import pricing
        from agentops_sdk.errors import PricingUnavailable

        try:
            match = pricing.lookup(model, provider)
        except PricingUnavailable:
            if not self._unavailable_logged:
                self._unavailable_logged = True
                logger.warning(
                    "agentops: calls cannot be priced without the pricing extra "
                    '(pip install "agentops-hub[pricing]"): every call has an unknown cost '
                    "to budgets and cost limits"
                )
            return None
        if match is None:
            return None
        if own:
            found = _own_price(own, match.model, match.provider)
            if found is not None:
                return found
        return _PerToken(match.price)


def _own_price(
    own: dict[tuple[str, str], _PerToken], model: str, provider: str
) -> _PerToken | None:
    name = model.lower()
    return own.get((name, provider.lower())) or own.get((name, ""))


class _PerToken:
    """A model's price, and for one without tiers its rates per token (USD per million,
    scaled: exact) and the dearest input-side and output-side ones."""

    __slots__ = ("per_token", "price", "worst")

    def __init__(self, price: ModelPrice) -> None:
        self.price = price
        self.per_token: tuple[Decimal, ...] | None = None
        self.worst: tuple[Decimal, Decimal] | None = None
        if not price.tiers:
            plain, cached, write, output, reasoning = (
                rate.scaleb(-6) for rate in price.rates.effective()
            )
            self.per_token = (plain, cached, write, output, reasoning)
            self.worst = (max(plain, cached, write), max(output, reasoning))


def _cost_per_token(rates: tuple[Decimal, ...], usage: Mapping[str, int]) -> Decimal:
    """:func:`~agentops_sdk.contract.pricing.cost_of`'s total for a price without tiers, from
    a usage by field name (a token kind the usage leaves out costs nothing)."""
    plain, cached_rate, write_rate, output_rate, reasoning_rate = rates
    input_tokens = usage.get("input_tokens") or 0
    output_tokens = usage.get("output_tokens") or 0
    cached = usage.get("cached_input_tokens") or 0
    written = usage.get("cache_write_tokens") or 0
    reasoning = usage.get("reasoning_tokens") or 0
    total = max(input_tokens - cached - written, 0) * plain
    total += max(output_tokens - reasoning, 0) * output_rate
    if cached:
        total += cached * cached_rate
    if written:
        total += written * write_rate
    if reasoning:
        total += reasoning * reasoning_rate
    return total


def _size(value: Any, depth: int) -> int:
    """Tokens ``value`` may make at most (its UTF-8 bytes, and a few per mapping)."""
    kind = type(value)
    if kind is str:
        return len(value) if value.isascii() else len(value.encode("utf-8", "replace"))
    if kind is dict and depth < _MAX_DEPTH:  # a message: the common case, without ABC checks
        total = _PER_ITEM + (IMAGE_TOKENS if value.get("type") in _IMAGE_KINDS else 0)
        for key, item in value.items():
            total += len(key) if type(key) is str and key.isascii() else _size(key, depth + 1)
            if type(item) is str and item.isascii():
                total += len(item)
            else:
                total += _size(item, depth + 1)
        return total
    if kind is list and depth < _MAX_DEPTH:
        total = 1
        for item in value:
            total += _size(item, depth + 1)
        return total
    if isinstance(value, str):
        return len(value.encode("utf-8", "replace"))
    if depth > _MAX_DEPTH:
        return len(str(value).encode("utf-8", "replace"))
    if isinstance(value, Mapping):
        total = _PER_ITEM
        if value.get("type") in _IMAGE_KINDS:
            total += IMAGE_TOKENS
        for key, item in value.items():
            total += _size(key, depth + 1) + _size(item, depth + 1)
        return total
    if isinstance(value, (list, tuple)):
        return sum(_size(item, depth + 1) for item in value) + 1
    if value is None or isinstance(value, (bool, int, float)):
        return len(str(value))
    content = getattr(value, "content", None)
    if content is not None:  # a framework's message (LangChain's BaseMessage)
        return (
            _PER_ITEM
            + _size(content, depth + 1)
            + _size(getattr(value, "tool_calls", None), depth + 1)
            + _size(getattr(value, "additional_kwargs", None), depth + 1)
        )
    return len(str(value).encode("utf-8", "replace"))
