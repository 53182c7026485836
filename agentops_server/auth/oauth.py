"""Sign-in through external OAuth 2.0 / OpenID Connect providers (GitHub, Google, any OIDC).

Providers come from ``AGENTOPS_OAUTH_PROVIDERS``, a JSON object naming each provider::

    {"github": {"client_id": "...", "client_secret": "..."},
     "google": {"client_id": "...", "client_secret": "..."},
     "corp": {"type": "oidc", "client_id": "...", "client_secret": "...",
              "server_metadata_url": "https://idp.example/.well-known/openid-configuration"}}

``github`` and ``google`` are presets (their URLs are filled in and can be overridden); any other
name needs a ``type``: ``oidc`` (discovery through ``server_metadata_url``) or ``github`` (e.g.
GitHub Enterprise, with its URLs). :meth:`OAuthProviders.from_settings` validates all of it when
the app is built, naming the bad field; nothing is fetched then: a provider's discovery document
and signing keys are fetched on first use and cached (:mod:`agentops_server.auth.jwks`).

The flow (authorization code with PKCE, S256), run by ``api/v1/identity/oauth.py``:

1. :func:`begin_sign_in` makes a browser *binding* (a random secret the controller puts in an
   HttpOnly cookie), a nonce, and a ``state``: a short-lived JWT (``oauth_state``) carrying the
   provider, the nonce, the SHA-256 of the binding and where to go afterwards. The PKCE
   verifier is derived from the binding, so it never appears in a URL.
2. The provider sends the browser back with ``code`` and ``state``. :func:`read_state` checks
   the state's signature and age and that the browser holds the binding it was issued for (no
   login CSRF: an attacker's state is bound to the attacker's browser).
3. :meth:`~agentops_server.auth.oauth_providers.Provider.identity` exchanges the code (with the
   verifier) and says who signed in: for OIDC from the ID token, verified against the provider's
   keys (``iss``, ``aud``/``azp``, ``exp``, ``nonce``), plus UserInfo when the token lacks the
   email; for GitHub from its API (``/user`` and the primary verified address of ``/user/emails``).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Iterator, Mapping
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import Field, TypeAdapter, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from agentops_server.auth.oauth_providers import (
    GitHubConfig,
    GitHubProvider,
    OidcConfig,
    OidcProvider,
    Provider,
)
from agentops_server.refusals import Forbidden, Invalid
from agentops_server.security.tokens import InvalidToken, decode_token, encode_token
from agentops_server.services.identity.accounts import Client
from agentops_server.services.identity.external import sign_in_external
from agentops_server.services.identity.sessions import TokenPair, start_session
from agentops_server.settings import Settings

__all__ = [
    "BINDING_COOKIE",
    "STATE_TTL",
    "InvalidOAuthState",
    "OAuthConfigError",
    "OAuthProviders",
    "SignInState",
    "SignInStart",
    "ExternalSignIn",
    "begin_sign_in",
    "finish_sign_in",
    "read_state",
    "safe_redirect_path",
]

STATE_TTL = 600
"""Seconds a sign-in may take at the provider before its state expires."""

BINDING_COOKIE = "agentops_oauth"
"""The cookie holding the browser binding of a sign-in in progress."""

GOOGLE_METADATA_URL = "https://accounts.google.com/.well-known/openid-configuration"

_NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,31}$"
_RESERVED_NAMES = frozenset({"supabase"})  # identities of the Supabase backend use this name
_PRESETS: dict[str, dict[str, Any]] = {
    "github": {"type": "github", "label": "GitHub"},
    "google": {"type": "oidc", "label": "Google", "server_metadata_url": GOOGLE_METADATA_URL},
}


class OAuthConfigError(ValueError):
    """``AGENTOPS_OAUTH_PROVIDERS`` is not valid; ``str()`` names the provider and field."""


class InvalidOAuthState(Invalid):
    """The callback's state is missing, forged, expired, for another provider or another
    browser (``invalid_oauth_state``)."""

    def __init__(self, detail: str) -> None:
        super().__init__("invalid_oauth_state", detail)


# --- configuration ----------------------------------------------------------------------------


_CONFIG: TypeAdapter[OidcConfig | GitHubConfig] = TypeAdapter(
    Annotated[OidcConfig | GitHubConfig, Field(discriminator="type")]
)


class OAuthProviders:
    """The configured providers, by name (injected as ``oauth_providers``)."""

    def __init__(self, providers: Mapping[str, Provider]) -> None:
        self._providers = dict(providers)

    @classmethod
    def from_settings(cls, settings: Settings) -> OAuthProviders:
        """Parse ``settings.oauth_providers``; :class:`OAuthConfigError` names what is wrong."""
        if not settings.oauth_providers:
            return cls({})
        try:
            raw = json.loads(settings.oauth_providers)
        except json.JSONDecodeError as exc:
            raise OAuthConfigError(f"AGENTOPS_OAUTH_PROVIDERS is not valid JSON: {exc}") from exc
        if not isinstance(raw, dict):
            raise OAuthConfigError(
                "AGENTOPS_OAUTH_PROVIDERS must be a JSON object mapping provider names to "
                "their settings."
            )
        return cls({name: _provider(name, entry) for name, entry in raw.items()})

    def get(self, name: str) -> Provider | None:
        """The provider called ``name``, if configured."""
        return self._providers.get(name)

    def __iter__(self) -> Iterator[Provider]:
        return iter(self._providers.values())


def _provider(name: str, entry: Any) -> Provider:
    where = f"AGENTOPS_OAUTH_PROVIDERS[{name!r}]"
    if not isinstance(name, str) or not re.fullmatch(_NAME_PATTERN, name):
        raise OAuthConfigError(
            f"{where}: a provider name is 1 to 32 lower-case letters, digits, '-' or '_'."
        )
    if name in _RESERVED_NAMES:
        raise OAuthConfigError(f"{where}: the name {name!r} is reserved.")
    if not isinstance(entry, dict):
        raise OAuthConfigError(f"{where} must be a JSON object.")
    if "type" not in entry and name not in _PRESETS:
        raise OAuthConfigError(
            f"{where}.type is required: 'oidc' or 'github' (only github and google are presets)."
        )
    preset = _PRESETS.get(name, {})
    if entry.get("type", preset.get("type")) != preset.get("type"):
        preset = {}  # e.g. a provider named "github" that is really an OIDC provider
    try:
        config = _CONFIG.validate_python({**preset, **entry})
    except ValidationError as exc:
        problems = "; ".join(
            f"{where}.{'.'.join(str(part) for part in error['loc'][1:]) or 'type'}: {error['msg']}"
            for error in exc.errors()
        )
        raise OAuthConfigError(problems) from exc
    if isinstance(config, GitHubConfig):
        return GitHubProvider(name, config)
    return OidcProvider(name, config)


# --- the flow ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class SignInStart:
    """Where to send the browser, and the binding to set in its :data:`BINDING_COOKIE`."""

    url: str
    binding: str


@dataclasses.dataclass(frozen=True, slots=True)
class SignInState:
    """What the state of a sign-in carried from the start to the callback."""

    provider: str
    nonce: str
    code_verifier: str
    org: str | None
    redirect_to: str | None


async def begin_sign_in(
    provider: Provider,
    settings: Settings,
    *,
    redirect_uri: str,
    org: str | None,
    redirect_to: str | None,
) -> SignInStart:
    """Start signing in with ``provider``; the provider sends the browser to ``redirect_uri``."""
    binding = secrets.token_urlsafe(32)
    nonce = secrets.token_urlsafe(16)
    claims = {
        "prv": provider.name,
        "nonce": nonce,
        "bnd": _digest(binding),
        "org": org,
        "rto": redirect_to,
    }
    state = encode_token(settings.secret_key, "oauth_state", claims, ttl=STATE_TTL)
    url = await provider.authorization_url(
        redirect_uri=redirect_uri,
        state=state,
        nonce=nonce,
        code_verifier=_code_verifier(binding),
    )
    return SignInStart(url, binding)


def read_state(
    settings: Settings, provider: str, state: str | None, binding: str | None
) -> SignInState:
    """The state of a callback for ``provider``, checked against the browser's ``binding``.

    Raises :class:`InvalidOAuthState`.
    """
    if not state:
        raise InvalidOAuthState("The callback carries no state.")
    try:
        claims = decode_token(settings.secret_key, "oauth_state", state)
    except InvalidToken as exc:
        if exc.code == "token_expired":
            raise InvalidOAuthState("The sign-in took too long; start again.") from exc
        raise InvalidOAuthState("The state is not one this hub issued.") from exc
    if claims.get("prv") != provider:
        raise InvalidOAuthState("The state was issued for another provider.")
    if not binding or not hmac.compare_digest(str(claims.get("bnd")), _digest(binding)):
        raise InvalidOAuthState(
            "This sign-in was started in another browser (or its cookie is gone); start again."
        )
    return SignInState(
        provider,
        str(claims["nonce"]),
        _code_verifier(binding),
        claims.get("org"),
        claims.get("rto"),
    )


@dataclasses.dataclass(frozen=True, slots=True)
class ExternalSignIn:
    """A finished external sign-in: the hub session it opened, and whether it made the user."""

    tokens: TokenPair
    new_user: bool


async def finish_sign_in(
    session: AsyncSession,
    settings: Settings,
    provider: Provider,
    state: SignInState,
    *,
    code: str | None,
    error: str | None,
    error_description: str | None,
    redirect_uri: str,
    client: Client,
) -> ExternalSignIn:
    """The callback's work once its state is read: exchange ``code``, find or make the user, and
    open a hub session (method ``oauth:<provider>``). What the API's callback and the pages'
    callback both do; ``redirect_uri`` is the one the sign-in began with.

    Refusals: ``oauth_denied`` (the provider says no), ``validation_error`` (no code), and those
    of the provider's exchange and of :func:`sign_in_external`.
    """
    if error is not None:
        raise Forbidden(
            "oauth_denied",
            f"{provider.label} did not sign you in: {error_description or error}.",
            provider_error=error,
        )
    if not code:
        raise Invalid("validation_error", "The callback carries no code.")
    identity = await provider.identity(
        code=code,
        redirect_uri=redirect_uri,
        code_verifier=state.code_verifier,
        nonce=state.nonce,
    )
    signed_in = await sign_in_external(
        session,
        identity,
        org_slug=state.org,
        client=client,
        signup_open=settings.signup_open,
    )
    tokens = await start_session(
        session,
        settings,
        user_id=signed_in.user_id,
        org_id=signed_in.org_id,
        method=f"oauth:{provider.name}",
        ip=client.ip,
        user_agent=client.user_agent,
    )
    return ExternalSignIn(tokens, signed_in.new_user)


def safe_redirect_path(value: str) -> str:
    """``value`` if it is a path on this hub (``/runs?x=1``); ``invalid_redirect`` otherwise (no
    other origin, no ``//host`` or ``/\\host`` tricks, no control characters)."""
    parts = urlsplit(value)
    if (
        not value.startswith("/")
        or value.startswith(("//", "/\\"))
        or parts.scheme
        or parts.netloc
        or any(ord(char) < 0x20 or char == "\\" for char in value)
        or len(value) > 2048
    ):
        raise Invalid("invalid_redirect", "redirect_to must be a path on this hub, such as /runs.")
    return value


def _code_verifier(binding: str) -> str:
    # The PKCE verifier, derived from the browser binding: it travels nowhere before the token
    # request (43 URL-safe characters, as RFC 7636 wants).
    derived = hmac.new(binding.encode(), b"agentops-hub:pkce", "sha256").digest()
    return base64.urlsafe_b64encode(derived).rstrip(b"=").decode()


def _digest(binding: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(binding.encode()).digest()).decode()


# --- providers --------------------------------------------------------------------------------
