"""``/api/v1/pricing``: the prices LLM calls are priced at, the org's own prices, recomputes."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from litestar import Controller, Request, delete, get, post, put
from litestar.di import NamedDependency
from litestar.params import JSONBody, PathParameter, QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession

from agentops_server.api.problems import JSON_BODY_LIMIT, problems
from agentops_server.api.v1.actors import actor_of
from agentops_server.auth.guards import requires
from agentops_server.backends.derived_work import DerivedWork
from agentops_server.refusals import Conflict, Invalid, NotFound
from agentops_server.security.permissions import Permission
from agentops_server.security.principal import Principal
from agentops_server.services.budgets.definitions import BudgetsChanged
from agentops_server.services.costs import jobs, org_prices
from agentops_server.services.costs.jobs import JobView, RecomputeRange
from agentops_server.services.costs.org_prices import (
    EffectivePrice,
    EffectivePriceList,
    NewPrice,
    OrgPriceList,
    OrgPriceView,
)
from agentops_server.values import Text

__all__ = ["PricingController"]

PriceId = Annotated[str, PathParameter(description="The price's id (a UUID).")]
PRICE_NOT_FOUND = NotFound("price_not_found", "no such price in this org")
INVALID_PRICE = (
    Invalid(
        "price_not_per_million",
        "a rate is not plausible in USD per million tokens (a per-token price, or above the "
        "ceiling): the detail says which and what it would be per million",
    ),
    Invalid("invalid_tiers", "tier thresholds must be distinct and increasing"),
    Invalid(
        "invalid_model_name", "a model named, without outer space; names and note not too long"
    ),
    Invalid("invalid_text", "a control character or lone surrogate in a name or the note"),
)


class PricingController(Controller):
    """Prices (``pricing:read``: every role and the ``read`` scope) and the org's own prices and
    recomputes (``pricing:write``: owners, admins and ``admin`` keys). Every change is audited."""

    path = "/pricing"
    tags = ("pricing",)
    request_max_body_size = JSON_BODY_LIMIT

    @get("/models", guards=[requires(Permission.PRICING_READ)])
    async def list_models(
        self,
        *,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        search: Annotated[
            Text | None, QueryParameter(description="Models whose name contains it.")
        ] = None,
        provider: Annotated[Text | None, QueryParameter(description="Only this provider.")] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=500)] = 100,
    ) -> EffectivePriceList:
        """The org's own prices, then the catalog's models, each at the price the org's calls
        of it are priced at (USD per million tokens, Decimal strings)."""
        return await org_prices.effective_prices(
            db_session, request.auth.org_id, search=search, provider=provider, limit=limit
        )

    @get("/price", guards=[requires(Permission.PRICING_READ)])
    async def effective_price(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        model: Annotated[Text, QueryParameter(description="The model name a span reports.")],
        provider: Annotated[
            Text | None, QueryParameter(description="The provider a span reports.")
        ] = None,
    ) -> EffectivePrice:
        """The price a call of `model` would be priced at now, how it matched (`exact`,
        `fallback`, `unmatched`) and the pricing version its cost would record."""
        return await org_prices.quote(db_session, request.auth.org_id, model, provider)

    @get("/overrides", guards=[requires(Permission.PRICING_READ)])
    async def list_overrides(
        self, request: Request[Principal, Principal, Any], db_session: NamedDependency[AsyncSession]
    ) -> OrgPriceList:
        """The org's own prices: overrides of the catalog and custom models."""
        return await org_prices.list_prices(db_session, request.auth.org_id)

    @post(
        "/overrides",
        guards=[requires(Permission.PRICING_WRITE)],
        summary="Add a price",
        responses=problems(
            *INVALID_PRICE,
            Conflict("price_exists", "the org already prices this model at this provider"),
        ),
    )
    async def create_override(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        budgets_changed: NamedDependency[BudgetsChanged],
        data: JSONBody[NewPrice],
    ) -> OrgPriceView:
        """Price a model for this org (audited `price.created`): it overrides the catalog's
        price of that model, or prices a model the catalog does not know. The org's SDKs get
        it with its budgets."""
        made = await org_prices.create_price(
            db_session, request.auth.org_id, actor_of(request), data
        )
        await budgets_changed(request.auth.org_id)
        return made

    @get(
        "/overrides/{price_id:str}",
        guards=[requires(Permission.PRICING_READ)],
        responses=problems(PRICE_NOT_FOUND),
    )
    async def get_override(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        price_id: PriceId,
    ) -> OrgPriceView:
        """One of the org's prices."""
        return await org_prices.get_price(db_session, request.auth.org_id, _uuid_of(price_id))

    @put(
        "/overrides/{price_id:str}",
        guards=[requires(Permission.PRICING_WRITE)],
        summary="Change a price",
        responses=problems(
            PRICE_NOT_FOUND,
            *INVALID_PRICE,
            Conflict("price_exists", "the org already prices this model at this provider"),
        ),
    )
    async def update_override(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        budgets_changed: NamedDependency[BudgetsChanged],
        price_id: PriceId,
        data: JSONBody[NewPrice],
    ) -> OrgPriceView:
        """Replace one of the org's prices (audited `price.updated`, before and after). Calls
        ingested from now on are priced at it; `POST /pricing/recompute` re-prices earlier ones."""
        changed = await org_prices.update_price(
            db_session, request.auth.org_id, actor_of(request), _uuid_of(price_id), data
        )
        await budgets_changed(request.auth.org_id)
        return changed

    @delete(
        "/overrides/{price_id:str}",
        guards=[requires(Permission.PRICING_WRITE)],
        summary="Delete a price",
        responses=problems(PRICE_NOT_FOUND),
    )
    async def delete_override(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        budgets_changed: NamedDependency[BudgetsChanged],
        price_id: PriceId,
    ) -> None:
        """Delete one of the org's prices (audited `price.deleted`): the catalog's applies again."""
        await org_prices.delete_price(
            db_session, request.auth.org_id, actor_of(request), _uuid_of(price_id)
        )
        await budgets_changed(request.auth.org_id)

    @post(
        "/recompute",
        status_code=202,
        guards=[requires(Permission.PRICING_WRITE)],
        summary="Recompute the costs of a time range",
        responses=problems(
            Invalid("invalid_range", "`to` must be after `from`"),
            Invalid("invalid_timestamp", "`from` or `to` is not an ISO 8601 moment"),
        ),
    )
    async def recompute(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        derived_work: NamedDependency[DerivedWork],
        data: JSONBody[RecomputeRange],
    ) -> JobView:
        """Queue a job that re-prices the org's LLM spans that started in `[from, to)` at the
        prices in force now and fixes their runs' totals (audited `pricing.recompute`); follow
        it at `GET /pricing/recompute/{job_id}`."""
        principal = request.auth
        return await jobs.request_recompute(
            db_session,
            principal.org_id,
            actor_of(request),
            data,
            requested_by=f"{principal.kind}:{principal.actor_id}",
            derived=derived_work,
        )

    @get(
        "/recompute/{job_id:str}",
        guards=[requires(Permission.PRICING_READ)],
        responses=problems(NotFound("job_not_found", "no such job in this org")),
    )
    async def get_recompute(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        job_id: Annotated[str, PathParameter(description="The job's id (a UUID).")],
    ) -> JobView:
        """A recompute job: `queued`, `done` (with the spans priced and runs totalled) or
        `failed` (with the error)."""
        try:
            wanted = uuid.UUID(job_id)
        except ValueError:
            raise NotFound("job_not_found", f"This org has no job {job_id!r}.") from None
        return await jobs.get_job(db_session, request.auth.org_id, wanted)


def _uuid_of(price_id: str) -> uuid.UUID:
    """The price's id; an id that is no UUID names no price."""
    try:
        return uuid.UUID(price_id)
    except ValueError:
        raise NotFound("price_not_found", f"This org has no price {price_id!r}.") from None
