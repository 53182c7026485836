"""The budget stage: an LLM call reserves its worst-case cost before it runs, from leases.

It runs after controls and policy, in the enforcer's fixed order, and is installed by the
client whenever it has a hub (a hub URL and an API key, with ``controls`` on); it idles (leaves
the chain) while the org has no budget. The org's budgets come on the hub link's ``budgets``
topic (a :class:`~agentops_sdk.contract.budgets.BudgetSet`, pushed on the stream and polled
while it is down). Before each LLM call it:

1. finds every budget whose scope applies (the agent, environment, team and tags of its
   registry profile, the run's tags);
2. bounds the call's cost (:mod:`agentops_sdk.enforcement.budget_costs`: input bounded from
   the messages, output by ``max_tokens``, at the dearest rate, of the org's own price of the
   model when the set carries one, else the catalog's);
3. reserves it from the lease this process holds on each budget, in memory
   (:mod:`agentops_sdk.enforcement.budget_leases` keeps the leases on a background thread).

What a call that does not fit comes to:

- a budget the hub said is exhausted, or whose whole limit is below the call's worst case:
  :class:`~agentops_sdk.errors.BudgetExceeded`, before any request is sent;
- otherwise the call *waits* (a :class:`~agentops_sdk.enforcement.Wait`, ``wait`` seconds at
  most, 2 s) while the lease thread asks the hub for a lease or for more: a budget with room
  does not refuse a call merely because this process had not asked yet. Calls reserve from
  the lease and never wait while it has room (the thread asks for more when it runs low).
- when the hub cannot be asked (or the wait runs out), the budget's ``fail_mode``: ``closed``
  refuses the call with :class:`~agentops_sdk.errors.EnforcementUnavailable` (the budget may
  have room: enforcement, not the budget, is what failed); ``open`` lets it run without a
  reservation on that budget, recording a ``warn`` decision and logging once a minute.

A budget that limits tokens too (``limit_tokens``) has each call reserve its worst case in
tokens beside USD (input bounded as above, plus the output bound: what
:meth:`~agentops_sdk.enforcement.budget_costs.WorstCase.tokens` gives), from the tokens its
lease was granted; a call fits when both fit, and one above the whole token limit is refused.
After the call, the tokens its usage reports (input and output) are spent, and the rest
released; a call with no usage known spends what it reserved.

Soft budgets (``hard`` False) never refuse or wait: their calls reserve from the lease when
there is one, past what it holds if need be, so the hub sees the spend.

A call whose model cannot be priced has an unknown cost, never $0: per budget
``on_unknown_cost``, ``deny`` refuses it (``BudgetExceeded``), ``require_approval`` hands a
``require_approval`` decision to the approval stage (approved, it runs with no reservation on
that budget), ``ceiling`` reserves and charges ``unknown_cost_ceiling``.

After the call, the reservation is reconciled: what it cost (:attr:`CallResult.cost`, priced
from its real usage) is spent from the lease and the rest released; a call refused before it
ran spends nothing; one that failed or was cancelled with no usage known is charged what it
reserved. The ids of the leases used go on its span (:data:`LEASES_ATTRIBUTE`), so the hub
charges its cost against them.
"""

from __future__ import annotations

import dataclasses
import time
from concurrent.futures import Future, InvalidStateError
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final

from agentops_sdk.contract.decisions import Decision
from agentops_sdk.contract.errors import BudgetExceeded, EnforcementUnavailable
from agentops_sdk.enforcement.budget_costs import WorstCase
from agentops_sdk.enforcement.failures import FailureLog
from agentops_sdk.enforcement.stage import Stage, Wait

if TYPE_CHECKING:
    from agentops_sdk.contract.budgets import Budget, BudgetSet
    from agentops_sdk.contract.controls import ControlSet
    from agentops_sdk.contract.errors import EnforcementError
    from agentops_sdk.enforcement.budget_leases import Account, Grant, LeaseKeeper
    from agentops_sdk.enforcement.call import CallInfo, CallResult
    from agentops_sdk.enforcement.link import HubLink, Snapshot

__all__ = ["LEASES_ATTRIBUTE", "TOPIC", "BudgetStage"]

TOPIC: Final = "budgets"
"""The hub link topic whose value is the org's ``BudgetSet`` (``contract.budgets.TOPIC``; not
imported from there: the contract needs pydantic, which this module does not load)."""
LEASES_ATTRIBUTE: Final = "agentops.budget.leases"
"""``contract.budgets.LEASES_ATTRIBUTE``: the span attribute naming the leases a call used."""

_UNAVAILABLE: Final = "unavailable"

Hold = tuple["Grant", Decimal, int]
"""A reservation: the lease, USD and tokens (0 unless its budget limits tokens)."""
Plan = list[tuple["Account", Decimal, int]]


class BudgetStage(Stage):
    """Reserves each LLM call's worst-case cost from the leases of the budgets it falls in."""

    name = "budget"
    error = BudgetExceeded
    topics = frozenset({TOPIC})

    def __init__(
        self,
        link: HubLink,
        keeper: LeaseKeeper,
        *,
        wait: float = 2.0,
        costs: WorstCase | None = None,
    ) -> None:
        self.link = link
        self.keeper = keeper
        self.wait = wait
        """Seconds a call that does not fit waits for a lease (or more on one) at most."""
        self.costs = costs or WorstCase()
        keeper.on_change = self._retry_waiting
        self._waiting: list[_Waiting] = []
        self._scopes: tuple[object, object, dict[tuple[Any, ...], tuple[Account, ...]]] = (
            None,
            None,
            {},
        )
        self._synced: object = None
        self._failures = FailureLog()

    # -- the hub link -------------------------------------------------------------------------

    def engaged(self, snapshot: Snapshot) -> bool:
        """Idle while the org has no budget; each new set is handed to the lease keeper."""
        budgets: BudgetSet | None = snapshot.values.get(TOPIC)
        if budgets is not self._synced:
            self._synced = budgets
            self.costs.use_prices(() if budgets is None else budgets.prices)
            with self.keeper.lock:
                self.keeper.sync(() if budgets is None else budgets.budgets)
        return budgets is not None and bool(budgets.budgets)

    def close(self) -> None:
        """Release every lease (the client is shutting down)."""
        self.keeper.close()

    def after_fork(self) -> None:
        self.keeper.after_fork()
        self._waiting = []
        self._failures = FailureLog()

    # -- before a call ------------------------------------------------------------------------

    def before(self, call: CallInfo) -> Decision | Wait | None:
        """Reserve ``call``'s worst case; a refusal, a wait for a lease, or None (reserved)."""
        if call.kind != "llm":
            return None
        accounts = self._applicable(call)
        if not accounts:
            return None
        worst = self.costs.of(call.model, call.span.provider, call.arguments)
        plan: Plan = []
        asked: Decision | None = None
        tokens: int | None = None
        for account in accounts:
            budget = account.budget
            amount = worst if worst is not None else _unknown_amount(budget)
            if amount is not None:
                if budget.limit_tokens is not None and tokens is None:
                    tokens = self.costs.tokens(call.arguments)
                plan.append((account, amount, 0 if budget.limit_tokens is None else tokens or 0))
            elif budget.hard and budget.on_unknown_cost == "require_approval":
                asked = asked or _approval(call, budget)
            elif budget.hard:
                return _deny(call, budget, "its cost cannot be priced (unknown model)")
        with self.keeper.lock:
            outcome = self._reserve(call, plan, time.monotonic())
            if isinstance(outcome, _Waiting):
                outcome.then = asked
                self._waiting.append(outcome)
                self.keeper.wake()
                return Wait(outcome.pending, timeout=self.wait, on_timeout=outcome.on_timeout())
        return _stricter(outcome, asked)

    def refusal(self, call: CallInfo, decision: Decision) -> EnforcementError:
        """``EnforcementUnavailable`` when no lease could be had, else ``BudgetExceeded``."""
        message = decision.reason or f"{call.name} was refused by a budget"
        if decision.details.get("state") == _UNAVAILABLE:
            return EnforcementUnavailable(message, rule=decision.rule, decision=decision)
        return BudgetExceeded(message, rule=decision.rule, decision=decision)

    def _applicable(self, call: CallInfo) -> tuple[Account, ...]:
        """The accounts of the budgets whose scope ``call`` falls in (cached per set)."""
        values = self.link.snapshot.values
        budgets = values.get(TOPIC)
        controls: ControlSet | None = values.get("controls")
        cached_budgets, cached_controls, found = self._scopes
        if cached_budgets is not budgets or cached_controls is not controls:
            found = {}
            self._scopes = (budgets, controls, found)
        tags = call.tags
        key = (call.agent, call.environment, tags)
        accounts = found.get(key)
        if accounts is None:
            profile = None if controls is None else controls.profile(call.agent)
            with self.keeper.lock:
                known = self.keeper.accounts
                accounts = tuple(
                    known[budget.id]
                    for budget in (() if budgets is None else budgets.budgets)
                    if budget.id in known
                    and budget.scope.applies_to(
                        agent=call.agent,
                        environment=call.environment,
                        tags=tags,
                        run_id=None,
                        profile=profile,
                    )
                )
            found[key] = accounts
        return accounts

    def _reserve(self, call: CallInfo, plan: Plan, now: float) -> Decision | _Waiting | None:
        """Reserve ``plan`` for ``call`` (keeper's lock held): None when all of it is held,
        a decision (a refusal, or a warning of a budget failing open), or what waits."""
        holds: list[Hold] = call.state.setdefault(self.name, [])
        missing: Plan = []
        warned: Decision | None = None
        for account, amount, tokens in plan:
            budget = account.budget
            account.last_call = now
            account.demanded += amount
            if amount > account.typical or tokens > account.typical_tokens:
                account.typical = max(account.typical, amount)
                account.typical_tokens = max(account.typical_tokens, tokens)
                self.keeper.note_typical(account)
            grant = account.usable(now)
            if grant is not None and (grant.fits(amount, tokens) or not budget.hard):
                grant.reserved += amount
                grant.reserved_tokens += tokens
                grant.used = True
                holds.append((grant, amount, tokens))
                if account.running_low(grant):
                    self.keeper.wake()  # running low: ask for more before a call must wait
                continue
            if not budget.hard:
                account.starved = True
                self.keeper.wake()
                continue
            if budget.limit_tokens is not None and tokens > budget.limit_tokens:
                self._release(call)
                return _deny(call, budget, f"it may use up to {tokens} tokens")
            if amount > budget.limit_usd or self.keeper.exhausted(account, now):
                self._release(call)
                return _deny(call, budget, f"it may cost up to ${amount:.6f}")
            if account.unreachable and now < account.next_try:
                if budget.fail_mode == "closed":
                    self._release(call)
                    return _unavailable(call, budget)
                account.starved = True
                warned = _fails_open(call, budget)
                self._failures.failed(self, "agentops: %s", warned.reason)
                continue
            missing.append((account, amount, tokens))
        if missing:
            return _Waiting(call, missing)
        return warned

    def _retry_waiting(self) -> None:
        """The lease thread heard from the hub: settle the calls that can be settled now."""
        settled: list[tuple[_Waiting, Decision]] = []
        with self.keeper.lock:
            now = time.monotonic()
            still: list[_Waiting] = []
            for waiting in self._waiting:
                if waiting.pending.cancelled():
                    waiting.leave()
                    continue
                waiting.leave()
                outcome = self._reserve(waiting.call, waiting.missing, now)
                if isinstance(outcome, _Waiting):  # which joined the accounts it waits for
                    waiting.missing = outcome.missing
                    still.append(waiting)
                else:
                    settled.append((waiting, _stricter(outcome, waiting.then) or _LEASED))
            self._waiting = still
        for waiting, decision in settled:
            try:
                waiting.pending.set_result(decision)
            except InvalidStateError:  # it stopped waiting meanwhile
                with self.keeper.lock:
                    self._release(waiting.call)

    # -- after a call -------------------------------------------------------------------------

    def after(self, call: CallInfo, result: CallResult) -> None:
        """Spend what ``call`` cost from the leases it reserved from; release the rest."""
        if not call.state.get(self.name):
            return
        span = call.span
        ran = result.status != "blocked"
        cost: Decimal | None = Decimal(0)
        used: int | None = 0
        if ran:
            cost, used = span.cost, None
            usage = span.usage
            if usage is not None:
                used = usage["input_tokens"] + usage["output_tokens"]
                if cost is None:
                    cost = span.cost = self.costs.actual(span.model, span.provider, usage)
        with self.keeper.lock:
            holds: list[Hold] | None = call.state.pop(self.name, None)
            if not holds:
                return
            for grant, amount, tokens in holds:
                grant.reserved -= amount
                grant.spent += amount if cost is None else cost
                if tokens:
                    grant.reserved_tokens -= tokens
                    grant.spent_tokens += tokens if used is None else used
        if ran:
            span.set_ids(LEASES_ATTRIBUTE, [grant.lease_text for grant, _, _ in holds])

    def _release(self, call: CallInfo) -> None:
        """Give back what ``call`` reserved, unspent (keeper's lock held)."""
        for grant, amount, tokens in call.state.pop(self.name, None) or ():
            grant.reserved -= amount
            grant.reserved_tokens -= tokens


@dataclasses.dataclass(slots=True)
class _Waiting:
    """A call waiting for leases of the budgets ``missing`` lists."""

    call: CallInfo
    missing: Plan
    pending: Future[Decision] = dataclasses.field(default_factory=Future)
    then: Decision | None = None
    """A budget's ``require_approval`` the call gets once its leases are reserved."""

    def __post_init__(self) -> None:
        self.join()

    def join(self) -> None:
        for account, amount, tokens in self.missing:
            account.waiting += 1
            account.need = max(account.need, amount)
            account.need_tokens = max(account.need_tokens, tokens)

    def leave(self) -> None:
        for account, _, _ in self.missing:
            account.waiting -= 1
            if account.waiting <= 0:
                account.waiting, account.need, account.need_tokens = 0, Decimal(0), 0

    def on_timeout(self) -> Decision:
        """No lease came in time: refused, unless every budget it waits for fails open; a
        call let through still needs the approval another budget asked for (``then``)."""
        budget = self.missing[0][0].budget
        closed = [
            account.budget for account, _, _ in self.missing if account.budget.fail_mode == "closed"
        ]
        if not closed:
            return _stricter(_fails_open(self.call, budget), self.then) or _LEASED
        return _unavailable(self.call, closed[0])


_LEASED: Final = Decision("allow", stage="budget", reason="a budget lease came")


def _stricter(reserved: Decision | None, asked: Decision | None) -> Decision | None:
    """What a call gets: a refusal, else a budget's ask for approval, else a warning (or
    nothing)."""
    if reserved is not None and reserved.outcome == "deny":
        return reserved
    return asked or reserved


def _unknown_amount(budget: Budget) -> Decimal | None:
    """What a call of unknown cost reserves under ``budget`` (None: it cannot be reserved)."""
    ceiling = budget.unknown_cost_ceiling
    if budget.on_unknown_cost == "ceiling" and ceiling is not None and ceiling > 0:
        return ceiling
    if not budget.hard and ceiling is not None and ceiling > 0:
        return ceiling
    return None


def _rule(budget: Budget) -> str:
    return f"budget:{budget.name}"


def _deny(call: CallInfo, budget: Budget, why: str) -> Decision:
    reason = f"{call.name} does not fit budget {budget.name!r}: {why}"
    return Decision(
        "deny",
        stage="budget",
        rule=_rule(budget),
        reason=reason,
        details={"budget": str(budget.id)},
    )


def _unavailable(call: CallInfo, budget: Budget) -> Decision:
    reason = (
        f"{call.name} is refused: no lease of budget {budget.name!r} could be had from the hub, "
        "and the budget fails closed"
    )
    details = {"budget": str(budget.id), "state": _UNAVAILABLE}
    return Decision("deny", stage="budget", rule=_rule(budget), reason=reason, details=details)


def _fails_open(call: CallInfo, budget: Budget) -> Decision:
    reason = (
        f"{call.name} runs unreserved: no lease of budget {budget.name!r} could be had from the "
        "hub, and the budget fails open"
    )
    details = {"budget": str(budget.id), "state": _UNAVAILABLE}
    return Decision("warn", stage="budget", rule=_rule(budget), reason=reason, details=details)


def _approval(call: CallInfo, budget: Budget) -> Decision:
    reason = f"{call.name} has a cost that cannot be priced, and budget {budget.name!r} asks"
    return Decision(
        "require_approval",
        stage="budget",
        rule=_rule(budget),
        reason=reason + " for an approval",
        details={"budget": str(budget.id), "approval": {}},
    )
