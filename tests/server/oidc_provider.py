"""A real, small identity provider for the tests: OpenID Connect, GitHub-style OAuth and a
Supabase-style JWKS, served over HTTP on 127.0.0.1 (uvicorn in a thread).

It does what the hub needs from a provider and checks what a real one checks:

- ``/.well-known/openid-configuration`` (discovery) and ``/jwks`` (an RSA key made at start);
- ``/authorize``: signs in :attr:`LocalIdentityProvider.user` without asking (the test is the
  browser) and redirects to the client's ``redirect_uri`` with a one-time code, or with
  ``error=access_denied`` when :attr:`deny` is set;
- ``/token``: checks the client's secret (HTTP Basic or form), the code (one use, same client and
  redirect URI) and the PKCE verifier against the challenge, then answers with an access token and,
  when ``openid`` was asked for, an ID token signed RS256 carrying the nonce;
- ``/userinfo``; ``/user`` and ``/user/emails`` as GitHub's REST API answers them;
- ``/auth/v1/.well-known/jwks.json``: :attr:`supabase_keys`, as a Supabase project publishes its
  signing keys.

Every request is recorded in :attr:`requests` (method and path), so tests can count fetches.
Tests bend it through plain attributes: :attr:`id_token_claims` overrides claims of the next ID
tokens, :attr:`signing_key` signs them with another key, and so on.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlencode

from joserfc import jwt
from joserfc.jwk import ECKey, Key, KeySet, RSAKey
from litestar import Litestar, Request, Response, get, post
from litestar.response import Redirect

from tests.server.servers import serving

CLIENT_ID = "hub-client"
CLIENT_SECRET = "hub-client-secret"


class LocalIdentityProvider:
    """The provider's state; :func:`running_provider` serves it."""

    def __init__(self) -> None:
        self.base_url = ""
        self.key = RSAKey.generate_key(2048, parameters={"kid": "idp-key-1", "use": "sig"})
        self.signing_key: Key = self.key
        self.clients = {CLIENT_ID: CLIENT_SECRET}
        self.supabase_keys: list[Key] = []
        self.reset()

    def reset(self) -> None:
        """Forget sign-ins and test settings (the keys and the address stay)."""
        self.user: dict[str, Any] = {
            "sub": "idp-user-1",
            "email": "ada@example.com",
            "email_verified": True,
            "name": "Ada Lovelace",
        }
        self.github_user: dict[str, Any] = {"id": 4242, "login": "ada", "name": "Ada Lovelace"}
        self.github_emails: list[dict[str, Any]] = [
            {"email": "ada@example.com", "primary": True, "verified": True, "visibility": None}
        ]
        self.deny = False
        self.email_in_id_token = True
        self.id_token_claims: dict[str, Any] = {}
        self.signing_key = self.key
        self.requests: list[tuple[str, str]] = []
        self.token_requests: list[dict[str, str]] = []
        self.authorize_requests: list[dict[str, str]] = []
        self._codes: dict[str, dict[str, Any]] = {}
        self._access_tokens: dict[str, dict[str, Any]] = {}

    def fetches(self, path: str) -> int:
        """How many requests reached ``path``."""
        return sum(1 for _, seen in self.requests if seen == path)

    @property
    def issuer(self) -> str:
        """The ``iss`` of its ID tokens (its base URL)."""
        return self.base_url

    @property
    def metadata_url(self) -> str:
        """Its discovery document's URL."""
        return f"{self.base_url}/.well-known/openid-configuration"

    def metadata(self) -> dict[str, Any]:
        """The discovery document."""
        return {
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.base_url}/authorize",
            "token_endpoint": f"{self.base_url}/token",
            "userinfo_endpoint": f"{self.base_url}/userinfo",
            "jwks_uri": f"{self.base_url}/jwks",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "scopes_supported": ["openid", "email", "profile"],
        }

    def id_token(self, *, nonce: str | None, audience: str = CLIENT_ID) -> str:
        """An ID token for :attr:`user`, as the token endpoint issues it."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": self.user["sub"],
            "aud": audience,
            "iat": now,
            "exp": now + 300,
            "name": self.user.get("name"),
        }
        if nonce is not None:
            claims["nonce"] = nonce
        if self.email_in_id_token:
            claims["email"] = self.user.get("email")
            claims["email_verified"] = self.user.get("email_verified")
        claims.update(self.id_token_claims)
        claims = {name: value for name, value in claims.items() if value is not None}
        header = {"alg": "RS256", "kid": self.signing_key.kid}
        return jwt.encode(header, claims, self.signing_key)

    # --- endpoints ----------------------------------------------------------------------------

    def authorize(self, params: dict[str, str]) -> str:
        """Where ``/authorize`` sends the browser."""
        self.authorize_requests.append(params)
        redirect_uri = params["redirect_uri"]
        if params.get("client_id") not in self.clients:
            raise ValueError("unknown client")
        if self.deny:
            answer = {"error": "access_denied", "error_description": "The user said no"}
            return f"{redirect_uri}?{urlencode({**answer, 'state': params['state']})}"
        code = secrets.token_urlsafe(16)
        self._codes[code] = {
            "client_id": params["client_id"],
            "redirect_uri": redirect_uri,
            "challenge": params.get("code_challenge"),
            "method": params.get("code_challenge_method"),
            "nonce": params.get("nonce"),
            "scope": params.get("scope", "").split(),
        }
        return f"{redirect_uri}?{urlencode({'code': code, 'state': params['state']})}"

    def token(self, form: dict[str, str], authorization: str | None) -> tuple[int, dict[str, Any]]:
        """The token endpoint's status and JSON answer."""
        self.token_requests.append({**form, "authorization": authorization or ""})
        client_id, secret = form.get("client_id"), form.get("client_secret")
        if authorization and authorization.lower().startswith("basic "):
            decoded = base64.b64decode(authorization.split(" ", 1)[1]).decode()
            client_id, _, secret = decoded.partition(":")
        if client_id not in self.clients or self.clients[client_id] != secret:
            return 401, {"error": "invalid_client"}
        grant = self._codes.pop(form.get("code", ""), None)
        if grant is None or form.get("grant_type") != "authorization_code":
            return 400, {"error": "invalid_grant", "error_description": "unknown or used code"}
        if grant["client_id"] != client_id or grant["redirect_uri"] != form.get("redirect_uri"):
            return 400, {"error": "invalid_grant", "error_description": "wrong redirect_uri"}
        if grant["challenge"] is not None:
            verifier = form.get("code_verifier", "")
            digest = hashlib.sha256(verifier.encode()).digest()
            expected = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
            if grant["method"] != "S256" or expected != grant["challenge"]:
                return 400, {"error": "invalid_grant", "error_description": "PKCE check failed"}
        access_token = secrets.token_urlsafe(24)
        self._access_tokens[access_token] = dict(self.user)
        answer: dict[str, Any] = {
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": 3600,
            "scope": " ".join(grant["scope"]),
        }
        if "openid" in grant["scope"]:
            answer["id_token"] = self.id_token(nonce=grant["nonce"])
        return 200, answer

    def bearer_user(self, authorization: str | None) -> dict[str, Any] | None:
        """The user an API request's access token was issued for."""
        scheme, _, token = (authorization or "").partition(" ")
        return self._access_tokens.get(token) if scheme.lower() == "bearer" else None


def provider_app(provider: LocalIdentityProvider) -> Litestar:
    """The provider's HTTP endpoints."""

    def unauthorized() -> Response[dict[str, str]]:
        return Response({"message": "Requires authentication"}, status_code=401)

    @get("/.well-known/openid-configuration", sync_to_thread=False)
    def discovery() -> dict[str, Any]:
        return provider.metadata()

    @get("/jwks", sync_to_thread=False)
    def jwks() -> dict[str, Any]:
        return dict(KeySet([provider.key]).as_dict(private=False))

    @get("/auth/v1/.well-known/jwks.json", sync_to_thread=False)
    def supabase_jwks() -> dict[str, Any]:
        return {"keys": [key.as_dict(private=False) for key in provider.supabase_keys]}

    @get("/authorize", sync_to_thread=False)
    def authorize(request: Request[Any, Any, Any]) -> Redirect:
        return Redirect(provider.authorize(dict(request.query_params)), status_code=302)

    @post("/token")
    async def token(request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
        form = dict(await request.form())
        status, answer = provider.token(form, request.headers.get("authorization"))
        return Response(answer, status_code=status)

    @get("/userinfo", sync_to_thread=False)
    def userinfo(request: Request[Any, Any, Any]) -> Response[Any]:
        user = provider.bearer_user(request.headers.get("authorization"))
        return unauthorized() if user is None else Response(user)

    @get("/user", sync_to_thread=False)
    def github_user(request: Request[Any, Any, Any]) -> Response[Any]:
        if provider.bearer_user(request.headers.get("authorization")) is None:
            return unauthorized()
        return Response(provider.github_user)

    @get("/user/emails", sync_to_thread=False)
    def github_emails(request: Request[Any, Any, Any]) -> Response[Any]:
        if provider.bearer_user(request.headers.get("authorization")) is None:
            return unauthorized()
        return Response(provider.github_emails)

    def record(request: Request[Any, Any, Any]) -> None:
        provider.requests.append((request.method, request.url.path))

    return Litestar(
        route_handlers=[
            discovery,
            jwks,
            supabase_jwks,
            authorize,
            token,
            userinfo,
            github_user,
            github_emails,
        ],
        before_request=record,
        logging_config=None,
    )


@contextmanager
def running_provider() -> Iterator[LocalIdentityProvider]:
    """A :class:`LocalIdentityProvider` served on a free port of 127.0.0.1."""
    provider = LocalIdentityProvider()
    with serving(provider_app(provider)) as base_url:
        provider.base_url = base_url
        yield provider


def es256_key(kid: str) -> ECKey:
    """A fresh P-256 key, as a Supabase project's asymmetric signing key."""
    return ECKey.generate_key("P-256", parameters={"kid": kid, "use": "sig", "alg": "ES256"})
