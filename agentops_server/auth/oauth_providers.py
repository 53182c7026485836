"""The OAuth 2.0 / OpenID Connect providers the hub signs people in with: their configuration and
how each exchanges a code for an identity (:mod:`agentops_server.auth.oauth` runs the flow).

- OIDC (Google, any OpenID Connect provider): the ID token is verified against the provider's
  keys (``iss``, ``aud``/``azp``, ``exp``, ``nonce``), plus UserInfo when the token lacks the
  email; discovery document and keys are fetched on first use and cached.
- GitHub (and GitHub Enterprise): from its API (``/user`` and the primary verified address of
  ``/user/emails``).
"""

from __future__ import annotations

import abc
import time
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import httpx
import httpx2
from authlib.integrations.httpx_client import (  # type: ignore[import-untyped]
    AsyncOAuth2Client,
    OAuthError,
)
from joserfc import jws, jwt
from joserfc.errors import ClaimError, ExpiredTokenError, JoseError
from joserfc.jwt import JWTClaimsRegistry
from pydantic import BaseModel, ConfigDict, Field, field_validator

from agentops_server.auth.jwks import JwksCache, JwksUnavailable, UnknownSigningKey
from agentops_server.refusals import Unauthenticated, UpstreamFailed
from agentops_server.services.identity.external import ExternalIdentity

__all__ = [
    "GitHubConfig",
    "GitHubProvider",
    "HTTP_TIMEOUT",
    "InvalidIdToken",
    "OidcConfig",
    "OidcProvider",
    "Provider",
    "ProviderError",
]


HTTP_TIMEOUT = 10.0


_SIGNING_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)


_CLOCK_SKEW = 60  # seconds of leeway on exp/iat, for clocks that disagree a little


_HTTP_ERRORS = (httpx2.HTTPError, httpx.HTTPError)  # authlib's client runs on either


class ProviderError(UpstreamFailed):
    """The provider failed: unreachable, an error answer, or an answer that makes no sense
    (``oauth_provider_error``, with the provider's own ``error`` code when it gave one)."""

    def __init__(self, detail: str, *, error: str | None = None) -> None:
        super().__init__("oauth_provider_error", detail, provider_error=error)
        self.error = error


class InvalidIdToken(Unauthenticated):
    """The provider's ID token does not prove who signed in (signature, issuer, audience,
    expiry or nonce): ``invalid_id_token``."""

    def __init__(self, detail: str) -> None:
        super().__init__("invalid_id_token", detail)


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
