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

The flow (authorization code with PKCE, S256), run by ``api/v1/oauth.py``:

1. :func:`begin_sign_in` makes a browser *binding* (a random secret the controller puts in an
   HttpOnly cookie), a nonce, and a ``state``: a short-lived JWT (``oauth_state``) carrying the
   provider, the nonce, the SHA-256 of the binding and where to go afterwards. The PKCE
   verifier is derived from the binding, so it never appears in a URL.
2. The provider sends the browser back with ``code`` and ``state``. :func:`read_state` checks
   the state's signature and age and that the browser holds the binding it was issued for (no
   login CSRF: an attacker's state is bound to the attacker's browser).
3. :meth:`Provider.identity` exchanges the code (with the verifier) and says who signed in:
   for OIDC from the ID token, verified against the provider's keys (``iss``, ``aud``/``azp``,
   ``exp``, ``nonce``), plus UserInfo when the token lacks the email; for GitHub from its API
   (``/user`` and the primary verified address of ``/user/emails``).
"""

from __future__ import annotations

import abc
import base64
import dataclasses
import hashlib
import hmac
import json
import re
import secrets
import time
from collections.abc import Iterator, Mapping
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import httpx
import httpx2
from authlib.integrations.httpx_client import (  # type: ignore[import-untyped]
    AsyncOAuth2Client,
    OAuthError,
)
from joserfc import jws, jwt
from joserfc.errors import ClaimError, ExpiredTokenError, JoseError
from joserfc.jwt import JWTClaimsRegistry
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from agentops_server.auth.jwks import JwksCache, JwksUnavailable, UnknownSigningKey
from agentops_server.security.tokens import InvalidToken, decode_token, encode_token
from agentops_server.services.identity.external import ExternalIdentity
from agentops_server.settings import Settings

__all__ = [
    "BINDING_COOKIE",
    "STATE_TTL",
    "GitHubProvider",
    "InvalidIdToken",
    "InvalidOAuthState",
    "OAuthConfigError",
    "OAuthProviders",
    "OidcProvider",
    "Provider",
    "ProviderError",
    "SignInState",
    "SignInStart",
    "begin_sign_in",
    "read_state",
    "safe_redirect_path",
]

STATE_TTL = 600
"""Seconds a sign-in may take at the provider before its state expires."""

BINDING_COOKIE = "agentops_oauth"
"""The cookie holding the browser binding of a sign-in in progress."""

GOOGLE_METADATA_URL = "https://accounts.google.com/.well-known/openid-configuration"
HTTP_TIMEOUT = 10.0

_NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,31}$"
_RESERVED_NAMES = frozenset({"supabase"})  # identities of the Supabase backend use this name
_SIGNING_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
_CLOCK_SKEW = 60  # seconds of leeway on exp/iat, for clocks that disagree a little
_HTTP_ERRORS = (httpx2.HTTPError, httpx.HTTPError)  # authlib's client runs on either
_PRESETS: dict[str, dict[str, Any]] = {
    "github": {"type": "github", "label": "GitHub"},
    "google": {"type": "oidc", "label": "Google", "server_metadata_url": GOOGLE_METADATA_URL},
}


class OAuthConfigError(ValueError):
    """``AGENTOPS_OAUTH_PROVIDERS`` is not valid; ``str()`` names the provider and field."""


class InvalidOAuthState(Exception):
    """The callback's state is missing, forged, expired, for another provider or another
    browser."""


class ProviderError(Exception):
    """The provider failed: unreachable, an error answer, or an answer that makes no sense."""

    def __init__(self, detail: str, *, error: str | None = None) -> None:
        super().__init__(detail)
        self.error = error


class InvalidIdToken(Exception):
    """The provider's ID token does not prove who signed in (signature, issuer, audience,
    expiry or nonce)."""


# --- configuration ----------------------------------------------------------------------------


class _ProviderConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    client_id: Annotated[str, Field(min_length=1)]
    client_secret: Annotated[str, Field(min_length=1)]
    label: str | None = None
    scopes: tuple[Annotated[str, Field(min_length=1)], ...] | None = None


class OidcConfig(_ProviderConfig):
    """An OpenID Connect provider, found through its discovery document."""

    type: Literal["oidc"]
    server_metadata_url: Annotated[str, Field(pattern=r"^https?://")]

    @field_validator("scopes")
    @classmethod
    def _asks_for_an_id_token(cls, scopes: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if scopes is not None and "openid" not in scopes:
            raise ValueError("must include 'openid' (without it there is no ID token)")
        return scopes


class GitHubConfig(_ProviderConfig):
    """GitHub (or GitHub Enterprise): OAuth 2.0, the user comes from its REST API."""

    type: Literal["github"]
    authorize_url: Annotated[str, Field(pattern=r"^https?://")] = (
        "https://github.com/login/oauth/authorize"
    )
    token_url: Annotated[str, Field(pattern=r"^https?://")] = (
        "https://github.com/login/oauth/access_token"
    )
    api_base_url: Annotated[str, Field(pattern=r"^https?://")] = "https://api.github.com"


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


def safe_redirect_path(value: str) -> str:
    """``value`` if it is a path on this hub (``/runs?x=1``); ValueError otherwise (no other
    origin, no ``//host`` or ``/\\host`` tricks, no control characters)."""
    parts = urlsplit(value)
    if (
        not value.startswith("/")
        or value.startswith(("//", "/\\"))
        or parts.scheme
        or parts.netloc
        or any(ord(char) < 0x20 or char == "\\" for char in value)
        or len(value) > 2048
    ):
        raise ValueError("redirect_to must be a path on this hub, such as /runs.")
    return value


def _code_verifier(binding: str) -> str:
    # The PKCE verifier, derived from the browser binding: it travels nowhere before the token
    # request (43 URL-safe characters, as RFC 7636 wants).
    derived = hmac.new(binding.encode(), b"agentops-hub:pkce", "sha256").digest()
    return base64.urlsafe_b64encode(derived).rstrip(b"=").decode()


def _digest(binding: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(binding.encode()).digest()).decode()


# --- providers --------------------------------------------------------------------------------


class Provider(abc.ABC):
    """One configured provider: builds its authorization URL and turns a code into an
    :class:`~agentops_server.services.identity.external.ExternalIdentity`."""

    kind: str

    def __init__(self, name: str, config: OidcConfig | GitHubConfig) -> None:
        self.name = name
        self.config = config

    @property
    def label(self) -> str:
        """The name people see (``Sign in with …``)."""
        return self.config.label or self.name

    @abc.abstractmethod
    async def authorization_url(
        self, *, redirect_uri: str, state: str, nonce: str, code_verifier: str
    ) -> str:
        """Where to send the browser to sign in."""

    @abc.abstractmethod
    async def identity(
        self, *, code: str, redirect_uri: str, code_verifier: str, nonce: str
    ) -> ExternalIdentity:
        """Exchange ``code`` and say who signed in. Raises :class:`ProviderError` or
        :class:`InvalidIdToken`."""

    def _client(self, redirect_uri: str, auth_method: str) -> AsyncOAuth2Client:
        return AsyncOAuth2Client(
            client_id=self.config.client_id,
            client_secret=self.config.client_secret,
            token_endpoint_auth_method=auth_method,
            scope=" ".join(self._scopes()),
            redirect_uri=redirect_uri,
            code_challenge_method="S256",
            timeout=HTTP_TIMEOUT,
        )

    @abc.abstractmethod
    def _scopes(self) -> tuple[str, ...]: ...

    async def _exchange(
        self, client: AsyncOAuth2Client, token_url: str, code: str, code_verifier: str
    ) -> dict[str, Any]:
        try:
            token = await client.fetch_token(
                token_url,
                code=code,
                code_verifier=code_verifier,
                headers={
                    "Accept": "application/json",
                    "Content-Type": "application/x-www-form-urlencoded;charset=UTF-8",
                },
            )
        except OAuthError as exc:
            raise ProviderError(
                f"{self.label} refused the sign-in code: {exc.error}"
                + (f" ({exc.description})" if exc.description else ""),
                error=exc.error,
            ) from exc
        except (*_HTTP_ERRORS, ValueError) as exc:
            raise ProviderError(f"{self.label}'s token endpoint failed: {exc}") from exc
        if not token.get("access_token"):
            raise ProviderError(f"{self.label} answered without an access token.")
        return dict(token)

    async def _get_json(self, client: AsyncOAuth2Client, url: str) -> Any:
        try:
            response = await client.get(url, headers={"Accept": "application/json"})
            response.raise_for_status()
            return response.json()
        except (*_HTTP_ERRORS, OAuthError, ValueError) as exc:
            raise ProviderError(f"{self.label} failed to answer {url}: {exc}") from exc


class OidcProvider(Provider):
    """An OpenID Connect provider (Google, Keycloak, Okta, Entra ID, Auth0, …)."""

    kind = "oidc"
    config: OidcConfig

    def __init__(self, name: str, config: OidcConfig) -> None:
        super().__init__(name, config)
        self._metadata: dict[str, Any] | None = None
        self._jwks: JwksCache | None = None

    async def authorization_url(
        self, *, redirect_uri: str, state: str, nonce: str, code_verifier: str
    ) -> str:
        """The provider's authorization endpoint with our client, PKCE challenge and nonce."""
        metadata = await self.metadata()
        async with self._client(redirect_uri, self._auth_method(metadata)) as client:
            url, _ = client.create_authorization_url(
                metadata["authorization_endpoint"],
                state=state,
                code_verifier=code_verifier,
                nonce=nonce,
            )
        return str(url)

    async def identity(
        self, *, code: str, redirect_uri: str, code_verifier: str, nonce: str
    ) -> ExternalIdentity:
        """The person in the verified ID token (UserInfo fills in a missing email)."""
        metadata = await self.metadata()
        async with self._client(redirect_uri, self._auth_method(metadata)) as client:
            token = await self._exchange(client, metadata["token_endpoint"], code, code_verifier)
            id_token = token.get("id_token")
            if not isinstance(id_token, str):
                raise InvalidIdToken(f"{self.label} answered without an ID token.")
            claims = await self.verify_id_token(id_token, nonce=nonce)
            if "email" not in claims and metadata.get("userinfo_endpoint"):
                userinfo = await self._get_json(client, metadata["userinfo_endpoint"])
                if not isinstance(userinfo, dict) or userinfo.get("sub") != claims["sub"]:
                    raise ProviderError(f"{self.label}'s UserInfo is about someone else.")
                claims = {**userinfo, **claims}
        return ExternalIdentity(
            provider=self.name,
            subject=str(claims["sub"]),
            email=claims.get("email") if isinstance(claims.get("email"), str) else None,
            email_verified=claims.get("email_verified") in (True, "true"),
            name=str(claims.get("name") or ""),
        )

    async def metadata(self) -> dict[str, Any]:
        """The provider's discovery document, fetched once."""
        if self._metadata is None:
            try:
                async with httpx.AsyncClient(timeout=HTTP_TIMEOUT) as client:
                    response = await client.get(self.config.server_metadata_url)
                    response.raise_for_status()
                    document = response.json()
            except (httpx.HTTPError, ValueError) as exc:
                raise ProviderError(
                    f"{self.label}'s discovery document at {self.config.server_metadata_url} "
                    f"could not be read: {exc}"
                ) from exc
            required = ("issuer", "authorization_endpoint", "token_endpoint", "jwks_uri")
            if not isinstance(document, dict):
                document = {}
            missing = [key for key in required if not isinstance(document.get(key), str)]
            if missing:
                raise ProviderError(
                    f"{self.label}'s discovery document lacks {', '.join(missing)}."
                )
            self._jwks = JwksCache(document["jwks_uri"])
            self._metadata = document
        return self._metadata

    async def verify_id_token(self, id_token: str, *, nonce: str) -> dict[str, Any]:
        """The claims of ``id_token`` once its signature, issuer, audience, expiry and nonce
        check out (OpenID Connect Core, 3.1.3.7); :class:`InvalidIdToken` otherwise."""
        metadata = await self.metadata()
        assert self._jwks is not None
        try:
            header = jws.extract_compact(id_token.encode()).headers()
        except (JoseError, ValueError) as exc:
            raise InvalidIdToken("The ID token is malformed.") from exc
        algorithm = header.get("alg")
        allowed = _SIGNING_ALGORITHMS & set(
            metadata.get("id_token_signing_alg_values_supported") or ["RS256"]
        )
        if algorithm not in allowed:
            raise InvalidIdToken(f"The ID token's algorithm {algorithm!r} is not accepted.")
        try:
            key = await self._jwks.key(header.get("kid"))
        except UnknownSigningKey as exc:
            raise InvalidIdToken(str(exc)) from exc
        except JwksUnavailable as exc:
            raise ProviderError(str(exc)) from exc
        try:
            claims = jwt.decode(id_token, key, algorithms=[algorithm]).claims
        except (JoseError, ValueError) as exc:
            raise InvalidIdToken("The ID token's signature is wrong.") from exc
        registry = JWTClaimsRegistry(
            leeway=_CLOCK_SKEW,
            iss={"essential": True, "value": metadata["issuer"]},
            aud={"essential": True, "value": self.config.client_id},
            sub={"essential": True},
            exp={"essential": True},
            iat={"essential": True},
            nonce={"essential": True, "value": nonce},
        )
        try:
            registry.validate(claims)
        except ExpiredTokenError as exc:
            raise InvalidIdToken("The ID token has expired.") from exc
        except ClaimError as exc:
            raise InvalidIdToken(f"The ID token's {exc.claim!r} claim is wrong.") from exc
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        if len(audiences) > 1 and claims.get("azp") != self.config.client_id:
            raise InvalidIdToken("The ID token's 'azp' claim is wrong.")
        if claims["iat"] > time.time() + _CLOCK_SKEW:
            raise InvalidIdToken("The ID token was issued in the future.")
        return dict(claims)

    def _scopes(self) -> tuple[str, ...]:
        return self.config.scopes or ("openid", "email", "profile")

    @staticmethod
    def _auth_method(metadata: Mapping[str, Any]) -> str:
        supported = metadata.get("token_endpoint_auth_methods_supported") or [
            "client_secret_basic"  # the default, when the provider does not say (OIDC Discovery)
        ]
        return "client_secret_basic" if "client_secret_basic" in supported else "client_secret_post"


class GitHubProvider(Provider):
    """GitHub: OAuth 2.0 without ID tokens; the person comes from ``GET /user`` and their
    primary, verified email from ``GET /user/emails``."""

    kind = "github"
    config: GitHubConfig

    async def authorization_url(
        self, *, redirect_uri: str, state: str, nonce: str, code_verifier: str
    ) -> str:
        """GitHub's authorize page with our client and PKCE challenge."""
        async with self._client(redirect_uri, "client_secret_post") as client:
            url, _ = client.create_authorization_url(
                self.config.authorize_url, state=state, code_verifier=code_verifier
            )
        return str(url)

    async def identity(
        self, *, code: str, redirect_uri: str, code_verifier: str, nonce: str
    ) -> ExternalIdentity:
        """The GitHub account and its primary email (verified or not: the caller decides)."""
        api = self.config.api_base_url.rstrip("/")
        async with self._client(redirect_uri, "client_secret_post") as client:
            await self._exchange(client, self.config.token_url, code, code_verifier)
            user = await self._get_json(client, f"{api}/user")
            emails = await self._get_json(client, f"{api}/user/emails")
        if not isinstance(user, dict) or not isinstance(user.get("id"), int):
            raise ProviderError(f"{self.label}'s /user answer has no account id.")
        primary = next(
            (
                entry
                for entry in (emails if isinstance(emails, list) else [])
                if isinstance(entry, dict) and entry.get("primary")
            ),
            None,
        )
        return ExternalIdentity(
            provider=self.name,
            subject=str(user["id"]),
            email=str(primary["email"]) if primary and primary.get("email") else None,
            email_verified=bool(primary and primary.get("verified") is True),
            name=str(user.get("name") or user.get("login") or ""),
        )

    def _scopes(self) -> tuple[str, ...]:
        return self.config.scopes or ("read:user", "user:email")
