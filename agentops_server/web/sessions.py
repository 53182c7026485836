"""How a person stays signed in to the pages: a session cookie over a hub session.

Signing in through a page opens the same hub session the API's sign-in opens
(:mod:`agentops_server.services.identity.sessions`); the cookie carries a signed token naming
it (purpose ``web_session``, so it is never accepted as a bearer token, nor an access token as
a cookie). Every request checks the session and the membership again
(:func:`agentops_server.auth.middleware.member_principal`): signing out anywhere, a revoked
session or a removed member ends the cookie at once.

The cookie is ``HttpOnly``, ``SameSite=Lax`` and ``Secure`` whenever the hub's public address
is https; state-changing pages are further protected by Litestar's CSRF middleware
(:func:`agentops_server.web.csrf_config`).
"""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

from litestar.connection import ASGIConnection
from litestar.datastructures import Cookie
from litestar.enums import ScopeType
from litestar.middleware import MiddlewareProtocol
from litestar.types import ASGIApp, Receive, Scope, Send
from sqlalchemy.ext.asyncio import AsyncEngine

from agentops_server.auth.middleware import member_principal
from agentops_server.db.tenancy import Tenant, set_tenant
from agentops_server.refusals import Unauthenticated
from agentops_server.security.tokens import AccessClaims, InvalidToken, decode_token, encode_token
from agentops_server.services.identity.sessions import TokenPair
from agentops_server.settings import Settings

__all__ = ["COOKIE", "PageSessions", "SessionBackend", "session_cookie", "signed_out_cookie"]

COOKIE = "agentops_session"
"""The name of the pages' session cookie."""
_PURPOSE = "web_session"


def session_cookie(settings: Settings, tokens: TokenPair) -> Cookie:
    """The cookie keeping a person signed in to the session ``tokens`` opened, for as long as
    that session may live."""
    claims = {"sub": str(tokens.user_id), "org": str(tokens.org_id), "sid": str(tokens.session_id)}
    value = encode_token(settings.secret_key, _PURPOSE, claims, ttl=settings.refresh_token_ttl)
    return _cookie(settings, value, max_age=settings.refresh_token_ttl)


def signed_out_cookie(settings: Settings) -> Cookie:
    """The cookie that deletes the session cookie."""
    return _cookie(settings, "", max_age=0)


@dataclasses.dataclass(frozen=True, slots=True)
class SessionBackend:
    """The database and settings the cookie is checked with (the app's own: Litestar copies a
    router's middleware options when it registers the router, and these are shared, never
    copied)."""

    engine: AsyncEngine
    settings: Settings

    def __deepcopy__(self, memo: dict[int, Any]) -> SessionBackend:
        return self


class PageSessions(MiddlewareProtocol):
    """Who the session cookie proves: a member whose org becomes the request's tenant.

    Without a valid cookie the request goes on as nobody; a page's guard then refuses it and
    the page sends the person to sign in (:mod:`agentops_server.web.errors`).
    """

    def __init__(self, app: ASGIApp, *, backend: SessionBackend) -> None:
        self.app = app
        self.engine = backend.engine
        self.settings = backend.settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == ScopeType.HTTP:
            value = ASGIConnection[Any, Any, Any, Any](scope).cookies.get(COOKIE)
            claims = self._claims(value) if value else None
            if claims is not None:
                try:
                    principal = await member_principal(self.engine, claims)
                except Unauthenticated:
                    principal = None
                if principal is not None:
                    scope["auth"] = scope["user"] = principal
                    set_tenant(Tenant(principal.org_id, principal.user_id))
        await self.app(scope, receive, send)

    def _claims(self, value: str) -> AccessClaims | None:
        try:
            claims = decode_token(self.settings.secret_key, _PURPOSE, value)
            return AccessClaims(
                uuid.UUID(claims["sub"]),
                uuid.UUID(claims["org"]),
                uuid.UUID(claims["sid"]),
                int(claims["exp"]),
            )
        except (InvalidToken, KeyError, ValueError, TypeError):
            return None


def _cookie(settings: Settings, value: str, *, max_age: int) -> Cookie:
    return Cookie(
        key=COOKIE,
        value=value,
        max_age=max_age,
        path="/",
        httponly=True,
        secure=settings.served_over_https,
        samesite="lax",
    )
