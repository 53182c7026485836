"""The prices an org's LLM calls are priced at, and pricing span rows at ingest.

A :class:`PriceBook` is the catalog (``genai-prices``' bundled snapshot, through
:func:`agentops_sdk.pricing.catalog`) under the org's own prices (:mod:`.org_prices`). A model
name resolves, in order, to:

1. the org's price for exactly that name (at the span's provider, or for any provider):
   ``exact``, version ``org:<hash of the price>``;
2. the catalog's model it matches (``exact`` or ``fallback``, see :mod:`agentops_sdk.pricing`),
   at the org's price for that catalog model if it has one (version ``org:<hash>``), else at
   the catalog's (version ``genai-prices <version>``);
3. nothing: ``unmatched``, cost NULL (never a silent zero).

:func:`price_span_rows` prices span rows before they are stored: every span that carries LLM
info gets ``cost`` (Decimal, at the price in force when the span started), ``cost_match``
(``exact``, ``fallback``, ``unmatched``, or ``no_usage`` for a call that reported no tokens),
``pricing_version`` and ``priced_model`` (``provider/model`` of the price used). The cost the SDK
sent stays in ``sdk_cost``, beside it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import hashlib
import time
import uuid
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any, Literal

import anyio.to_thread
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from agentops_sdk.contract.pricing import ModelPrice, Rates, Tier, Usage, cost_of
from agentops_sdk.pricing import Catalog, catalog
from agentops_server.db.models import ModelPriceRow

__all__ = [
    "CostMatch",
    "OrgPrice",
    "PriceBook",
    "PriceSource",
    "Quote",
    "is_call",
    "load_catalog",
    "start_loading_catalog",
    "forget_price_book",
    "load_price_book",
    "org_price_of",
    "price_span_rows",
    "price_version",
]

CostMatch = Literal["exact", "fallback", "unmatched", "no_usage"]
PriceSource = Literal["catalog", "org"]


@dataclasses.dataclass(frozen=True, slots=True)
class OrgPrice:
    """One of the org's own prices (a row of ``model_prices``)."""

    id: uuid.UUID
    provider: str
    model: str
    price: ModelPrice
    version: str


@dataclasses.dataclass(frozen=True, slots=True)
class Quote:
    """What a model name resolves to: the price, how it matched, where the price came from."""

    price: ModelPrice
    match: Literal["exact", "fallback"]
    source: PriceSource
    version: str
    provider: str
    model: str

    @property
    def priced_model(self) -> str:
        """``provider/model`` of the price used (``provider`` empty: any provider)."""
        return f"{self.provider}/{self.model}" if self.provider else self.model


class PriceBook:
    """The catalog under one org's own prices; quotes are remembered for the book's life (one
    request or one job), so a batch of calls of one model resolves it once."""

    def __init__(self, prices: Catalog, own: Iterable[OrgPrice] = ()) -> None:
        self.catalog = prices
        self._own = {(price.model.lower(), price.provider.lower()): price for price in own}
        self._quotes: dict[tuple[str, str], Quote | None] = {}

    def quote(
        self, model: str, provider: str | None = None, at: dt.datetime | None = None
    ) -> Quote | None:
        """The price ``model`` (called through ``provider``) resolves to at ``at`` (now)."""
        key = (model, provider or "")
        if key in self._quotes:
            return self._quotes[key]
        found = self._resolve(model, provider, at)
        if self.catalog.timeless(model, provider):  # the same at any time: keep it
            self._quotes[key] = found
        return found

    def _resolve(self, model: str, provider: str | None, at: dt.datetime | None) -> Quote | None:
        name, via = model.lower(), (provider or "").lower()
        own = self._own_price(name, via)
        if own is not None:
            return Quote(own.price, "exact", "org", own.version, own.provider, own.model)
        match = self.catalog.match(model, provider, at=at)
        if match is None:
            return None
        own = self._own_price(match.model.lower(), match.provider)
        if own is not None:
            return Quote(own.price, match.kind, "org", own.version, own.provider, own.model)
        return Quote(match.price, match.kind, "catalog", match.version, match.provider, match.model)

    def _own_price(self, model: str, provider: str) -> OrgPrice | None:
        return self._own.get((model, provider)) or self._own.get((model, ""))


BOOK_TTL = 2.0
"""Seconds an org's price book is reused by ingest in one process: a price saved through another
hub process prices calls ingested at most this long after it (at once through this one)."""
_books: dict[uuid.UUID, tuple[float, PriceBook]] = {}


async def load_price_book(
    session: AsyncSession, org_id: uuid.UUID, *, fresh: bool = False
) -> PriceBook:
    """The org's price book: the catalog under the org's own prices (one query), reused for
    :data:`BOOK_TTL` seconds unless ``fresh`` (recomputes and the API read it fresh)."""
    now = time.monotonic()
    held = _books.get(org_id)
    if held is not None and not fresh and now - held[0] < BOOK_TTL:
        return held[1]
    rows = await session.scalars(select(ModelPriceRow).where(ModelPriceRow.org_id == org_id))
    book = PriceBook(await load_catalog(), [org_price_of(row) for row in rows])
    if len(_books) > 10_000:  # bounded: orgs that stopped sending are forgotten
        _books.clear()
    _books[org_id] = (now, book)
    return book


def forget_price_book(org_id: uuid.UUID) -> None:
    """Drop the org's reused price book (its prices changed through this process)."""
    _books.pop(org_id, None)


async def load_catalog() -> Catalog:
    """The catalog, read on a worker thread the first time (about 0.3 s), never on the event
    loop."""
    global _catalog
    if _catalog is None:
        _catalog = await anyio.to_thread.run_sync(catalog)
    return _catalog


def start_loading_catalog() -> None:
    """Begin reading the catalog in the background (the app's start), without holding the
    start up: the first calls to price wait for it if it is not read yet."""
    task = asyncio.get_running_loop().create_task(load_catalog())
    _loading.add(task)  # held until done: the loop keeps only weak references to tasks
    task.add_done_callback(_loading.discard)


_catalog: Catalog | None = None
_loading: set[asyncio.Task[Catalog]] = set()


def org_price_of(row: ModelPriceRow) -> OrgPrice:
    """The stored row as a price, with its version."""
    price = ModelPrice(
        Rates(
            input=row.input,
            output=row.output,
            cached_input=row.cached_input,
            cache_write=row.cache_write,
            reasoning=row.reasoning,
        ),
        tuple(_tier(tier) for tier in row.tiers),
    )
    return OrgPrice(row.id, row.provider, row.model, price, price_version(price))


def price_version(price: ModelPrice) -> str:
    """``org:`` and a hash of the price's rates and tiers: it changes exactly when they do."""
    parts = [_rates_text(price.rates)]
    parts += [f"{tier.above_input_tokens}>{_rates_text(tier.rates)}" for tier in price.tiers]
    return "org:" + hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


_UNPRICED: dict[str, Any] = {"cost": None, "pricing_version": None, "priced_model": None}


def price_span_rows(book: PriceBook, rows: Sequence[dict[str, Any]]) -> None:
    """Set the cost columns of every span row that carries an LLM call (see the module)."""
    for row in rows:
        if not is_call(row):
            continue
        model = row["model"]
        if row["input_tokens"] is None and row["output_tokens"] is None:
            row.update(_UNPRICED, cost_match="no_usage")
            continue
        quote = book.quote(model, row["provider"], row["started_at"]) if model else None
        if quote is None:
            row.update(_UNPRICED, cost_match="unmatched", pricing_version=book.catalog.version)
            continue
        usage = Usage(
            input_tokens=row["input_tokens"] or 0,
            output_tokens=row["output_tokens"] or 0,
            cached_input_tokens=row["cached_input_tokens"] or 0,
            cache_write_tokens=row["cache_write_tokens"] or 0,
            reasoning_tokens=row["reasoning_tokens"] or 0,
        )
        row["cost"] = cost_of(quote.price, usage).total
        row["cost_match"] = quote.match
        row["pricing_version"] = quote.version
        row["priced_model"] = quote.priced_model


def is_call(row: dict[str, Any]) -> bool:
    """Whether the span row is an LLM call (its kind, or the model or tokens it reports)."""
    return (
        row["kind"] == "llm"
        or row["model"] is not None
        or row["input_tokens"] is not None
        or row["output_tokens"] is not None
    )


def _tier(stored: dict[str, Any]) -> Tier:
    def rate(name: str) -> Decimal | None:
        value = stored.get(name)
        return None if value is None else Decimal(value)

    return Tier(
        int(stored["above_input_tokens"]),
        Rates(
            input=Decimal(stored["input"]),
            output=Decimal(stored["output"]),
            cached_input=rate("cached_input"),
            cache_write=rate("cache_write"),
            reasoning=rate("reasoning"),
        ),
    )


def _rates_text(rates: Rates) -> str:
    return ",".join(
        "-" if value is None else format(value.normalize(), "f")
        for value in (
            rates.input,
            rates.cached_input,
            rates.cache_write,
            rates.output,
            rates.reasoning,
        )
    )
