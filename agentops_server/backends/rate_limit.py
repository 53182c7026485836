"""Rate limits that hold across every hub process.

Counting is the ``limits`` library's moving window: exact (no burst at a window's edge), and on
Redis one atomic Lua script per hit, so any number of hub processes share one count. Without
``AGENTOPS_REDIS_URL`` the count lives in the process (one process, or tests).

    limiter = create_rate_limiter(settings)
    result = await limiter.hit(f"key:{key_id}", "1200/minute")
    if not result.allowed:
        ...  # 429, Retry-After: result.retry_after

:class:`RateLimitMiddleware` applies the org and caller limits to every authenticated request.
Litestar's own ``RateLimitConfig`` is not used: it counts per process, without an atomic
increment (litestar-org/litestar#4700).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from litestar import Request
from litestar.datastructures import MutableScopeHeaders
from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from redis.asyncio import ConnectionPool

from agentops_server.errors import Problem
from agentops_server.settings import Settings

__all__ = ["RateLimitMiddleware", "RateLimitResult", "RateLimiter", "create_rate_limiter"]

_REDIS_KEY_PREFIX = "agentops:ratelimit"
_LIMIT_SETTINGS = ("rate_limit_org", "rate_limit_key", "rate_limit_login", "rate_limit_login_ip")
"""Every setting that holds a limit string."""
_OPERATIONS_PATH = re.compile(r"/(?:health|ready|schema)(?:/|$)")
"""Never limited: health checks and the API schema."""


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
        self, storage: Storage, *, on_close: Callable[[], Awaitable[None]] | None = None
    ) -> None:
        self._strategy = MovingWindowRateLimiter(storage)
        self._on_close = on_close

    async def hit(self, key: str, limit: str, cost: int = 1) -> RateLimitResult:
        """Count ``cost`` hits on ``key`` against ``limit`` (a ``limits`` string such as
        ``"10/minute"``); refused hits are not counted."""
        item = _parse_limit(limit)
        allowed = await self._strategy.hit(item, key, cost=cost)
        stats = await self._strategy.get_window_stats(item, key)
        reset_after = max(0.0, stats.reset_time - time.time())
        return RateLimitResult(
            allowed=allowed,
            limit=item.amount,
            remaining=max(0, stats.remaining),
            reset_after=reset_after,
            retry_after=0 if allowed else max(1, math.ceil(reset_after)),
        )

    async def clear(self, key: str, limit: str) -> None:
        """Forget every hit on ``key`` against ``limit``."""
        await self._strategy.clear(_parse_limit(limit), key)

    async def close(self) -> None:
        """Release the storage's connections."""
        if self._on_close is not None:
            await self._on_close()


def create_rate_limiter(settings: Settings) -> RateLimiter:
    """A limiter on Redis when ``settings.redis_url`` is set, in the process otherwise.

    Raises ``ValueError`` naming the setting when one of the rate limits (``rate_limit_org``,
    ``rate_limit_key``, ``rate_limit_login``, ``rate_limit_login_ip``) is not a limit string,
    so a bad value stops the hub when it is built rather than at the first request it limits.
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
    return RateLimiter(storage, on_close=pool.aclose)


class RateLimitMiddleware(ASGIMiddleware):
    """Counts each authenticated request against its org and its caller (API key or user).

    Runs after authentication; requests without ``scope["auth"]`` pass untouched. Every answer
    carries ``RateLimit-*`` headers for the tighter of the two limits; an exhausted limit is a
    ``429 rate_limited`` problem with ``Retry-After``. Limits come from ``settings.rate_limit_org``
    and ``settings.rate_limit_key``; the limiter is ``app.state.rate_limiter``.
    """

    scopes = (ScopeType.HTTP,)

    def __init__(self) -> None:
        self.should_bypass_for_scope = _is_operations_path

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        """Count the request, then answer 429 or pass it on with the headers added."""
        principal = scope.get("auth")
        org_id = getattr(principal, "org_id", None)
        if org_id is None:
            await next_app(scope, receive, send)
            return
        state = scope["litestar_app"].state
        limiter: RateLimiter = state.rate_limiter
        settings: Settings = state.settings
        caller = getattr(principal, "key_id", None) or getattr(principal, "user_id", None)
        results: list[RateLimitResult] = []
        # The caller first: a caller over its own limit must not use up its org's.
        if caller is not None:
            results.append(await limiter.hit(f"caller:{caller}", settings.rate_limit_key))
        if all(result.allowed for result in results):
            results.append(await limiter.hit(f"org:{org_id}", settings.rate_limit_org))
        tightest = min(results, key=lambda result: (result.allowed, result.remaining))
        headers = tightest.headers()
        if not tightest.allowed:
            await _answer_rate_limited(scope, receive, send, tightest, headers)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                response_headers = MutableScopeHeaders.from_message(message)
                for name, value in headers.items():
                    response_headers[name] = value
            await send(message)

        await next_app(scope, receive, send_with_headers)


async def _answer_rate_limited(
    scope: Scope, receive: Receive, send: Send, result: RateLimitResult, headers: dict[str, str]
) -> None:
    # Answered here rather than raised: an exception raised in a middleware skips the send
    # wrappers of the middlewares around it (request id, access log).
    problem = Problem(
        429,
        "rate_limited",
        f"Too many requests: the limit is {result.limit} per window; "
        f"retry in {result.retry_after} s.",
        headers={**headers, "Retry-After": str(result.retry_after)},
    )
    request: Request[Any, Any, Any] = Request(scope, receive, send)
    response = problem.to_response(request).to_asgi_response(app=None, request=request)
    await response(scope, receive, send)


def _is_operations_path(scope: Scope) -> bool:
    return _OPERATIONS_PATH.match(scope["path"]) is not None


@functools.lru_cache(maxsize=64)
def _parse_limit(limit: str) -> RateLimitItem:
    return parse(limit)
