"""HTTP defences every answer of the hub carries, and which proxies the hub believes.

- :func:`security_headers`: a ``before_send`` hook of the app, so it reaches every answer (the
  problem answers of unknown routes and refused credentials included, which no route
  middleware sees): ``X-Content-Type-Options: nosniff``, ``X-Frame-Options: DENY``,
  ``Referrer-Policy: no-referrer``, a ``Content-Security-Policy`` (nothing may load from a JSON
  answer; an HTML page loads only from the hub and is never framed), and
  ``Strict-Transport-Security`` when the hub's public address is https
  (``AGENTOPS_HSTS_MAX_AGE``, 0 to leave it out).
- :func:`proxy_middleware`: the client's address and scheme from ``X-Forwarded-For`` and
  ``X-Forwarded-Proto``, but only on connections from ``AGENTOPS_TRUSTED_PROXIES`` (none by
  default: anyone can write those headers, and per-address rate limits key on the address).

Answers that carry a token or a secret also carry ``Cache-Control: no-store``: every ``/api/v1``
answer does (:func:`agentops_server.api.v1.api_router`).
"""

from __future__ import annotations

from typing import Any

from litestar.datastructures import MutableScopeHeaders
from litestar.middleware import DefineMiddleware
from litestar.types import BeforeMessageSendHookHandler, Message, Scope
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from agentops_server.settings import Settings

__all__ = ["API_CSP", "HTML_CSP", "etag_matches", "proxy_middleware", "security_headers"]

API_CSP = "default-src 'none'; frame-ancestors 'none'"
"""The policy of every answer but HTML pages: it loads nothing and is never framed."""
HTML_CSP = (
    "default-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
"""The policy of HTML pages (``/schema``): only the hub's own resources, never framed."""


def security_headers(settings: Settings) -> BeforeMessageSendHookHandler:
    """The hook adding the security headers to each answer's start (a header the answer
    already sets is kept)."""
    fixed = {
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
    }
    if settings.served_over_https and settings.hsts_max_age > 0:
        fixed["Strict-Transport-Security"] = f"max-age={settings.hsts_max_age}"

    def add_headers(message: Message, _: Scope) -> None:
        if message["type"] != "http.response.start":
            return
        headers = MutableScopeHeaders.from_message(message)
        html = (headers.get("content-type") or "").startswith("text/html")
        policy = HTML_CSP if html else API_CSP
        for name, value in {**fixed, "Content-Security-Policy": policy}.items():
            if name not in headers:
                headers[name] = value

    return add_headers


def proxy_middleware(settings: Settings) -> list[DefineMiddleware]:
    """The middleware believing ``X-Forwarded-*`` from ``settings.trusted_proxies``, if any
    (put it first: everything after it sees the client's address)."""
    networks = settings.trusted_proxy_networks
    if not networks:
        return []
    # A plain ASGI middleware; uvicorn types it with its own ASGI protocol classes.
    middleware: Any = ProxyHeadersMiddleware
    return [DefineMiddleware(middleware, trusted_hosts=networks)]


def etag_matches(if_none_match: str, etag: str) -> bool:
    """Whether an ``If-None-Match`` header (a list of ETags, weak or strong, or ``*``) holds
    ``etag``: the route answers 304."""
    candidates = {candidate.strip() for candidate in if_none_match.split(",")}
    return "*" in candidates or etag in {c.removeprefix("W/") for c in candidates}
