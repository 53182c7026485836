"""The org's own prices as its SDKs read them, with its budgets: overrides of the catalog's
prices and custom models (``/api/v1/pricing/overrides``), so that calls reserve at the prices
the hub charges them at. They travel in the budget set
(:attr:`~agentops_sdk.contract.budgets.BudgetSet.prices`), whose version grows when they change
(:func:`~agentops_server.services.budgets.definitions.prices_changed`)."""

from __future__ import annotations

import uuid
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from agentops_sdk.contract.budgets import OrgModelPrice
from agentops_sdk.contract.pricing import Rates
from agentops_server.db.models import ModelPriceRow
from agentops_server.services.budgets.state import plain
from agentops_server.services.costs.prices import org_price_of

__all__ = ["org_prices"]


async def org_prices(session: AsyncSession, org_id: uuid.UUID) -> tuple[OrgModelPrice, ...]:
    """The org's own prices, by model and provider."""
    rows = await session.scalars(
        select(ModelPriceRow)
        .where(ModelPriceRow.org_id == org_id)
        .order_by(ModelPriceRow.model, ModelPriceRow.provider)
    )
    return tuple(_wire_price(row) for row in rows)


def _wire_price(row: ModelPriceRow) -> OrgModelPrice:
    price = org_price_of(row).price
    tiers = [
        {"above_input_tokens": tier.above_input_tokens, **_wire_rates(tier.rates)}
        for tier in price.tiers
    ]
    return OrgModelPrice.model_validate(
        {"model": row.model, "provider": row.provider, **_wire_rates(price.rates), "tiers": tiers}
    )


def _wire_rates(rates: Rates) -> dict[str, Decimal | None]:
    def wire(value: Decimal | None) -> Decimal | None:
        return None if value is None else plain(value)

    return {
        "input": plain(rates.input),
        "output": plain(rates.output),
        "cached_input": wire(rates.cached_input),
        "cache_write": wire(rates.cache_write),
        "reasoning": wire(rates.reasoning),
    }
