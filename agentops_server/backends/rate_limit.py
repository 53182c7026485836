"""Rate limits that hold across every hub process.

Counting is the ``limits`` library's moving window: exact (no burst at a window's edge), and on
Redis one atomic Lua script per hit, so any number of hub processes share one count. Without
``AGENTOPS_REDIS_URL`` the count lives in the process (one process, or tests).

    limiter = create_rate_limiter(settings)
    result = await limiter.hit(f"key:{key_id}", "1200/minute")
    if not result.allowed:
        ...  # 429, Retry-After: result.retry_after

Four uses of one :class:`RateLimiter` (the app's ``rate_limiter`` dependency), each its own class:

- :class:`~agentops_server.api.rate_limits.RateLimitMiddleware`: the org and caller limits of
  every authenticated request (``rate_limit_org``, ``rate_limit_key``) but ingest.
- :class:`IngestQuota`: ingest counts events, not requests, per API key (``rate_limit_ingest``):
  a request limit would cap a key at its request rate times its batch size, below what the hub
  can store. Counted with a sliding window counter (two numbers per key whatever the count).
- :class:`Throttle`: attempts at sign-in, second factor, password and reset actions, per client
  address and per account (``rate_limit_login_ip``, ``rate_limit_login``).
- :class:`FailedAuthentications`: credentials that are not authentic (a forged, guessed or
  tampered API key, token, refresh token, invitation or reset token), per client address
  (``rate_limit_auth_failures``). Only failures count, and only from the address they came from,
  so a key's holder is never refused for what others sent from elsewhere.

Routes get the last three injected (``ingest_quota``, ``throttle`` and ``auth_failures``,
:data:`DEPENDENCIES`);
the authentication middleware builds its own with :func:`failed_authentications`. Litestar's
own ``RateLimitConfig`` is not used: it counts per process, without an atomic increment
(litestar-org/litestar#4700).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter, SlidingWindowCounterRateLimiter
from limits.util import WindowStats
from litestar import Request
from litestar.connection import ASGIConnection
from litestar.di import NamedDependency, Provide
from litestar.types import Dependencies
from redis.asyncio import ConnectionPool
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from agentops_server.refusals import RateLimited
from agentops_server.settings import Settings

__all__ = [
    "DEPENDENCIES",
    "NOT_AUTHENTIC",
    "FailedAuthentications",
    "IngestQuota",
    "RateLimitResult",
    "RateLimiter",
    "Throttle",
    "account_key",
    "create_rate_limiter",
    "failed_authentications",
]

logger = logging.getLogger("agentops_server.rate_limit")
T = TypeVar("T")

_REDIS_KEY_PREFIX = "agentops:ratelimit"
_UNREACHABLE = (RedisConnectionError, RedisTimeoutError, OSError)
"""What a shared store that cannot be reached raises."""
_LIMIT_SETTINGS = (
    "rate_limit_org",
    "rate_limit_key",
    "rate_limit_login",
    "rate_limit_login_ip",
    "rate_limit_auth_failures",
    "rate_limit_ingest",
)
"""Every setting that holds a limit string."""


@dataclasses.dataclass(frozen=True, slots=True)
class RateLimitResult:
    """The outcome of one hit: whether it was allowed, and the state of its limit after it."""

    allowed: bool
    limit: int
    """Hits allowed per window."""
    remaining: int
    """Hits left in the window now."""
    reset_after: float
    """Seconds until the window frees its oldest hit."""
    retry_after: int
    """Whole seconds to wait before retrying: at least 1 when refused, else 0."""

    def headers(self) -> dict[str, str]:
        """The ``RateLimit-*`` headers describing this limit."""
        return {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(math.ceil(self.reset_after)),
        }


class RateLimiter:
    """Counts hits against named limits; built by :func:`create_rate_limiter`."""

    def __init__(
        self,
        storage: Storage,
        *,
        fallback: Storage | None = None,
        on_close: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._primary = _Counting(storage)
        self._fallback = None if fallback is None else _Counting(fallback)
        self._degraded = False
        self._on_close = on_close

    async def hit(
        self, key: str, limit: str, cost: int = 1, *, approximate: bool = False
    ) -> RateLimitResult:
        """Count ``cost`` hits on ``key`` against ``limit`` (a ``limits`` string such as
        ``"10/minute"``); refused hits are not counted.

        The moving window is exact but keeps one entry per hit; ``approximate`` counts with a
        sliding window counter instead (two numbers per key), for limits in the millions such
        as events."""
        item = _parse_limit(limit)

        async def count(counting: _Counting) -> tuple[bool, WindowStats]:
            strategy = counting.counter if approximate else counting.window
            allowed = await strategy.hit(item, key, cost=cost)
            return allowed, await strategy.get_window_stats(item, key)

        allowed, stats = await self._counting(count)
        reset_after = max(0.0, stats.reset_time - time.time())
        return RateLimitResult(
            allowed=allowed,
            limit=item.amount,
            remaining=max(0, stats.remaining),
            reset_after=reset_after,
            retry_after=0 if allowed else max(1, math.ceil(reset_after)),
        )

    async def peek(self, key: str, limit: str) -> RateLimitResult:
        """The state of ``limit`` on ``key`` now, counting nothing: ``allowed`` says whether one
        more hit would pass."""
        item = _parse_limit(limit)
        stats = await self._counting(lambda counting: counting.window.get_window_stats(item, key))
        reset_after = max(0.0, stats.reset_time - time.time())
        allowed = stats.remaining > 0
        return RateLimitResult(
            allowed=allowed,
            limit=item.amount,
            remaining=max(0, stats.remaining),
            reset_after=reset_after,
            retry_after=0 if allowed else max(1, math.ceil(reset_after)),
        )

    async def clear(self, key: str, limit: str) -> None:
        """Forget every hit on ``key`` against ``limit``."""
        await self._counting(lambda counting: counting.window.clear(_parse_limit(limit), key))

    async def close(self) -> None:
        """Release the storage's connections."""
        if self._on_close is not None:
            await self._on_close()

    async def _counting(self, count: Callable[[_Counting], Awaitable[T]]) -> T:
        """``count`` on the shared storage; while it cannot be reached (Redis down), on the
        fallback in the process, so that limits still hold per process and the hub goes on
        answering (ingest, controls) instead of failing every request. Logged once each way."""
        try:
            result = await count(self._primary)
        except _UNREACHABLE:
            if self._fallback is None:
                raise
            if not self._degraded:
                logger.exception(
                    "rate limits: the shared store is unreachable; counting in the process"
                )
                self._degraded = True
            return await count(self._fallback)
        if self._degraded:
            logger.warning("rate limits: the shared store answers again")
            self._degraded = False
        return result


class _Counting:
    """The two ways of counting, on one storage."""

    __slots__ = ("counter", "window")

    def __init__(self, storage: Storage) -> None:
        self.window = MovingWindowRateLimiter(storage)
        self.counter = SlidingWindowCounterRateLimiter(storage)


def create_rate_limiter(settings: Settings) -> RateLimiter:
    """A limiter on Redis when ``settings.redis_url`` is set, in the process otherwise.

    Raises ``ValueError`` naming the setting when one of the rate limits (``rate_limit_org``,
    ``rate_limit_key``, ``rate_limit_login``, ``rate_limit_login_ip``,
    ``rate_limit_auth_failures``) is not a limit string, so a bad value stops the hub when it
    is built rather than at the first request it limits.
    """
    for name in _LIMIT_SETTINGS:
        try:
            _parse_limit(getattr(settings, name))
        except ValueError as exc:
            raise ValueError(f"{name}: {exc} (write it like '1200/minute')") from exc
    if settings.redis_url is None:
        return RateLimiter(MemoryStorage())
    # Our own pool, so close() can release it: limits' storage has no close of its own.
    pool = ConnectionPool.from_url(settings.redis_url)
    storage = RedisStorage(
        f"async+{settings.redis_url}",
        implementation="redispy",
        key_prefix=_REDIS_KEY_PREFIX,
        connection_pool=pool,  # type: ignore[arg-type]  # documented; limits' hint is narrower
    )
    return RateLimiter(storage, fallback=MemoryStorage(), on_close=pool.aclose)


NOT_AUTHENTIC = frozenset(
    {
        "invalid_api_key",
        "invalid_token",
        "invalid_refresh_token",
        "invalid_mfa_token",
        "invalid_invitation",
        "invalid_reset_token",
    }
)
"""Refusal codes meaning the credential offered is none of this hub's (forged, guessed,
tampered): what :class:`FailedAuthentications` counts. An expired, revoked or used credential is
genuine and does not count, so a client holding a stale one is not slowed down for it."""


@dataclasses.dataclass(frozen=True, slots=True)
class Throttle:
    """Attempts at an action (sign-in, second factor, password, reset), limited per client
    address (``rate_limit_login_ip``) and per account (``rate_limit_login``)."""

    limiter: RateLimiter
    settings: Settings
    address: str

    async def count(self, action: str, account: str | None = None) -> None:
        """Count an attempt at ``action`` from this address and, when known, on ``account``;
        429 ``too_many_attempts`` past either limit."""
        limits = [(f"auth:{action}:ip:{self.address}", self.settings.rate_limit_login_ip)]
        if account:
            limits.append((_account_limit_key(action, account), self.settings.rate_limit_login))
        for key, limit in limits:
            result = await self.limiter.hit(key, limit)
            if not result.allowed:
                raise _too_many_attempts(result)

    @contextlib.asynccontextmanager
    async def attempt(self, action: str, account: str) -> AsyncIterator[None]:
        """Count an attempt (as :meth:`count`); when the block succeeds, the account's count
        starts over (the address's does not)."""
        await self.count(action, account)
        yield
        await self.limiter.clear(
            _account_limit_key(action, account), self.settings.rate_limit_login
        )


@dataclasses.dataclass(frozen=True, slots=True)
class FailedAuthentications:
    """Credentials from one client address that were not authentic (:data:`NOT_AUTHENTIC`),
    against ``rate_limit_auth_failures``.

    Once the address has used up its failures, every credential it offers is refused with 429
    ``too_many_attempts`` before it is checked, until the window frees a failure: guessing gets
    nowhere, and nothing is learnt meanwhile. A valid credential costs nothing, and failures
    from other addresses never count against this one.
    """

    limiter: RateLimiter
    limit: str
    address: str

    @contextlib.asynccontextmanager
    async def guard(self) -> AsyncIterator[None]:
        """Refuse at once when this address has no failures left; else run the block (which
        checks a credential) and count it as a failure if it refuses the credential as not
        authentic."""
        key = f"auth-failures:ip:{self.address}"
        state = await self.limiter.peek(key, self.limit)
        if not state.allowed:
            raise _too_many_attempts(state)
        try:
            yield
        except Exception as exc:
            if getattr(exc, "code", None) in NOT_AUTHENTIC:
                await self.limiter.hit(key, self.limit)
            raise


@dataclasses.dataclass(frozen=True, slots=True)
class IngestQuota:
    """Events a caller may ingest, per ``rate_limit_ingest`` (by default far above what a hub
    stores, so it guards against a runaway client, never against a busy one)."""

    limiter: RateLimiter
    limit: str
    caller: str

    async def charge(self, events: int) -> None:
        """Count ``events``; 429 ``rate_limited`` with ``Retry-After`` when they do not fit (and
        then nothing is counted: the SDK keeps them and sends them again after the wait)."""
        result = await self.limiter.hit(
            f"ingest:{self.caller}", self.limit, max(1, events), approximate=True
        )
        if not result.allowed:
            raise RateLimited(
                "rate_limited",
                f"Too many events: the limit is {result.limit} per window for this key; "
                f"retry in {result.retry_after} s.",
                headers={**result.headers(), "Retry-After": str(result.retry_after)},
            )


def failed_authentications(
    limiter: RateLimiter, settings: Settings, connection: ASGIConnection[Any, Any, Any, Any]
) -> FailedAuthentications:
    """The failed authentications of the address ``connection`` comes from."""
    return FailedAuthentications(limiter, settings.rate_limit_auth_failures, _address(connection))


def _throttle(
    request: Request[Any, Any, Any],
    rate_limiter: NamedDependency[RateLimiter],
    settings: NamedDependency[Settings],
) -> Throttle:
    return Throttle(rate_limiter, settings, _address(request))


def _auth_failures(
    request: Request[Any, Any, Any],
    rate_limiter: NamedDependency[RateLimiter],
    settings: NamedDependency[Settings],
) -> FailedAuthentications:
    return failed_authentications(rate_limiter, settings, request)


def _ingest_quota(
    request: Request[Any, Any, Any],
    rate_limiter: NamedDependency[RateLimiter],
    settings: NamedDependency[Settings],
) -> IngestQuota:
    principal = request.auth
    caller = getattr(principal, "key_id", None) or getattr(principal, "user_id", None)
    return IngestQuota(rate_limiter, settings.rate_limit_ingest, str(caller))


DEPENDENCIES: Dependencies = {
    "ingest_quota": Provide(_ingest_quota, sync_to_thread=False),
    "throttle": Provide(_throttle, sync_to_thread=False),
    "auth_failures": Provide(_auth_failures, sync_to_thread=False),
}
"""``ingest_quota``, ``throttle`` and ``auth_failures`` for the routes (set on the ``/api/v1``
router), made from the app's ``rate_limiter`` and ``settings`` dependencies."""


def _too_many_attempts(result: RateLimitResult) -> RateLimited:
    return RateLimited(
        "too_many_attempts",
        f"Too many attempts; try again in {result.retry_after} s.",
        headers={**result.headers(), "Retry-After": str(result.retry_after)},
    )


def _address(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    """The client's address (a trusted proxy's client's, see ``agentops_server.api.headers``)."""
    return connection.client.host if connection.client else "unknown"


def account_key(email: str) -> str:
    """The account an email names, as :class:`Throttle` counts it (any case, no space)."""
    return email.strip().lower()[:320]


def _account_limit_key(action: str, account: str) -> str:
    return f"auth:{action}:account:{account}"


@functools.lru_cache(maxsize=64)
def _parse_limit(limit: str) -> RateLimitItem:
    return parse(limit)
