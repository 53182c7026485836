"""An org's own prices: overrides of the catalog's and custom models, and the effective prices.

A price is in USD per million tokens, as Decimal (strings on the wire), for input, cached input,
cache writes, output and reasoning (the last three optional: see
:mod:`agentops_sdk.contract.pricing`), with optional tiers by input-token threshold. Every rate is
checked against the unit (:func:`~agentops_sdk.contract.pricing.check_rate`): a per-token price
(``0.000003`` for $3 a million) or one above the plausible ceiling is refused with
``price_not_per_million``, saying which unit is meant. ``provider`` ``""`` makes the price hold
whatever provider a span names. A price for a model the catalog knows is an ``override``; for
another, a ``custom`` model. Every change is audited (``price.created``, ``price.updated``,
``price.deleted``) in its transaction; it prices what is ingested from then on, and a recompute
(:mod:`.totals`) re-prices what was stored before. A change also grows the version of the org's
budget set, which carries the org's prices to its SDKs (they reserve at them): the caller
announces it (``budgets_changed``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from decimal import Decimal
from typing import Annotated, Any, Literal

import msgspec
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from agentops_sdk.contract.pricing import check_rate
from agentops_sdk.pricing import catalog
from agentops_server.db.models import ModelPriceRow
from agentops_server.refusals import Conflict, Invalid, NotFound
from agentops_server.services import audit
from agentops_server.services.budgets.definitions import prices_changed
from agentops_server.services.costs.prices import (
    PriceBook,
    forget_price_book,
    load_price_book,
    org_price_of,
    price_version,
)
from agentops_server.values import Text

__all__ = [
    "EffectivePrice",
    "EffectivePriceList",
    "NewPrice",
    "OrgPriceList",
    "OrgPriceView",
    "PriceTier",
    "create_price",
    "delete_price",
    "effective_prices",
    "get_price",
    "list_prices",
    "quote",
    "update_price",
]

MAX_TIERS = 8
Rate = Annotated[Decimal, msgspec.Meta(description="USD per million tokens.")]


class PriceTier(msgspec.Struct, forbid_unknown_fields=True):
    """Rates for every token of a call whose input tokens exceed ``above_input_tokens``."""

    above_input_tokens: Annotated[int, msgspec.Meta(ge=1)]
    input: Rate
    output: Rate
    cached_input: Rate | None = None
    cache_write: Rate | None = None
    reasoning: Rate | None = None


class NewPrice(msgspec.Struct, forbid_unknown_fields=True):
    """A price for ``model`` (at ``provider``; ``""``: any provider), USD per million tokens."""

    model: Text
    input: Rate
    output: Rate
    provider: Text = Text("")
    cached_input: Rate | None = None
    cache_write: Rate | None = None
    reasoning: Rate | None = None
    tiers: Annotated[list[PriceTier], msgspec.Meta(max_length=MAX_TIERS)] = msgspec.field(
        default_factory=list
    )
    note: Text = Text("")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class EffectivePriceList:
    """Models at the prices the org's calls of them are priced at."""

    items: list[EffectivePrice]
    catalog_version: str


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class OrgPriceView:
    """One of the org's prices, with its kind and the version costs priced at it record."""

    id: uuid.UUID
    provider: str
    model: str
    kind: Literal["override", "custom"]
    input: Decimal
    output: Decimal
    cached_input: Decimal | None
    cache_write: Decimal | None
    reasoning: Decimal | None
    tiers: list[dict[str, Any]]
    note: str
    version: str
    created_at: dt.datetime
    updated_at: dt.datetime


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class OrgPriceList:
    """The org's own prices, by model then provider."""

    items: list[OrgPriceView]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class EffectivePrice:
    """The price a model resolves to for the org (``match`` ``unmatched``: none)."""

    model: str
    provider: str | None
    match: Literal["exact", "fallback", "unmatched"]
    source: Literal["catalog", "org"] | None
    priced_model: str | None
    version: str
    input: Decimal | None
    output: Decimal | None
    cached_input: Decimal | None
    cache_write: Decimal | None
    reasoning: Decimal | None
    tiers: list[dict[str, Any]]


async def list_prices(session: AsyncSession, org_id: uuid.UUID) -> OrgPriceList:
    """The org's prices, by model then provider."""
    rows = await session.scalars(
        select(ModelPriceRow)
        .where(ModelPriceRow.org_id == org_id)
        .order_by(ModelPriceRow.model, ModelPriceRow.provider)
    )
    return OrgPriceList(items=[_view(row) for row in rows])


async def get_price(session: AsyncSession, org_id: uuid.UUID, price_id: uuid.UUID) -> OrgPriceView:
    """One of the org's prices (``price_not_found``)."""
    return _view(await _row(session, org_id, price_id))


async def create_price(
    session: AsyncSession, org_id: uuid.UUID, actor: audit.Actor, data: NewPrice
) -> OrgPriceView:
    """Add a price (``price_exists`` for a model and provider already priced); audited."""
    _check(data)
    now = dt.datetime.now(dt.UTC)
    row = ModelPriceRow(org_id=org_id, id=uuid.uuid4(), created_at=now, **_values(data, now))
    session.add(row)
    await audit.record(
        session,
        org_id,
        actor,
        "price.created",
        target_type="price",
        target_id=row.id,
        after=_snapshot(row),
    )
    await _commit(session, org_id, data)
    forget_price_book(org_id)
    return _view(row)


async def update_price(
    session: AsyncSession,
    org_id: uuid.UUID,
    actor: audit.Actor,
    price_id: uuid.UUID,
    data: NewPrice,
) -> OrgPriceView:
    """Replace a price with ``data``; audited with before and after."""
    _check(data)
    row = await _row(session, org_id, price_id)
    before = _snapshot(row)
    for name, value in _values(data, dt.datetime.now(dt.UTC)).items():
        setattr(row, name, value)
    await audit.record(
        session,
        org_id,
        actor,
        "price.updated",
        target_type="price",
        target_id=row.id,
        before=before,
        after=_snapshot(row),
    )
    await _commit(session, org_id, data)
    forget_price_book(org_id)
    return _view(row)


async def delete_price(
    session: AsyncSession, org_id: uuid.UUID, actor: audit.Actor, price_id: uuid.UUID
) -> None:
    """Remove a price (the catalog's, if any, applies again); audited."""
    row = await _row(session, org_id, price_id)
    before = _snapshot(row)
    await session.delete(row)
    await audit.record(
        session,
        org_id,
        actor,
        "price.deleted",
        target_type="price",
        target_id=price_id,
        before=before,
    )
    await prices_changed(session, org_id)
    await session.commit()
    forget_price_book(org_id)


async def quote(
    session: AsyncSession, org_id: uuid.UUID, model: str, provider: str | None
) -> EffectivePrice:
    """The price a call of ``model`` through ``provider`` would be priced at now."""
    book = await load_price_book(session, org_id, fresh=True)
    return _effective(book, model, provider)


async def effective_prices(
    session: AsyncSession,
    org_id: uuid.UUID,
    *,
    search: str | None,
    provider: str | None,
    limit: int,
) -> EffectivePriceList:
    """The org's own prices and the catalog's models whose name contains ``search``, each at
    the price the org's calls of it are priced at (own prices first, then by provider)."""
    book = await load_price_book(session, org_id, fresh=True)
    needle = (search or "").lower()
    found: list[EffectivePrice] = []
    for own in (await list_prices(session, org_id)).items:
        if needle in own.model.lower() and provider in (None, own.provider):
            found.append(_effective(book, own.model, own.provider or None))
    for entry in book.catalog.entries(search, provider):
        if len(found) >= limit:
            break
        found.append(_effective(book, entry.model, entry.provider))
    return EffectivePriceList(items=found[:limit], catalog_version=book.catalog.version)


def _effective(book: PriceBook, model: str, provider: str | None) -> EffectivePrice:
    found = book.quote(model, provider)
    if found is None:
        return EffectivePrice(
            model=model,
            provider=provider,
            match="unmatched",
            source=None,
            priced_model=None,
            version=book.catalog.version,
            input=None,
            output=None,
            cached_input=None,
            cache_write=None,
            reasoning=None,
            tiers=[],
        )
    rates = found.price.rates
    return EffectivePrice(
        model=model,
        provider=provider,
        match=found.match,
        source=found.source,
        priced_model=found.priced_model,
        version=found.version,
        input=_plain(rates.input),
        output=_plain(rates.output),
        cached_input=_plain(rates.cached_input),
        cache_write=_plain(rates.cache_write),
        reasoning=_plain(rates.reasoning),
        tiers=[
            {"above_input_tokens": tier.above_input_tokens, **_rates_dict(tier.rates)}
            for tier in found.price.tiers
        ],
    )


def _check(data: NewPrice) -> None:
    """Refuse rates that are not plausible USD per million tokens, and disordered tiers."""
    if not data.model or data.model != data.model.strip() or data.provider != data.provider.strip():
        raise Invalid("invalid_model_name", "model and provider: no outer space, a model named")
    if len(data.model) > 256 or len(data.provider) > 64 or len(data.note) > 1000:
        raise Invalid(
            "invalid_model_name", "at most 256 characters of model, 64 of provider, 1000 of note"
        )
    sets = [("", data)] + [(f"tiers.{n}.", tier) for n, tier in enumerate(data.tiers)]
    for prefix, rates in sets:
        for name in ("input", "output", "cached_input", "cache_write", "reasoning"):
            value = getattr(rates, name)
            problem = None if value is None else check_rate(prefix + name, value)
            if problem is not None:
                raise Invalid("price_not_per_million", problem)
    thresholds = [tier.above_input_tokens for tier in data.tiers]
    if thresholds != sorted(set(thresholds)):
        raise Invalid("invalid_tiers", "tiers: thresholds must be distinct and increasing")


def _values(data: NewPrice, now: dt.datetime) -> dict[str, Any]:
    return {
        "provider": data.provider.lower(),
        "model": data.model.lower(),
        "input": data.input,
        "output": data.output,
        "cached_input": data.cached_input,
        "cache_write": data.cache_write,
        "reasoning": data.reasoning,
        "tiers": [
            {"above_input_tokens": tier.above_input_tokens, **_rates_dict(tier)}
            for tier in data.tiers
        ],
        "note": data.note,
        "updated_at": now,
    }


def _rates_dict(rates: Any) -> dict[str, str | None]:
    return {
        name: None if getattr(rates, name) is None else format(_plain(getattr(rates, name)), "f")
        for name in ("input", "output", "cached_input", "cache_write", "reasoning")
    }


def _plain(value: Decimal | None) -> Decimal | None:
    return None if value is None else _plain_rate(value)


def _plain_rate(value: Decimal) -> Decimal:
    """``value`` without trailing zeros, never in exponent form (``1.5000`` -> ``1.5``)."""
    return value.quantize(Decimal(1)) if value == value.to_integral() else value.normalize()


async def _row(session: AsyncSession, org_id: uuid.UUID, price_id: uuid.UUID) -> ModelPriceRow:
    row = await session.get(ModelPriceRow, (org_id, price_id))
    if row is None:
        raise NotFound("price_not_found", f"This org has no price {price_id}.")
    return row


async def _commit(session: AsyncSession, org_id: uuid.UUID, data: NewPrice) -> None:
    """Commit a created or changed price, the org's budget set growing a version with it."""
    try:
        await session.flush()
        await prices_changed(session, org_id)
        await session.commit()
    except IntegrityError:
        await session.rollback()
        where = f" at {data.provider}" if data.provider else " for any provider"
        raise Conflict(
            "price_exists", f"The org already prices {data.model}{where}: change that price."
        ) from None


def _snapshot(row: ModelPriceRow) -> dict[str, Any]:
    return {
        "provider": row.provider,
        "model": row.model,
        **_rates_dict(row),
        "tiers": row.tiers,
        "note": row.note,
    }


def _view(row: ModelPriceRow) -> OrgPriceView:
    known = catalog().match(row.model, row.provider or None) is not None
    return OrgPriceView(
        id=row.id,
        provider=row.provider,
        model=row.model,
        kind="override" if known else "custom",
        input=_plain_rate(row.input),
        output=_plain_rate(row.output),
        cached_input=_plain(row.cached_input),
        cache_write=_plain(row.cache_write),
        reasoning=_plain(row.reasoning),
        tiers=row.tiers,
        note=row.note,
        version=price_version(org_price_of(row).price),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )
