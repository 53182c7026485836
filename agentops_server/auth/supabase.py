"""Supabase Auth as an external identity backend: the hub accepts Supabase access tokens.

When ``AGENTOPS_SUPABASE_URL`` is set, a bearer token that is not one of the hub's own is checked
as a Supabase access token (the JWT ``supabase.auth.getSession()`` hands the browser):

- signature: HS256 with ``AGENTOPS_SUPABASE_JWT_SECRET`` (projects on the legacy shared secret),
  or ES256/RS256 with a key published at ``{url}/auth/v1/.well-known/jwks.json`` (projects on
  asymmetric signing keys), fetched once and cached (:mod:`agentops_server.auth.jwks`);
- claims: ``iss`` is ``{url}/auth/v1``, ``aud`` is ``AGENTOPS_SUPABASE_AUDIENCE``
  (``authenticated``), ``exp`` is in the future, ``role`` is ``authenticated``, and the user is
  not anonymous (``is_anonymous``).

The token's ``sub`` is the Supabase user id: identity ``("supabase", sub)`` maps it to a hub user,
made from the ``email`` claim on first sight (see
:mod:`agentops_server.services.identity.external`). An existing hub user with that email is linked
only when the token vouches for the address: Supabase puts no confirmation flag in its access
tokens and ``user_metadata`` is writable by the user, so the hub trusts a top-level
``email_verified`` claim (added by a custom access token hook from
``auth.users.email_confirmed_at``) or ``app_metadata.email_verified`` (set by the project's admin
API). The request acts in the org named by ``X-AgentOps-Org`` (id or slug), else the user's only
org.

"""

from __future__ import annotations

import json
import uuid
from typing import Any

from joserfc import jws, jwt
from joserfc.errors import ClaimError, ExpiredTokenError, JoseError
from joserfc.jwk import Key, OctKey
from joserfc.jwt import JWTClaimsRegistry
from litestar.connection import ASGIConnection
from sqlalchemy.ext.asyncio import AsyncEngine

from agentops_server.auth.jwks import JwksCache, JwksUnavailable, UnknownSigningKey
from agentops_server.db.engine import open_session
from agentops_server.refusals import Forbidden, Unauthenticated, Unavailable
from agentops_server.security.principal import Principal
from agentops_server.security.tokens import ISSUER
from agentops_server.services.identity.external import (
    ExternalIdentity,
    member_for_identity,
    user_for_identity,
)
from agentops_server.settings import Settings

__all__ = ["ORG_HEADER", "PROVIDER", "SupabaseAuth", "accepts", "authenticate"]

PROVIDER = "supabase"
"""The provider name of Supabase identities (``oauth_identities.provider``)."""

ORG_HEADER = "X-AgentOps-Org"
"""The header choosing the org a request acts in (an org id or slug)."""

_ASYMMETRIC = frozenset({"ES256", "RS256"})
_CLOCK_SKEW = 30  # seconds


class SupabaseAuth:
    """Verifies one Supabase project's access tokens (the app builds one from its settings).

    Example::

        backend = SupabaseAuth.from_settings(settings)
        claims = await backend.verify(token)  # a refusal when the token is not acceptable
    """

    def __init__(self, url: str, *, jwt_secret: str | None, audience: str) -> None:
        self.url = url.rstrip("/")
        self.issuer = f"{self.url}/auth/v1"
        self.audience = audience
        self._secret = OctKey.import_key(jwt_secret) if jwt_secret else None
        self.jwks = JwksCache(f"{self.issuer}/.well-known/jwks.json")

    @classmethod
    def from_settings(cls, settings: Settings) -> SupabaseAuth | None:
        """The backend of ``settings`` (None when Supabase Auth is not configured); ValueError
        for a URL that is not one."""
        if not settings.supabase_url:
            return None
        if not settings.supabase_url.startswith(("https://", "http://")):
            raise ValueError(
                "AGENTOPS_SUPABASE_URL must be the project's URL, such as "
                f"https://<project>.supabase.co; got {settings.supabase_url!r}"
            )
        return cls(
            settings.supabase_url,
            jwt_secret=settings.supabase_jwt_secret,
            audience=settings.supabase_audience,
        )

    async def verify(self, token: str) -> dict[str, Any]:
        """The claims of a valid Supabase access token of a signed-in, non-anonymous user;
        ``Unauthenticated`` (``Forbidden`` for anonymous users) otherwise."""
        try:
            header = jws.extract_compact(token.encode()).headers()
        except (JoseError, ValueError) as exc:
            raise _unauthorized("invalid_token", "The token is not a JWT.") from exc
        algorithm = str(header.get("alg"))
        key = await self._key(algorithm, header.get("kid"))
        try:
            claims: dict[str, Any] = dict(jwt.decode(token, key, algorithms=[algorithm]).claims)
        except (JoseError, ValueError) as exc:
            raise _unauthorized("invalid_token", "The token's signature is wrong.") from exc
        registry = JWTClaimsRegistry(
            leeway=_CLOCK_SKEW,
            iss={"essential": True, "value": self.issuer},
            aud={"essential": True, "value": self.audience},
            sub={"essential": True},
            exp={"essential": True},
        )
        try:
            registry.validate(claims)
        except ExpiredTokenError as exc:
            raise _unauthorized("token_expired", "The Supabase session has expired.") from exc
        except ClaimError as exc:
            if exc.claim == "iss":
                raise _unauthorized(
                    "wrong_issuer", f"The token was not issued by {self.issuer}."
                ) from exc
            if exc.claim == "aud":
                raise _unauthorized(
                    "wrong_audience", f"The token's audience is not {self.audience!r}."
                ) from exc
            raise _unauthorized("invalid_token", f"The token's claims are wrong: {exc}.") from exc
        if claims.get("role") != "authenticated":
            raise _unauthorized(
                "wrong_role", "Only a signed-in user's token is accepted (role 'authenticated')."
            )
        if claims.get("is_anonymous") is True:
            raise Forbidden(
                "anonymous_not_allowed",
                "Anonymous Supabase users cannot use the hub: sign in with an account.",
            )
        return claims

    async def _key(self, algorithm: str, kid: Any) -> Key:
        if algorithm == "HS256" and self._secret is not None:
            return self._secret
        if algorithm not in _ASYMMETRIC:
            raise _unauthorized(
                "invalid_token", f"Tokens signed with {algorithm!r} are not accepted."
            )
        try:
            return await self.jwks.key(kid if isinstance(kid, str) else None)
        except UnknownSigningKey as exc:
            raise _unauthorized("unknown_signing_key", str(exc)) from exc
        except JwksUnavailable as exc:
            raise Unavailable(
                "identity_provider_unavailable",
                "Supabase's signing keys cannot be fetched right now; try again shortly.",
            ) from exc


def accepts(settings: Settings, token: str) -> bool:
    """Whether ``token`` should be checked as a Supabase token: Supabase is configured and the
    token does not claim to be the hub's own (whose errors then stay the hub's)."""
    if not settings.supabase_url:
        return False
    try:
        claims = json.loads(jws.extract_compact(token.encode()).payload)
    except (JoseError, ValueError):
        return True  # not even a JWT: the Supabase check says so
    return not isinstance(claims, dict) or claims.get("iss") != ISSUER


async def authenticate(
    backend: SupabaseAuth,
    engine: AsyncEngine,
    connection: ASGIConnection[Any, Any, Any, Any],
    token: str,
) -> Principal:
    """The member a request with a Supabase access token acts as."""
    identity = _identity(await backend.verify(token))
    async with open_session(engine) as session:
        member = await member_for_identity(
            session, identity, org=connection.headers.get(ORG_HEADER) or None
        )
    return Principal.member(member.org_id, member.user_id, member.role, team_ids=member.team_ids)


async def person_of(backend: SupabaseAuth, engine: AsyncEngine, token: str) -> uuid.UUID:
    """The user a Supabase access token proves, whether or not they belong to an org yet."""
    identity = _identity(await backend.verify(token))
    async with open_session(engine) as session:
        return await user_for_identity(session, identity)


def _identity(claims: dict[str, Any]) -> ExternalIdentity:
    app_metadata = claims.get("app_metadata")
    user_metadata = claims.get("user_metadata")
    app = app_metadata if isinstance(app_metadata, dict) else {}
    user = user_metadata if isinstance(user_metadata, dict) else {}
    email = claims.get("email")
    return ExternalIdentity(
        provider=PROVIDER,
        subject=str(claims["sub"]),
        email=email if isinstance(email, str) and email else None,
        email_verified=claims.get("email_verified") is True or app.get("email_verified") is True,
        name=str(user.get("full_name") or user.get("name") or ""),
    )


def _unauthorized(code: str, detail: str) -> Unauthenticated:
    return Unauthenticated(code, detail, headers={"WWW-Authenticate": "Bearer"})
