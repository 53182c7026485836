"""The pricing page: the org's own prices (overrides of the catalog and custom models), USD per
million tokens; add, change and delete one.

Each action is the service ``/api/v1/pricing/overrides`` calls
(:mod:`agentops_server.services.costs.org_prices`), then tells the org's SDKs as the API does:
a rate that is not plausible per million tokens is refused (``price_not_per_million``) and the
form shows why. Editing keeps a price's tiers (the API edits them).
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import PathParameter
from sqlalchemy.ext.asyncio import AsyncSession

from agentops_server.api.v1.actors import actor_of
from agentops_server.auth.guards import requires
from agentops_server.refusals import Refused
from agentops_server.security.permissions import Permission
from agentops_server.security.principal import Principal
from agentops_server.services.budgets.definitions import BudgetsChanged
from agentops_server.services.costs import org_prices
from agentops_server.services.costs.org_prices import NewPrice
from agentops_server.web.forms import fields_of, validated
from agentops_server.web.pages import done
from agentops_server.web.settings.tabs import render, settle

__all__ = ["PricingPages"]

PATH = "/settings/pricing"
PRICE = PATH + "/{price_id:uuid}"
PriceId = Annotated[uuid.UUID, PathParameter()]
RATES = ("input", "output", "cached_input", "cache_write", "reasoning")
OPTIONAL = ("cached_input", "cache_write", "reasoning")


class PricingPages(Controller):
    """``/settings/pricing``: read with ``pricing:read``, change with ``pricing:write``."""

    @get(PATH, guards=[requires(Permission.PRICING_READ)])
    async def pricing_page(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
    ) -> Response[Any]:
        """The org's own prices."""
        return await _render(request, db_session)

    @post(PATH, guards=[requires(Permission.PRICING_WRITE)])
    async def create_price(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        budgets_changed: NamedDependency[BudgetsChanged],
    ) -> Response[Any]:
        """Price a model for the org; audited as ``price.created``."""
        fields = await fields_of(request)
        try:
            wanted = _price(fields, tiers=[])
            org_id = request.auth.org_id
            await org_prices.create_price(db_session, org_id, actor_of(request), wanted)
        except Refused as exc:
            return await _render(request, db_session, exc, form=fields)
        await budgets_changed(request.auth.org_id)
        return done(PATH, "price_created")

    @post(PRICE, guards=[requires(Permission.PRICING_WRITE)])
    async def update_price(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        budgets_changed: NamedDependency[BudgetsChanged],
        price_id: PriceId,
    ) -> Response[Any]:
        """Change one of the org's prices, keeping its tiers; audited as ``price.updated``."""
        org_id = request.auth.org_id
        fields = await fields_of(request)
        try:
            current = await org_prices.get_price(db_session, org_id, price_id)
            wanted = _price(fields, tiers=current.tiers)
            await org_prices.update_price(db_session, org_id, actor_of(request), price_id, wanted)
        except Refused as exc:
            return await _render(request, db_session, exc, editing=price_id)
        await budgets_changed(org_id)
        return done(PATH, "price_updated")

    @post(PRICE + "/delete", guards=[requires(Permission.PRICING_WRITE)])
    async def delete_price(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        budgets_changed: NamedDependency[BudgetsChanged],
        price_id: PriceId,
    ) -> Response[Any]:
        """Delete one of the org's prices (the catalog's applies again)."""
        org_id = request.auth.org_id
        try:
            await org_prices.delete_price(db_session, org_id, actor_of(request), price_id)
        except Refused as exc:
            return await _render(request, db_session, exc)
        await budgets_changed(org_id)
        return done(PATH, "price_deleted")


def _price(fields: dict[str, str], *, tiers: list[dict[str, Any]]) -> NewPrice:
    """The form as the API's body (an empty optional rate: none)."""
    body: dict[str, Any] = {
        "model": fields.get("model", "").strip(),
        "provider": fields.get("provider", "").strip(),
        "note": fields.get("note", "").strip(),
        "tiers": tiers,
    }
    for rate in RATES:
        value = fields.get(rate, "").strip()
        if value or rate not in OPTIONAL:
            body[rate] = value
    return validated(NewPrice, body)


async def _render(
    request: Request[Principal, Principal, Any],
    db_session: AsyncSession,
    refusal: Refused | None = None,
    *,
    form: dict[str, str] | None = None,
    editing: uuid.UUID | None = None,
) -> Response[Any]:
    await settle(db_session, refusal)
    return await render(
        request,
        db_session,
        "settings/pricing.html",
        refusal,
        prices=(await org_prices.list_prices(db_session, request.auth.org_id)).items,
        form=form or {},
        editing=editing,
        rates=RATES,
    )
