"""``/api/v1/auth/oauth``: sign in with GitHub, Google or an OpenID Connect provider.

``GET /providers`` lists what is configured; ``GET /{provider}/authorize`` sends the browser to
the provider; the provider sends it back to ``GET /{provider}/callback``, which answers with the
hub's token pair (as ``POST /auth/login`` does). See :mod:`agentops_server.auth.oauth`.
"""

from __future__ import annotations

import dataclasses
import re
import uuid
from typing import Annotated, Any, TypeVar

from litestar import Controller, Request, Response, get
from litestar.datastructures import Cookie
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, QueryParameter
from litestar.response import Redirect
from sqlalchemy.ext.asyncio import AsyncSession

from agentops_server.api.problems import problems
from agentops_server.api.v1.actors import client_of
from agentops_server.api.v1.openapi import ANYONE
from agentops_server.auth.guards import PUBLIC
from agentops_server.auth.oauth import (
    BINDING_COOKIE,
    STATE_TTL,
    OAuthProviders,
    begin_sign_in,
    finish_sign_in,
    read_state,
    safe_redirect_path,
)
from agentops_server.auth.oauth_providers import Provider
from agentops_server.refusals import Forbidden, Invalid, NotFound, Unauthenticated, UpstreamFailed
from agentops_server.settings import Settings
from agentops_server.slugs import SLUG_PATTERN
from agentops_server.values import Text

__all__ = ["OAuthController", "OAuthProviderInfo", "OAuthProviderList", "OAuthSignIn"]

_CALLBACK = "oauth_callback"
T = TypeVar("T")


@dataclasses.dataclass(frozen=True, slots=True)
class OAuthProviderInfo:
    """A provider people can sign in with."""

    name: str
    label: str
    kind: str
    """``oidc`` or ``github``."""
    authorize_url: str
    """Where to send the browser (``GET``) to sign in with it."""


@dataclasses.dataclass(frozen=True, slots=True)
class OAuthProviderList:
    """The configured providers."""

    providers: list[OAuthProviderInfo]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class OAuthSignIn:
    """A finished sign-in: the hub's token pair, and where the browser wanted to go."""

    access_token: str
    refresh_token: str
    token_type: str
    expires_in: int
    org_id: uuid.UUID
    user_id: uuid.UUID
    session_id: uuid.UUID
    new_user: bool
    """The sign-in made the user (and their personal org)."""
    redirect_to: str | None


class OAuthController(Controller):
    """Sign-in through external providers. Every route is public: it is how people sign in."""

    path = "/auth/oauth"
    tags = ("auth",)

    @get("/providers", opt=PUBLIC, security=ANYONE)
    async def list_providers(
        self, request: Request[Any, Any, Any], oauth_providers: NamedDependency[OAuthProviders]
    ) -> OAuthProviderList:
        """The providers configured in ``AGENTOPS_OAUTH_PROVIDERS``."""
        providers = oauth_providers
        return OAuthProviderList(
            [
                OAuthProviderInfo(
                    provider.name,
                    provider.label,
                    provider.kind,
                    request.app.route_reverse("oauth_authorize", provider=provider.name),
                )
                for provider in providers
            ]
        )

    @get(
        "/{provider:str}/authorize",
        opt=PUBLIC,
        security=ANYONE,
        name="oauth_authorize",
        status_code=302,
        responses=problems(
            Invalid("invalid_redirect", "redirect_to is not a path on this hub"),
            UpstreamFailed("oauth_provider_error", "the provider's discovery failed"),
        ),
    )
    async def authorize(
        self,
        *,
        request: Request[Any, Any, Any],
        oauth_providers: NamedDependency[OAuthProviders],
        settings: NamedDependency[Settings],
        provider: FromPath[str],
        org: Annotated[
            Text | None,
            QueryParameter(
                description="Sign into this org (its slug or id); you must be a member."
            ),
        ] = None,
        redirect_to: Annotated[
            Text | None,
            QueryParameter(description="A path on this hub to go to afterwards, such as /runs."),
        ] = None,
    ) -> Redirect:
        """Send the browser to ``provider`` to sign in (a 302 and a short-lived cookie binding
        the sign-in to this browser)."""
        chosen = _provider(oauth_providers, provider)
        if org is not None and not _is_slug(org):
            raise Invalid("validation_error", f"{org!r} is not an org slug or id.")
        if redirect_to is not None:
            safe_redirect_path(redirect_to)
        start = await begin_sign_in(
            chosen,
            settings,
            redirect_uri=_callback_url(request, settings, provider),
            org=org,
            redirect_to=redirect_to,
        )
        return Redirect(
            start.url,
            status_code=302,
            cookies=[
                _binding_cookie(request, settings, provider, start.binding, max_age=STATE_TTL)
            ],
        )

    @get(
        "/{provider:str}/callback",
        opt=PUBLIC,
        security=ANYONE,
        name=_CALLBACK,
        responses=problems(
            Invalid("invalid_oauth_state", "the state is forged, expired or for another browser"),
            Unauthenticated("invalid_id_token", "the provider's ID token does not verify"),
            Forbidden("oauth_denied", "the provider did not sign the user in"),
            Forbidden("signup_closed", "no account, and sign-up is closed"),
            UpstreamFailed("oauth_provider_error", "the provider answered with an error"),
        ),
    )
    async def callback(
        self,
        *,
        request: Request[Any, Any, Any],
        oauth_providers: NamedDependency[OAuthProviders],
        db_session: NamedDependency[AsyncSession],
        settings: NamedDependency[Settings],
        provider: FromPath[str],
        oauth_state: Annotated[Text | None, QueryParameter(name="state")] = None,
        code: FromQuery[Text | None] = None,
        error: FromQuery[Text | None] = None,
        error_description: FromQuery[Text | None] = None,
    ) -> Response[OAuthSignIn]:
        """Where the provider sends the browser back: check the state, exchange the code, find
        or make the user, and answer with the hub's tokens."""
        chosen = _provider(oauth_providers, provider)
        state = read_state(settings, provider, oauth_state, request.cookies.get(BINDING_COOKIE))
        signed_in = await finish_sign_in(
            db_session,
            settings,
            chosen,
            state,
            code=code,
            error=error,
            error_description=error_description,
            redirect_uri=_callback_url(request, settings, provider),
            client=client_of(request),
        )
        pair = signed_in.tokens
        response = Response(
            OAuthSignIn(
                access_token=pair.access_token,
                refresh_token=pair.refresh_token,
                token_type=pair.token_type,
                expires_in=pair.expires_in,
                org_id=pair.org_id,
                user_id=pair.user_id,
                session_id=pair.session_id,
                new_user=signed_in.new_user,
                redirect_to=state.redirect_to,
            )
        )
        # The binding is spent: a replayed callback URL finds no cookie.
        response.set_cookie(_binding_cookie(request, settings, provider, "", max_age=0))
        return response


def _provider(providers: OAuthProviders, name: str) -> Provider:
    found = providers.get(name)
    if found is None:
        raise NotFound("unknown_provider", f"No sign-in provider is called {name!r}.")
    return found


def _callback_url(request: Request[Any, Any, Any], settings: Settings, provider: str) -> str:
    """The redirect URI to register at the provider: ``{public_url}/api/v1/auth/oauth/{provider}
    /callback``."""
    return settings.public_url.rstrip("/") + request.app.route_reverse(_CALLBACK, provider=provider)


def _binding_cookie(
    request: Request[Any, Any, Any], settings: Settings, provider: str, value: str, *, max_age: int
) -> Cookie:
    return Cookie(
        key=BINDING_COOKIE,
        value=value,
        max_age=max_age,
        path=request.app.route_reverse(_CALLBACK, provider=provider),
        httponly=True,
        secure=settings.public_url.startswith("https://"),
        samesite="lax",  # sent on the provider's top-level redirect back, not on cross-site posts
    )


def _is_slug(value: str) -> bool:
    return re.fullmatch(SLUG_PATTERN, value) is not None
