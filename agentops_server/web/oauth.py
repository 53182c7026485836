"""Signing in to the pages with an OAuth/OIDC provider, ending in a page session (the cookie).

The same flow as ``/api/v1/auth/oauth`` (:mod:`agentops_server.auth.oauth`: PKCE, a nonce, a
state bound to the browser by a short-lived cookie) and the same service at its end
(:func:`~agentops_server.auth.oauth.finish_sign_in`), but the provider sends the browser back
to ``/sign-in/oauth/{provider}/callback``, a page, which sets the session cookie and goes on to
the app, instead of answering tokens. That address is a second redirect URI to register at the
provider, next to the API's.
"""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get
from litestar.datastructures import Cookie
from litestar.di import NamedDependency
from litestar.params import FromPath
from litestar.response import Redirect
from sqlalchemy.ext.asyncio import AsyncSession

from agentops_server.api.v1.actors import client_of
from agentops_server.auth.guards import PUBLIC
from agentops_server.auth.oauth import (
    BINDING_COOKIE,
    STATE_TTL,
    OAuthProviders,
    begin_sign_in,
    finish_sign_in,
    read_state,
)
from agentops_server.auth.oauth_providers import Provider
from agentops_server.refusals import NotFound
from agentops_server.settings import Settings
from agentops_server.web.sessions import session_cookie
from agentops_server.web.sign_in import HOME, next_path

__all__ = ["OAuthPages"]


class OAuthPages(Controller):
    """The start and the end of a sign-in with a provider."""

    @get("/sign-in/oauth/{provider:str}", opt=PUBLIC)
    async def start(
        self,
        request: Request[Any, Any, Any],
        oauth_providers: NamedDependency[OAuthProviders],
        settings: NamedDependency[Settings],
        provider: FromPath[str],
    ) -> Redirect:
        """Send the browser to the provider (with the cookie binding the sign-in to it)."""
        chosen = _provider(oauth_providers, provider)
        wanted = next_path(request.query_params.get("next"))
        start = await begin_sign_in(
            chosen,
            settings,
            redirect_uri=_callback_url(settings, provider),
            org=None,
            redirect_to=wanted,
        )
        return Redirect(
            start.url,
            status_code=302,
            cookies=[_binding_cookie(settings, provider, start.binding, max_age=STATE_TTL)],
        )

    @get("/sign-in/oauth/{provider:str}/callback", opt=PUBLIC)
    async def callback(
        self,
        request: Request[Any, Any, Any],
        oauth_providers: NamedDependency[OAuthProviders],
        db_session: NamedDependency[AsyncSession],
        settings: NamedDependency[Settings],
        provider: FromPath[str],
    ) -> Redirect:
        """Check the state, finish the sign-in, and sign the browser in (a refusal shows the
        error page with its code)."""
        chosen = _provider(oauth_providers, provider)
        query = request.query_params
        state = read_state(
            settings, provider, query.get("state"), request.cookies.get(BINDING_COOKIE)
        )
        signed_in = await finish_sign_in(
            db_session,
            settings,
            chosen,
            state,
            code=query.get("code"),
            error=query.get("error"),
            error_description=query.get("error_description"),
            redirect_uri=_callback_url(settings, provider),
            client=client_of(request),
        )
        return Redirect(
            next_path(state.redirect_to or HOME),
            status_code=303,
            cookies=[
                session_cookie(settings, signed_in.tokens),
                # The binding is spent: a replayed callback URL finds no cookie.
                _binding_cookie(settings, provider, "", max_age=0),
            ],
        )


def _provider(providers: OAuthProviders, name: str) -> Provider:
    found = providers.get(name)
    if found is None:
        raise NotFound("unknown_provider", f"No sign-in provider is called {name!r}.")
    return found


def _callback_path(provider: str) -> str:
    return f"/sign-in/oauth/{provider}/callback"


def _callback_url(settings: Settings, provider: str) -> str:
    """The pages' redirect URI to register at the provider."""
    return settings.public_url.rstrip("/") + _callback_path(provider)


def _binding_cookie(settings: Settings, provider: str, value: str, *, max_age: int) -> Cookie:
    return Cookie(
        key=BINDING_COOKIE,
        value=value,
        max_age=max_age,
        path=_callback_path(provider),
        httponly=True,
        secure=settings.served_over_https,
        samesite="lax",  # sent on the provider's top-level redirect back
    )
