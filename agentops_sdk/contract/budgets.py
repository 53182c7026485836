"""Budgets: limits on what calls may spend, kept by the hub and enforced in the SDK from leases.

A :class:`Budget` caps the spend (USD, optionally also tokens) of every call in its scope (the
org, an environment, a team, a tag or one agent: matched as controls' scopes are, with the
registry's :class:`~agentops_sdk.contract.controls.AgentProfile`) over a window: a calendar day,
week (from Monday) or month in the budget's timezone, or ``total`` (no window). Windows are
computed when read (:func:`window_of`): nothing sweeps them.

The hub serves an org's budgets as one :class:`BudgetSet` (``GET /api/v1/budgets/effective``
with an ETag; pushed on ``GET /api/v1/stream`` as a ``budgets`` event), so the SDK knows which
budgets apply to a call, with the org's own prices (:class:`OrgModelPrice`, its overrides of
the catalog's and its custom models), so it reserves what the hub will charge.

Spend is admitted from *leases*. Before an LLM call the SDK reserves the call's worst-case cost
against every budget that applies, out of a lease the hub granted for that budget: no network
on the call path. A lease is asked for with :class:`LeaseAsk` (``POST
/api/v1/budgets/{budget_id}/leases``): the hub grants, atomically (a row lock on the budget on
PostgreSQL, the database's write lock on SQLite), at most what the budget has left once its
spent and everything reserved by other live leases are counted, and answers a :class:`Lease`
(``granted_usd`` may be less than asked; nothing left: 409 ``budget_exhausted``). Asking again
with the same ``request_id`` returns the same lease (idempotent). A holder reports what it spent
under a lease (:class:`LeaseReport`, ``POST /api/v1/budgets/leases/{lease_id}/report``),
renewing it or releasing its rest. A lease not renewed expires at ``expires_at``: a crashed
process strands nothing for longer than its lease's TTL.

The ledger of spend is the hub's: the cost of each LLM span it ingests (priced by the hub), in
the window of the span's start. A span made under leases names them
(:data:`LEASES_ATTRIBUTE`), so the hub knows which lease's reservation it used. What a live
lease holds back from the others is ``granted_usd`` less what the ledger already charged to it;
a released or expired lease holds back what its holder reported spending and the ledger has not
charged yet (spans still on their way).

This module is pure (pydantic models and functions): no I/O, no SDK runtime.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Annotated, Final, Literal, get_args
from uuid import UUID
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field

from agentops_sdk.contract.controls import ControlScope
from agentops_sdk.contract.pricing import ModelPrice, Rates, Tier

__all__ = [
    "BUDGET_PERIODS",
    "LEASES_ATTRIBUTE",
    "TOPIC",
    "Budget",
    "BudgetPeriod",
    "BudgetSet",
    "BudgetState",
    "Lease",
    "LeaseAsk",
    "LeaseReport",
    "OrgModelPrice",
    "OrgPriceTier",
    "window_of",
]

TOPIC: Final = "budgets"
"""The stream event kind (and SDK hub link topic) that carries the org's :class:`BudgetSet`."""

LEASES_ATTRIBUTE: Final = "agentops.budget.leases"
"""The span attribute listing the ids (text) of the leases an LLM call's reservation used."""

BudgetPeriod = Literal["daily", "weekly", "monthly", "total"]
BUDGET_PERIODS: Final[tuple[BudgetPeriod, ...]] = get_args(BudgetPeriod)

Usd = Annotated[Decimal, Field(ge=0, max_digits=20, decimal_places=10, allow_inf_nan=False)]
Text = Annotated[str, Field(max_length=1024)]
Name = Annotated[str, Field(min_length=1, max_length=256)]


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Budget(_Wire):
    """One budget as the hub serves it to SDKs."""

    id: UUID
    name: Name
    scope: ControlScope
    """Where it applies: ``org``, ``environment``, ``team``, ``tag`` or ``agent`` (not ``run``)."""
    limit_usd: Usd
    limit_tokens: Annotated[int, Field(ge=0)] | None = None
    """Input and output tokens of the window's calls, if limited too."""
    period: BudgetPeriod
    timezone: Annotated[str, Field(min_length=1, max_length=64)] = "UTC"
    """The IANA zone whose calendar the windows follow."""
    hard: bool = True
    """Hard: a call that does not fit is refused (``BudgetExceeded``); soft: it runs, alerted."""
    thresholds: tuple[Annotated[int, Field(ge=1, le=1000)], ...] = (50, 80, 100)
    """Percentages of the limit whose crossing raises an alert, once per window."""
    on_unknown_cost: Literal["deny", "require_approval", "ceiling"] = "deny"
    """What a call whose cost cannot be priced beforehand (an unpriced model) comes to: refused,
    asked for approval, or reserved at ``unknown_cost_ceiling``. Never $0."""
    unknown_cost_ceiling: Usd | None = None
    fail_mode: Literal["closed", "open"] = "closed"
    """When no lease can be had (the hub unreachable): ``closed`` refuses calls past the leases
    held (default for hard budgets); ``open`` lets them run and alerts."""
    auto_pause: bool = False
    """At 100% of a hard budget the hub pauses the agents in scope (an emergency control set by
    ``system``)."""
    auto_resume: bool = False
    """Lift that pause when the next window starts."""
    version: Annotated[int, Field(ge=1)] = 1


Rate = Annotated[Decimal, Field(ge=0, max_digits=24, decimal_places=12, allow_inf_nan=False)]
"""USD per million tokens."""


class OrgPriceTier(_Wire):
    """Rates for every token of a call whose input tokens exceed ``above_input_tokens``."""

    above_input_tokens: Annotated[int, Field(ge=0)]
    input: Rate
    output: Rate
    cached_input: Rate | None = None
    cache_write: Rate | None = None
    reasoning: Rate | None = None


class OrgModelPrice(_Wire):
    """One of the org's own prices (``/api/v1/pricing/overrides``): it prices ``model`` called
    through ``provider`` (``""``: any) instead of the catalog, as the hub prices spans."""

    model: Annotated[str, Field(min_length=1, max_length=256)]
    provider: Annotated[str, Field(max_length=128)] = ""
    input: Rate
    output: Rate
    cached_input: Rate | None = None
    cache_write: Rate | None = None
    reasoning: Rate | None = None
    tiers: tuple[OrgPriceTier, ...] = ()

    def price(self) -> ModelPrice:
        """The price as :mod:`agentops_sdk.contract.pricing` computes with it."""
        return ModelPrice(
            _rates(self), tuple(Tier(tier.above_input_tokens, _rates(tier)) for tier in self.tiers)
        )


def _rates(of: OrgModelPrice | OrgPriceTier) -> Rates:
    return Rates(
        input=of.input,
        output=of.output,
        cached_input=of.cached_input,
        cache_write=of.cache_write,
        reasoning=of.reasoning,
    )


class BudgetSet(_Wire):
    """An org's budgets (``GET /api/v1/budgets/effective``, ``budgets`` stream events), and the
    org's own prices, which price its calls before the catalog's."""

    org_id: UUID
    version: Annotated[int, Field(ge=0)]
    """Grows with every change of any of the org's budgets, and of its own prices."""
    budgets: tuple[Budget, ...] = ()
    prices: tuple[OrgModelPrice, ...] = ()
    generated_at: dt.datetime

    @property
    def etag(self) -> str:
        """The ETag the hub serves this set with."""
        return f'"budgets-{self.org_id}-{self.version}"'


class LeaseAsk(_Wire):
    """A holder asking for a lease on one budget."""

    request_id: UUID
    """Idempotency key: the same ``request_id`` always answers the same lease."""
    holder: Annotated[str, Field(min_length=1, max_length=256)]
    """Who holds it: the SDK's process (host, pid, a random id per client)."""
    amount_usd: Annotated[Decimal, Field(gt=0, max_digits=20, decimal_places=10)]
    tokens: Annotated[int, Field(gt=0)] | None = None
    """Tokens asked for, for a budget limiting tokens too."""
    ttl: Annotated[float, Field(gt=0, le=3600)] = 60.0
    """Seconds until the lease expires unless renewed."""


class Lease(_Wire):
    """A grant: ``granted_usd`` (and ``granted_tokens``) of one budget's window, to one holder,
    until ``expires_at``."""

    id: UUID
    budget_id: UUID
    request_id: UUID
    holder: str
    state: Literal["active", "released", "expired"]
    granted_usd: Usd
    granted_tokens: int | None = None
    spent_usd: Usd = Decimal(0)
    """What the holder last reported spending under it."""
    window_start: dt.datetime | None
    window_end: dt.datetime | None
    """The window it was granted in (None for a ``total`` budget); it ends with the window."""
    expires_at: dt.datetime
    budget_version: int


class LeaseReport(_Wire):
    """A holder's report on a lease: spent so far, and whether to renew or release it."""

    spent_usd: Usd
    """Everything spent under the lease so far (not an increment): reports can be retried."""
    spent_tokens: Annotated[int, Field(ge=0)] | None = None
    release: bool = False
    """Give back what was not spent: the lease ends."""
    renew_ttl: Annotated[float, Field(gt=0, le=3600)] | None = None
    """Keep it active this many more seconds (ignored with ``release``)."""
    more_usd: Annotated[Decimal, Field(gt=0, max_digits=20, decimal_places=10)] | None = None
    """Ask for this much more on the same lease (granted as a new lease would be)."""
    more_tokens: Annotated[int, Field(gt=0)] | None = None
    """Ask for this many more tokens on the same lease, for a budget limiting tokens."""


class BudgetState(_Wire):
    """One budget now (``GET /api/v1/budgets/{id}/state``)."""

    budget_id: UUID
    window_start: dt.datetime | None
    window_end: dt.datetime | None
    spent_usd: Usd
    reserved_usd: Usd
    """Held back by outstanding leases."""
    remaining_usd: Decimal
    """``limit_usd`` less spent and reserved (negative past a soft limit)."""
    projected_usd: Usd | None
    """The window's spend at its end at the pace so far (None for ``total``)."""
    spent_tokens: int = 0
    outstanding_leases: int = 0
    percent: float
    """Spent as a percentage of the limit."""


def window_of(
    period: BudgetPeriod, timezone: str, at: dt.datetime
) -> tuple[dt.datetime, dt.datetime] | None:
    """The window of a ``period`` budget in ``timezone`` that holds ``at`` (aware), as aware
    UTC datetimes ``[start, end)``; None for ``total``. Days start at local midnight, weeks on
    Monday, months on the 1st: calendar-aligned, daylight saving included."""
    if period == "total":
        return None
    zone = ZoneInfo(timezone)
    local = at.astimezone(zone)
    start_day = local.date()
    if period == "weekly":
        start_day -= dt.timedelta(days=local.weekday())
    elif period == "monthly":
        start_day = start_day.replace(day=1)
    if period == "daily":
        end_day = start_day + dt.timedelta(days=1)
    elif period == "weekly":
        end_day = start_day + dt.timedelta(days=7)
    else:
        end_day = (start_day.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    start = dt.datetime.combine(start_day, dt.time(), zone)
    end = dt.datetime.combine(end_day, dt.time(), zone)
    return start.astimezone(dt.UTC), end.astimezone(dt.UTC)
