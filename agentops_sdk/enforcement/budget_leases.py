"""The budget leases a client holds, and the thread that keeps them.

Calls reserve from an :class:`Account` (one per budget) in memory, under the keeper's lock: no
network on the call path. The :class:`LeaseKeeper`'s daemon thread talks to the hub
(:class:`LeaseClient`) for every account:

- asks for a lease (``POST /api/v1/budgets/{id}/leases``) when calls need one, for about
  ``calls_per_lease`` calls at the largest worst case seen lately, or ``ahead`` seconds of calls
  at their recent pace, whichever is more (for a budget limiting tokens, tokens for as many
  calls at the largest token worst case seen lately); the ask's ``request_id`` is kept until
  the hub answers, so a retried ask gets the same lease;
- asks for more on the lease (a report with ``more_usd``, or ``more_tokens``) when what is left
  falls below ``low_calls`` such calls, or a quarter of ``ahead`` at the recent pace (calls
  wake the thread when they leave it that low);
- renews the lease (a report of what was spent, with ``renew_ttl``) a third of the way through
  its TTL while calls use it, and releases it once idle for that long;
- stops admitting on a lease a tenth of its TTL before it expires (or when its window ends),
  and releases it once its calls have settled;
- marks a budget ``exhausted`` when the hub says ``409 budget_exhausted``, or grows none of
  the more asked for on a lease of a hard budget (for ``exhausted_recheck`` seconds), and
  ``unreachable`` when the hub cannot be asked, retrying with backoff;
- at shutdown, releases every lease, reporting its spend (and its calls still running as spent).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from decimal import ROUND_CEILING, Decimal
from typing import TYPE_CHECKING, Final

from agentops_sdk.enforcement.hub_requests import (
    HubRefused,
    HubRequests,
    HubUnreachable,
    holder_name,
)

if TYPE_CHECKING:
    import httpx

    from agentops_sdk.contract.budgets import Budget, Lease, LeaseAsk, LeaseReport

__all__ = ["BUDGETS_PATH", "Account", "Grant", "LeaseClient", "LeaseKeeper"]

logger = logging.getLogger("agentops_sdk")

BUDGETS_PATH: Final = "/api/v1/budgets"
EXHAUSTED: Final = "budget_exhausted"
_CENT_FRACTION: Final = Decimal("1e-10")
_DECAY: Final = Decimal("0.9")
"""How much of the largest recent worst case the lease thread forgets each time it looks."""


class LeaseClient:
    """Asks the hub at ``hub_url`` for budget leases and reports on them."""

    def __init__(
        self,
        hub_url: str,
        api_key: str,
        *,
        timeout: float = 5.0,
        attempts: int = 3,
        retry_delay: float = 0.1,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base = hub_url.rstrip("/") + BUDGETS_PATH
        self._hub = HubRequests(
            hub_url,
            api_key,
            timeout=timeout,
            attempts=attempts,
            retry_delay=retry_delay,
            transport=transport,
        )

    def ask(self, budget_id: uuid.UUID, ask: LeaseAsk) -> Lease:
        """A lease on ``budget_id`` (the same one for the same ``request_id``)."""
        from agentops_sdk.contract.budgets import Lease

        url = f"{self.base}/{budget_id}/leases"
        return self._hub.request("POST", url, ask.model_dump_json(), Lease)

    def report(self, lease_id: uuid.UUID, report: LeaseReport) -> Lease:
        """Report on ``lease_id``: renew it, ask more on it, or release it."""
        from agentops_sdk.contract.budgets import Lease

        url = f"{self.base}/leases/{lease_id}/report"
        return self._hub.request("POST", url, report.model_dump_json(), Lease)

    def close(self) -> None:
        self._hub.close()

    def after_fork(self) -> None:
        self._hub.after_fork()


class Grant:
    """One lease held, and what this process's calls reserved and spent under it."""

    __slots__ = (
        "granted",
        "granted_tokens",
        "lease",
        "lease_text",
        "renew_at",
        "reserved",
        "reserved_tokens",
        "spent",
        "spent_tokens",
        "usable_until",
        "used",
    )

    def __init__(self, lease: Lease, sent: float, ttl: float) -> None:
        self.reserved = Decimal(0)
        """Held for calls still running."""
        self.spent = Decimal(0)
        """What the calls that ended under it cost."""
        self.reserved_tokens = self.spent_tokens = 0
        """The same in tokens (for a budget limiting tokens)."""
        self.used = False
        """Whether a call reserved from it since it was last renewed."""
        self.lease = lease
        self.lease_text = str(lease.id)
        """The lease's id as spans name it."""
        self.granted = lease.granted_usd
        self.granted_tokens = lease.granted_tokens or 0
        self.usable_until = self.renew_at = 0.0
        self.renewed(lease, sent, ttl)

    @property
    def available(self) -> Decimal:
        """What calls may still reserve from it."""
        return self.granted - self.reserved - self.spent

    @property
    def available_tokens(self) -> int:
        """The tokens calls may still reserve from it (none unless they were granted)."""
        return self.granted_tokens - self.reserved_tokens - self.spent_tokens

    def fits(self, amount: Decimal, tokens: int) -> bool:
        """Whether a call reserving ``amount`` USD and ``tokens`` tokens fits what is left."""
        return self.available >= amount and (not tokens or self.available_tokens >= tokens)

    def tokens_spent(self, tokens: int) -> int | None:
        """``tokens`` as a report on it says them: None unless it holds tokens (its budget
        limits them)."""
        if self.lease.granted_tokens is None and not tokens:
            return None
        return max(0, tokens)

    def renewed(self, lease: Lease, sent: float, ttl: float) -> None:
        """The hub answered ``lease`` to a request sent at ``sent`` (monotonic)."""
        self.lease, self.granted, self.used = lease, lease.granted_usd, False
        self.granted_tokens = lease.granted_tokens or 0
        now = datetime.now(UTC)
        lasts = min(ttl, (lease.expires_at - now).total_seconds())
        if lease.window_end is not None:
            lasts = min(lasts, (lease.window_end - now).total_seconds())
        self.usable_until = sent + lasts - ttl / 10  # the hub's clock runs from after `sent`
        self.renew_at = sent + ttl / 3


@dataclasses.dataclass(slots=True)
class Account:
    """One budget's leases in this process."""

    budget: Budget
    grant: Grant | None = None
    """The lease calls reserve from now."""
    retiring: list[Grant] = dataclasses.field(default_factory=list)
    """Leases no longer reserved from, released once their calls have settled."""
    asking: uuid.UUID | None = None
    """The ``request_id`` of an ask not answered yet (reused on retry)."""
    exhausted_at: float = -1e18
    unreachable: bool = False
    """The hub could not be asked, the last time it was."""
    failures: int = 0
    next_try: float = 0.0
    typical: Decimal = Decimal(0)
    """The largest worst case of recent calls (decaying as the lease thread looks)."""
    typical_tokens: int = 0
    """The same in tokens, for a budget limiting tokens."""
    low: Decimal = Decimal(0)
    """What left on the lease wakes the lease thread to ask for more (it keeps this)."""
    low_tokens: int = 0
    need: Decimal = Decimal(0)
    """The largest reservation a waiting call needs."""
    need_tokens: int = 0
    waiting: int = 0
    """Calls waiting for a lease (or for more on it)."""
    starved: bool = False
    """A call of a soft (or fail-open) budget ran with no lease to reserve from."""
    last_call: float = -1e18
    demanded: Decimal = Decimal(0)
    """Everything calls have reserved here (the lease thread reads its pace from it)."""
    rate: Decimal = Decimal(0)
    """USD a second calls reserved lately (decaying)."""
    sampled: tuple[float, Decimal] = (0.0, Decimal(0))

    def pace(self, now: float) -> Decimal:
        """USD a second calls reserve lately, sampled at most every 50 ms."""
        at, demanded = self.sampled
        elapsed = now - at
        if elapsed >= 0.05:
            recent = (self.demanded - demanded) / Decimal(elapsed)
            self.rate = max(recent, self.rate / 2)
            self.sampled = (now, self.demanded)
        return self.rate

    def running_low(self, grant: Grant) -> bool:
        """Whether what is left on ``grant`` should have the thread ask for more."""
        if grant.available < self.low:
            return True
        return self.budget.limit_tokens is not None and grant.available_tokens < self.low_tokens

    def usable(self, now: float) -> Grant | None:
        """The lease calls may reserve from now, if any."""
        grant = self.grant
        if grant is not None and now >= grant.usable_until:
            self.retiring.append(grant)
            self.grant = grant = None
        return grant


class LeaseKeeper:
    """Holds a client's budget accounts and keeps their leases with the hub on its thread.

    ``lock`` guards every account; ``on_change`` is called (without it) after each answer from
    the hub, so that waiting calls can try again."""

    def __init__(
        self,
        client: LeaseClient,
        *,
        ttl: float = 60.0,
        calls_per_lease: int = 16,
        low_calls: int = 4,
        ahead: float = 2.0,
        least: Decimal = Decimal("0.01"),
        exhausted_recheck: float = 1.0,
        retry_delay: float = 0.5,
        max_retry_delay: float = 10.0,
    ) -> None:
        self.client = client
        self.ttl = ttl
        self.calls_per_lease = calls_per_lease
        self.low_calls = low_calls
        self.ahead = Decimal(ahead)
        """Seconds of calls, at their recent pace, a lease is asked for."""
        self.least = least
        """The smallest amount asked for."""
        self.exhausted_recheck = exhausted_recheck
        self.retry_delay = retry_delay
        self.max_retry_delay = max_retry_delay
        self.on_change: Callable[[], None] = lambda: None
        self.lock = threading.Condition()
        self.accounts: dict[uuid.UUID, Account] = {}
        self.holder = holder_name()
        self._orphans: list[Grant] = []
        """Leases of budgets that are gone, released once their calls have settled."""
        self._thread: threading.Thread | None = None
        self._closing = False

    # -- the call path (callers hold ``lock``) ----------------------------------------------

    def exhausted(self, account: Account, now: float) -> bool:
        """Whether the hub said lately that ``account``'s budget has nothing left."""
        return now < account.exhausted_at + self.exhausted_recheck

    def low_water(self, account: Account) -> Decimal:
        """What left on ``account``'s lease has the thread ask for more (``lock`` held)."""
        return max(account.typical * self.low_calls, account.need, account.rate * self.ahead / 4)

    def note_typical(self, account: Account) -> None:
        """``account``'s typical call changed: what is low follows (``lock`` held)."""
        account.low = self.low_water(account)
        account.low_tokens = max(account.typical_tokens * self.low_calls, account.need_tokens)

    def wake(self) -> None:
        """Have the thread look at the accounts now (caller holds ``lock``)."""
        if self._thread is None and not self._closing:
            self._thread = threading.Thread(
                target=self._run, name="agentops-budget-leases", daemon=True
            )
            self._thread.start()
        self.lock.notify_all()

    def sync(self, budgets: Iterable[Budget]) -> None:
        """Keep an account per budget of ``budgets``; a budget gone retires its leases."""
        current = {budget.id: budget for budget in budgets}
        for budget_id in [b for b in self.accounts if b not in current]:
            gone = self.accounts.pop(budget_id)
            if gone.grant is not None:
                gone.retiring.append(gone.grant)
                gone.grant = None
            if gone.retiring:
                self._orphans.extend(gone.retiring)
        for budget_id, budget in current.items():
            account = self.accounts.get(budget_id)
            if account is None:
                self.accounts[budget_id] = Account(budget)
            else:
                account.budget = budget
        if self.accounts or self._orphans:
            self.wake()

    # -- lifecycle ----------------------------------------------------------------------------

    def close(self, timeout: float = 2.0) -> None:
        """Stop the thread and release every lease, its calls still running counted spent."""
        with self.lock:
            self._closing = True
            self.lock.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)
        with self.lock:
            grants = [g for a in self.accounts.values() for g in (a.grant, *a.retiring) if g]
            grants += self._orphans
            for account in self.accounts.values():
                account.grant, account.retiring = None, []
            self._orphans = []
        deadline = time.monotonic() + timeout
        for grant in grants:
            if time.monotonic() >= deadline:
                break
            tokens = grant.tokens_spent(grant.spent_tokens + grant.reserved_tokens)
            self._release(grant, grant.spent + grant.reserved, tokens)
        self.client.close()

    def after_fork(self) -> None:
        """In a forked child: the parent's leases are the parent's; start with none."""
        self.lock = threading.Condition()
        self.holder = holder_name()
        self._thread = None
        self._orphans = []
        self.accounts = {
            budget_id: Account(account.budget) for budget_id, account in self.accounts.items()
        }
        self.client.after_fork()

    # -- the thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self.lock:
                if self._closing:
                    return
                now = time.monotonic()
                jobs, wake_at = self._due(now)
                if not jobs:
                    self.lock.wait(max(0.001, min(wake_at - now, 1.0)))
                    continue
            for job in jobs:
                try:
                    job()
                except Exception:  # never let the keeper die: log, and carry on
                    logger.exception("agentops: a budget lease request failed")
            self.on_change()

    def _due(self, now: float) -> tuple[list[Callable[[], None]], float]:
        """What to ask the hub now, and when to look again (caller holds ``lock``)."""
        jobs: list[Callable[[], None]] = []
        wake_at = now + 1.0
        for orphan in self._orphans:
            if orphan.reserved <= 0:
                jobs.append(_bound(self._release_orphan, orphan))
        for account in self.accounts.values():
            if now < account.next_try:
                wake_at = min(wake_at, account.next_try)
                continue
            for retired in account.retiring:
                if retired.reserved <= 0:
                    jobs.append(_bound(self._release_retired, account, retired))
            grant = account.usable(now)
            wanted = account.waiting > 0 or now - account.last_call < self.ttl
            pace = account.pace(now)
            account.typical *= _DECAY
            account.typical_tokens = int(account.typical_tokens * _DECAY)
            self.note_typical(account)
            chunk = max(
                self.least,
                account.typical * self.calls_per_lease,
                account.need,
                pace * self.ahead,
            )
            tokens = self._tokens_for(account, chunk)
            if grant is None:
                if (account.waiting > 0 or account.starved) and not self.exhausted(account, now):
                    jobs.append(_bound(self._ask, account, chunk, tokens))
                continue
            wake_at = min(wake_at, grant.renew_at, grant.usable_until)
            low_usd = grant.available < account.low
            low_tokens = tokens is not None and grant.available_tokens < account.low_tokens
            if wanted and (low_usd or low_tokens) and not self.exhausted(account, now):
                more, more_tokens = chunk if low_usd else None, tokens if low_tokens else None
                jobs.append(_bound(self._renew, account, grant, more, more_tokens))
            elif now >= grant.renew_at:
                if grant.used or grant.reserved > 0:
                    jobs.append(_bound(self._renew, account, grant, None, None))
                else:  # idle for a third of its TTL: give it back
                    account.grant = None
                    account.retiring.append(grant)
                    jobs.append(_bound(self._release_retired, account, grant))
        return jobs, wake_at

    def _tokens_for(self, account: Account, chunk: Decimal) -> int | None:
        """The tokens to ask with ``chunk`` USD: as many calls' worth at the typical call's
        tokens (None: the budget does not limit tokens)."""
        if account.budget.limit_tokens is None:
            return None
        calls = self.calls_per_lease
        if account.typical > 0:
            calls = max(calls, int((chunk / account.typical).to_integral_value(ROUND_CEILING)))
        return max(1, account.need_tokens, account.typical_tokens * calls)

    def _ask(self, account: Account, amount: Decimal, tokens: int | None) -> None:
        from agentops_sdk.contract.budgets import LeaseAsk

        with self.lock:
            request_id = account.asking = account.asking or uuid.uuid4()
        ask = LeaseAsk(
            request_id=request_id,
            holder=self.holder,
            amount_usd=_usd(amount),
            tokens=tokens,
            ttl=self.ttl,
        )
        sent = time.monotonic()
        try:
            lease = self.client.ask(account.budget.id, ask)
        except HubRefused as refused:
            with self.lock:
                account.asking = None  # final: the next ask is a new one
                self._refused(account, refused)
            return
        except HubUnreachable as exc:
            with self.lock:
                self._failed(account, exc)
            return
        with self.lock:
            account.asking = None
            self._answered(account)
            if account.grant is not None and account.grant.lease.id == lease.id:
                account.grant.renewed(lease, sent, self.ttl)
            elif lease.state == "active":
                if account.grant is not None:
                    account.retiring.append(account.grant)
                account.grant = Grant(lease, sent, self.ttl)
                account.starved = False

    def _renew(
        self, account: Account, grant: Grant, more: Decimal | None, more_tokens: int | None
    ) -> None:
        from agentops_sdk.contract.budgets import LeaseReport

        with self.lock:
            spent, spent_tokens = grant.spent, grant.tokens_spent(grant.spent_tokens)
        report = LeaseReport(
            spent_usd=_usd(spent),
            spent_tokens=spent_tokens,
            renew_ttl=self.ttl,
            more_usd=None if more is None else _usd(more),
            more_tokens=more_tokens,
        )
        sent = time.monotonic()
        try:
            lease = self.client.report(grant.lease.id, report)
        except HubRefused as refused:
            with self.lock:
                self._refused(account, refused)
                if refused.code != EXHAUSTED:  # the lease is gone (404, 409 not active)
                    self._retire(account, grant)
            return
        except HubUnreachable as exc:
            with self.lock:
                self._failed(account, exc)
            return
        with self.lock:
            self._answered(account)
            short = (more is not None and lease.granted_usd <= grant.granted) or (
                more_tokens is not None and (lease.granted_tokens or 0) <= grant.granted_tokens
            )
            grant.renewed(lease, sent, self.ttl)
            if lease.state != "active":
                self._retire(account, grant)
            elif short and account.budget.hard:
                account.exhausted_at = time.monotonic()  # no room to grow it: none left

    def _release_retired(self, account: Account, grant: Grant) -> None:
        released = self._release(grant, grant.spent, grant.tokens_spent(grant.spent_tokens))
        with self.lock:
            if not released:
                self._failed(account, HubUnreachable("the release was not heard"))
            elif grant in account.retiring:
                account.retiring.remove(grant)

    def _release_orphan(self, grant: Grant) -> None:
        # once: if the hub cannot hear it, the TTL ends it
        self._release(grant, grant.spent, grant.tokens_spent(grant.spent_tokens))
        with self.lock:
            if grant in self._orphans:
                self._orphans.remove(grant)

    def _release(self, grant: Grant, spent: Decimal, spent_tokens: int | None) -> bool:
        """Give back what is left of ``grant``; whether the hub has heard (or never will)."""
        from agentops_sdk.contract.budgets import LeaseReport

        report = LeaseReport(spent_usd=_usd(spent), spent_tokens=spent_tokens, release=True)
        try:
            self.client.report(grant.lease.id, report)
        except HubRefused:
            return True  # gone already (expired, unknown): nothing to give back
        except HubUnreachable:
            return False  # kept, and tried again; it expires on the hub meanwhile
        return True

    def _retire(self, account: Account, grant: Grant) -> None:
        if account.grant is grant:
            account.grant = None
            account.retiring.append(grant)

    def _answered(self, account: Account) -> None:
        if account.unreachable:
            logger.info("agentops: the hub grants budget leases again")
        account.unreachable, account.failures, account.next_try = False, 0, 0.0

    def _refused(self, account: Account, refused: HubRefused) -> None:
        if refused.status == 409 and refused.code == EXHAUSTED:
            self._answered(account)
            account.exhausted_at = time.monotonic()
            return
        self._failed(account, refused)

    def _failed(self, account: Account, exc: Exception) -> None:
        if not account.unreachable:
            logger.warning(
                "agentops: cannot get a lease of budget %r from the hub (%s); its fail mode "
                "(%s) applies to calls past the leases held",
                account.budget.name,
                exc,
                account.budget.fail_mode,
            )
        account.unreachable = True
        account.failures += 1
        delay = min(self.max_retry_delay, self.retry_delay * 2 ** (account.failures - 1))
        account.next_try = time.monotonic() + delay


def _bound(function: Callable[..., None], *args: object) -> Callable[[], None]:
    return lambda: function(*args)


def _usd(amount: Decimal) -> Decimal:
    """``amount`` as the wire takes it: ten decimal places, rounded up, never below zero."""
    return max(amount, Decimal(0)).quantize(_CENT_FRACTION, rounding=ROUND_CEILING)
