"""The request limits of every authenticated request, per org and per caller, as a middleware.

It counts on the hub's :class:`~agentops_server.backends.rate_limit.RateLimiter` (in the process
or on Redis); ingest is counted in events by
:class:`~agentops_server.backends.rate_limit.IngestQuota` instead.
"""

from __future__ import annotations

import re
from typing import Any

from litestar import Request
from litestar.datastructures import MutableScopeHeaders
from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from agentops_server.api.problems import problem_answer
from agentops_server.backends.rate_limit import RateLimiter, RateLimitResult
from agentops_server.refusals import RateLimited
from agentops_server.settings import Settings

__all__ = ["RateLimitMiddleware"]

_INGEST_PATH = "/api/v1/ingest/"
"""Counted by ``IngestQuota`` in events, not by the middleware in requests."""
_OPERATIONS_PATH = re.compile(r"/(?:health|ready|schema)(?:/|$)")
"""Never limited: health checks and the API schema."""


class RateLimitMiddleware(ASGIMiddleware):
    """Counts each authenticated request against its org and its caller (API key or user).

    Runs after authentication; requests without ``scope["auth"]`` pass untouched. Every answer
    carries ``RateLimit-*`` headers for the tighter of the two limits; an exhausted limit is a
    ``429 rate_limited`` problem with ``Retry-After``. Limits come from ``settings.rate_limit_org``
    and ``settings.rate_limit_key``.
    """

    scopes = (ScopeType.HTTP,)

    def __init__(self, limiter: RateLimiter, settings: Settings) -> None:
        self.limiter = limiter
        self.settings = settings
        self.should_bypass_for_scope = _is_operations_path

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        """Count the request, then answer 429 or pass it on with the headers added."""
        principal = scope.get("auth")
        org_id = getattr(principal, "org_id", None)
        if org_id is None or scope["path"].startswith(_INGEST_PATH):
            await next_app(scope, receive, send)
            return
        limiter, settings = self.limiter, self.settings
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
    refusal = RateLimited(
        "rate_limited",
        f"Too many requests: the limit is {result.limit} per window; "
        f"retry in {result.retry_after} s.",
        headers={**headers, "Retry-After": str(result.retry_after)},
    )
    request: Request[Any, Any, Any] = Request(scope, receive, send)
    response = problem_answer(refusal, request).to_asgi_response(app=None, request=request)
    await response(scope, receive, send)


def _is_operations_path(scope: Scope) -> bool:
    return _OPERATIONS_PATH.match(scope["path"]) is not None
