"""Local pricing: what an LLM call costs, priced in the process with the hub's own price data.

The prices are the snapshot bundled with the ``genai-prices`` package (``pip install
"agentops-hub[pricing]"``), read on first use and never updated over the network; the arithmetic
is :mod:`agentops_sdk.contract.pricing`, the same the hub prices spans with. Importing this module
is cheap: ``genai-prices`` is imported by the first call that needs a price (about 0.2 s), and
:class:`~agentops_sdk.errors.PricingUnavailable` is raised then if it is not installed.

    >>> from decimal import Decimal
    >>> from agentops_sdk import pricing
    >>> pricing.price("gpt-4o", pricing.Usage(input_tokens=1000, output_tokens=200))
    Decimal('0.0045')
    >>> pricing.worst_case("gpt-4o", input_tokens=1000, max_output_tokens=500)
    Decimal('0.0075')
    >>> pricing.price("a-model-nobody-prices", pricing.Usage(input_tokens=1)) is None
    True

- :func:`price`: the cost of a finished call, ``None`` for a model the data does not price
  (never a silent zero).
- :func:`worst_case`: the most a call can cost before it runs, every token at the dearest rate
  that can apply (what a budget reserves, and what ``cost_per_call`` policy limits check).
- :func:`lookup`: the :class:`PriceMatch` for a model: its rates and tiers, how it matched
  (``exact``: the model's own name or a listed alias at a named provider; ``fallback``: a
  pattern, a compact date, another provider's table, or a provider guessed from the model name)
  and the pricing version (:data:`Catalog.version`).
- :func:`catalog`: the whole :class:`Catalog`, to list and search (the hub's pricing table).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

from agentops_sdk.contract.pricing import (
    CostBreakdown,
    ModelPrice,
    Rates,
    Tier,
    Usage,
    cost_of,
    worst_case_cost,
)
from agentops_sdk.errors import PricingUnavailable

if TYPE_CHECKING:
    from genai_prices import types as genai

__all__ = [
    "Catalog",
    "CatalogEntry",
    "CostBreakdown",
    "MatchKind",
    "ModelPrice",
    "PriceMatch",
    "Rates",
    "Tier",
    "Usage",
    "catalog",
    "lookup",
    "price",
    "usage_of",
    "worst_case",
]

MatchKind = Literal["exact", "fallback"]


@dataclasses.dataclass(frozen=True, slots=True)
class PriceMatch:
    """The price a model name resolves to: ``provider`` and ``model`` name the catalog's entry."""

    provider: str
    model: str
    price: ModelPrice
    kind: MatchKind
    version: str
    """The price data's version (``genai-prices 0.2.5``)."""


@dataclasses.dataclass(frozen=True, slots=True)
class CatalogEntry:
    """One priced model of the catalog, at its current price."""

    provider: str
    model: str
    name: str | None
    price: ModelPrice
    deprecated: bool


def price(
    model: str,
    usage: Usage | Mapping[str, int],
    *,
    provider: str | None = None,
    at: dt.datetime | None = None,
) -> Decimal | None:
    """What a call of ``model`` with ``usage`` cost, in USD, at the price in force ``at`` (now);
    ``None`` if the price data has no such model. ``usage`` may be a mapping of the
    :class:`Usage` field names (a span's usage)."""
    match = lookup(model, provider, at=at)
    if match is None:
        return None
    return cost_of(match.price, usage_of(usage)).total


def worst_case(
    model: str,
    input_tokens: int,
    max_output_tokens: int,
    *,
    provider: str | None = None,
    at: dt.datetime | None = None,
) -> Decimal | None:
    """The most a call of ``model`` with at most ``input_tokens`` input tokens and
    ``max_output_tokens`` output tokens can cost, in USD (``None``: an unpriced model).

    Every input token is priced at the dearest input-side rate (plain, cached or cache write)
    and every output token at the dearest of output and reasoning, in the highest tier the
    input tokens can cross: a bound, never an underestimate of :func:`price`."""
    match = lookup(model, provider, at=at)
    if match is None:
        return None
    return worst_case_cost(match.price, input_tokens, max_output_tokens)


def lookup(
    model: str, provider: str | None = None, *, at: dt.datetime | None = None
) -> PriceMatch | None:
    """The price ``model`` (at ``provider``, if known) resolves to at ``at`` (now), or None."""
    return catalog().match(model, provider, at=at)


def usage_of(usage: Usage | Mapping[str, int]) -> Usage:
    """``usage`` as a :class:`Usage` (from a mapping of its field names; others are ignored)."""
    if isinstance(usage, Usage):
        return usage
    return Usage(
        input_tokens=usage.get("input_tokens") or 0,
        output_tokens=usage.get("output_tokens") or 0,
        cached_input_tokens=usage.get("cached_input_tokens") or 0,
        cache_write_tokens=usage.get("cache_write_tokens") or 0,
        reasoning_tokens=usage.get("reasoning_tokens") or 0,
    )


_lock = threading.Lock()
_catalog: Catalog | None = None


def catalog() -> Catalog:
    """The catalog of ``genai-prices``' bundled snapshot, built on first use."""
    global _catalog
    if _catalog is None:
        with _lock:
            if _catalog is None:
                _catalog = Catalog.bundled()
    return _catalog


class Catalog:
    """Models and their prices, from a ``genai-prices`` snapshot (no network, ever)."""

    def __init__(self, providers: list[genai.Provider], version: str) -> None:
        self._providers = providers
        self.version = version
        """The price data's version, recorded with every cost priced from it."""
        self._found: dict[tuple[str | None, str], tuple[Any, Any, MatchKind] | None] = {}
        self._converted: dict[int, tuple[Any, ModelPrice | None]] = {}

    @classmethod
    def bundled(cls) -> Catalog:
        """The snapshot the installed ``genai-prices`` ships (its update functions never run)."""
        try:
            import genai_prices
            from genai_prices.data import providers
        except ImportError as exc:
            raise PricingUnavailable(
                'local pricing needs genai-prices: pip install "agentops-hub[pricing]"'
            ) from exc
        return cls(providers, f"genai-prices {genai_prices.__version__}")

    def match(
        self, model: str, provider: str | None = None, *, at: dt.datetime | None = None
    ) -> PriceMatch | None:
        """The price of ``model`` at ``at`` (now), or None for a model without token prices."""
        key = (provider.lower() if provider else None, model.lower())
        found = self._found.get(key, _MISSING)
        if found is _MISSING:
            found = self._found[key] = self._find(*key)
        if found is None:
            return None
        owner, info, kind = found
        converted = self._price_of(info, at)
        if converted is None:
            return None
        return PriceMatch(owner.id, info.id, converted, kind, self.version)

    def timeless(self, model: str, provider: str | None = None) -> bool:
        """Whether ``model``'s price is the same at any time (no dated or hourly prices)."""
        found = self._found.get((provider.lower() if provider else None, model.lower()))
        return found is None or not isinstance(found[1].prices, list)

    def entries(
        self, search: str | None = None, provider: str | None = None
    ) -> Iterator[CatalogEntry]:
        """The catalog's token-priced models at their current prices, by provider then model;
        ``search``: those whose id or name contains it (any case)."""
        needle = search.lower() if search else None
        for owner in self._providers:
            if provider is not None and owner.id != provider.lower():
                continue
            for info in owner.models:
                if (
                    needle
                    and needle not in info.id.lower()
                    and needle not in (info.name or "").lower()
                ):
                    continue
                converted = self._price_of(info, None)
                if converted is not None:
                    yield CatalogEntry(
                        owner.id, info.id, info.name, converted, bool(info.deprecated)
                    )

    def _find(self, provider: str | None, model: str) -> tuple[Any, Any, MatchKind] | None:
        from genai_prices.data_snapshot import find_provider_by_id

        named = find_provider_by_id(self._providers, provider) if provider else None
        if named is not None:
            info = named.find_model(model, all_providers=self._providers)
            if info is not None:
                own = any(info is candidate for candidate in named.models)
                exact = own and (model == info.id or model in _exact_names(info.match))
                return named, info, "exact" if exact else "fallback"
        for owner in self._providers:  # the provider, guessed from the model's name
            if owner.model_match is not None and owner.model_match.is_match(model):
                info = owner.find_model(model, all_providers=self._providers)
                if info is not None:
                    return owner, info, "fallback"
        return None

    def _price_of(self, info: genai.ModelInfo, at: dt.datetime | None) -> ModelPrice | None:
        source = info.get_prices(at or dt.datetime.now(dt.UTC))
        cached = self._converted.get(id(source))
        if cached is None or cached[0] is not source:
            cached = self._converted[id(source)] = (source, _converted(source))
        return cached[1]


_MISSING: Any = object()

# Our kinds of tokens, and the genai-prices price keys they take their rate from (in order).
_KEYS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("input", ("input_mtok",)),
    ("output", ("output_mtok",)),
    ("cached_input", ("cache_read_mtok",)),
    ("cache_write", ("cache_write_mtok", "cache_write_5m_mtok")),
    ("reasoning", ("output_reasoning_mtok",)),
)


def _converted(source: genai.ModelPrice) -> ModelPrice | None:
    """A genai-prices price as ours (tiers of each rate folded into tiers of the whole price);
    None when it prices no input or output tokens (a per-request or per-image model)."""
    from genai_prices.types import TieredPrices

    values: dict[str, Any] = {}
    for ours, theirs in _KEYS:
        values[ours] = next(
            (v for v in (getattr(source, key, None) for key in theirs) if v is not None), None
        )
    if values["input"] is None and values["output"] is None:
        return None
    thresholds = sorted(
        {t.start for v in values.values() if isinstance(v, TieredPrices) for t in v.tiers}
    )

    def rates(threshold: int | None) -> Rates:
        picked: dict[str, Decimal | None] = {}
        for name, value in values.items():
            if isinstance(value, TieredPrices):
                rate = value.base
                for tier in value.tiers:
                    if threshold is not None and tier.start <= threshold:
                        rate = tier.price
                picked[name] = rate
            else:
                picked[name] = value
        return Rates(
            input=picked["input"] or Decimal(0),
            output=picked["output"] or Decimal(0),
            cached_input=picked["cached_input"],
            cache_write=picked["cache_write"],
            reasoning=picked["reasoning"],
        )

    return ModelPrice(rates(None), tuple(Tier(start, rates(start)) for start in thresholds))


def _exact_names(clause: Any) -> frozenset[str]:
    """The names a model's match logic lists one by one (its aliases), lower case."""
    from genai_prices.types import ClauseEquals, ClauseOr

    if isinstance(clause, ClauseEquals):
        return frozenset({clause.equals.lower()})
    if isinstance(clause, ClauseOr):
        return frozenset().union(*(_exact_names(inner) for inner in clause.or_))
    return frozenset()  # a pattern, or a conjunction: no name matched one by one
