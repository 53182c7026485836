"""Authenticate requests: ``Authorization: Bearer <API key or access token>``.

An API key (``ak_…``) authenticates as that key of its org, acting for its creator: capped by
the creator's current role, and suspended (401 ``suspended_api_key``) once the creator has left
the org (docs/decisions/0015). Anything else must be an access token the hub issued
(:mod:`agentops_server.security.tokens`) or, when Supabase Auth is configured, a Supabase access
token (:mod:`agentops_server.auth.supabase`). The org is known from the
credential before the first query, so every lookup already runs as that tenant; the tenant then
stays set for the rest of the request (:mod:`agentops_server.db.tenancy`). Routes whose ``opt``
has ``exclude_from_auth`` (see :data:`agentops_server.auth.guards.PUBLIC`) skip this and run as
nobody: they see no tenant rows until they enter a tenant themselves.

A credential that is not authentic counts against its client address
(:class:`~agentops_server.backends.rate_limit.FailedAuthentications`): past
``AGENTOPS_RATE_LIMIT_AUTH_FAILURES``, that address gets 429 before its credentials are checked.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from typing import Any

from litestar.connection import ASGIConnection
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult
from litestar.types import ASGIApp, Receive, Scope, Send
from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from agentops_server.auth import supabase
from agentops_server.auth.supabase import SupabaseAuth
from agentops_server.backends.rate_limit import (
    FailedAuthentications,
    RateLimiter,
    failed_authentications,
)
from agentops_server.db.engine import open_session
from agentops_server.db.models import ApiKey, Membership, TeamMember, UserSession
from agentops_server.db.tenancy import (
    NOBODY,
    Tenant,
    reset_tenant,
    set_tenant,
    tenant,
)
from agentops_server.refusals import Unauthenticated
from agentops_server.security.api_keys import matches, parse_key
from agentops_server.security.permissions import Role
from agentops_server.security.principal import Principal
from agentops_server.security.tokens import AccessClaims, InvalidToken, decode_access_token
from agentops_server.settings import Settings

__all__ = [
    "LAST_USED_RESOLUTION",
    "Authentication",
    "Authenticator",
    "bearer_token",
    "member_principal",
]

LAST_USED_RESOLUTION = dt.timedelta(seconds=60)
"""``api_keys.last_used_at`` is written at most once a minute per key, not once per request."""


@dataclasses.dataclass(frozen=True, slots=True)
class Authenticator:
    """Proves who a credential is, with the hub's database, settings, rate limiter and Supabase
    backend (built once by the app, injected as ``authenticator``)."""

    engine: AsyncEngine
    settings: Settings
    rate_limiter: RateLimiter
    supabase: SupabaseAuth | None = None

    async def authenticate(
        self, connection: ASGIConnection[Any, Any, Any, Any], credential: str
    ) -> Principal:
        """The caller ``credential`` (an API key or an access token) proves; 401 when it proves
        none."""
        if credential.startswith("ak_"):
            return await _api_key_principal(self.engine, credential)
        return await _user_principal(self, connection, credential)

    async def person_of(
        self, connection: ASGIConnection[Any, Any, Any, Any], credential: str
    ) -> uuid.UUID | None:
        """The person ``credential`` proves, in whichever org: a hub session's user, or a
        Supabase token's user even before they belong to an org. None for an API key (it is no
        person, but must be genuine); 401 when it proves nothing."""
        if not credential.startswith("ak_") and self.supabase_accepts(credential):
            return await supabase.person_of(self.supabase_backend(), self.engine, credential)
        return (await self.authenticate(connection, credential)).user_id

    def supabase_accepts(self, token: str) -> bool:
        """Whether ``token`` is to be checked as a Supabase access token."""
        return self.supabase is not None and supabase.accepts(self.settings, token)

    def supabase_backend(self) -> SupabaseAuth:
        """The Supabase backend, once :meth:`supabase_accepts` said a token is for it."""
        assert self.supabase is not None, "supabase_accepts() said so"
        return self.supabase

    def failed_authentications(
        self, connection: ASGIConnection[Any, Any, Any, Any]
    ) -> FailedAuthentications:
        """The failed authentications of the address ``connection`` comes from."""
        return failed_authentications(self.rate_limiter, self.settings, connection)


class Authentication(AbstractAuthenticationMiddleware):
    """Resolve the caller to a :class:`Principal` and make its org the request's tenant."""

    def __init__(
        self, app: ASGIApp, *, authenticator: Authenticator, exclude: str | list[str] | None = None
    ) -> None:
        super().__init__(app, exclude=exclude)
        self.authenticator = authenticator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        token = set_tenant(NOBODY)  # public routes act as nobody; never as a stale tenant
        try:
            await super().__call__(scope, receive, send)
        finally:
            reset_tenant(token)

    async def authenticate_request(
        self, connection: ASGIConnection[Any, Any, Any, Any]
    ) -> AuthenticationResult:
        credential = bearer_token(connection)
        async with self.authenticator.failed_authentications(connection).guard():
            principal = await self.authenticator.authenticate(connection, credential)
        set_tenant(Tenant(principal.org_id, principal.user_id))
        return AuthenticationResult(user=principal, auth=principal)


def bearer_token(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    """The credential in ``Authorization: Bearer …``; 401 ``unauthenticated`` without one."""
    scheme, _, credential = connection.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        raise Unauthenticated(
            "unauthenticated",
            "Send an API key or an access token: Authorization: Bearer <credential>.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return credential.strip()


async def _api_key_principal(engine: AsyncEngine, key: str) -> Principal:
    parts = parse_key(key)
    if parts is None:
        raise Unauthenticated("invalid_api_key", "The API key is malformed.")
    now = dt.datetime.now(dt.UTC)
    with tenant(org_id=parts.org_id):
        async with open_session(engine) as session, session.begin():
            found = (
                await session.execute(
                    select(ApiKey, Membership.role)
                    .outerjoin(
                        Membership,
                        (Membership.org_id == ApiKey.org_id)
                        & (Membership.user_id == ApiKey.created_by),
                    )
                    .where(ApiKey.org_id == parts.org_id, ApiKey.prefix == parts.prefix)
                )
            ).first()
            if found is None or not matches(key, found[0].hash):
                raise Unauthenticated("invalid_api_key", "The API key is not valid.")
            row, creator_role = found
            if row.revoked_at is not None:
                raise Unauthenticated("revoked_api_key", "The API key has been revoked.")
            if row.expires_at is not None and row.expires_at <= now:
                raise Unauthenticated("expired_api_key", "The API key has expired.")
            if row.created_by is not None and creator_role is None:
                raise Unauthenticated(
                    "suspended_api_key",
                    "The API key's creator is no longer a member of this org, so the key does "
                    "nothing: an owner or admin can rotate it to make it theirs, or revoke it.",
                )
            if row.last_used_at is None or now - row.last_used_at >= LAST_USED_RESOLUTION:
                await _touch(session, row, now)
    return Principal.api_key(
        row.org_id,
        row.id,
        frozenset(row.scopes),
        creator_id=row.created_by,
        creator_role=None if creator_role is None else Role(creator_role),
    )


async def _touch(session: AsyncSession, row: ApiKey, now: dt.datetime) -> None:
    """Record use; the condition keeps concurrent requests of other processes from rewriting."""
    stale = now - LAST_USED_RESOLUTION
    await session.execute(
        update(ApiKey)
        .where(
            ApiKey.org_id == row.org_id,
            ApiKey.id == row.id,
            or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at < stale),
        )
        .values(last_used_at=now)
        .execution_options(synchronize_session=False)
    )


async def _user_principal(
    authenticator: Authenticator, connection: ASGIConnection[Any, Any, Any, Any], token: str
) -> Principal:
    try:
        claims = decode_access_token(authenticator.settings.secret_key, token)
    except InvalidToken as exc:
        if authenticator.supabase_accepts(token):
            return await supabase.authenticate(
                authenticator.supabase_backend(), authenticator.engine, connection, token
            )
        raise Unauthenticated(exc.code, exc.detail, headers={"WWW-Authenticate": "Bearer"}) from exc
    return await member_principal(authenticator.engine, claims)


async def member_principal(engine: AsyncEngine, claims: AccessClaims) -> Principal:
    """The member ``claims`` name, while their membership and hub session last (401
    ``not_a_member`` or ``session_revoked`` after). Bearer tokens and the pages' session
    cookies (:mod:`agentops_server.web.sessions`) end here alike."""
    now = dt.datetime.now(dt.UTC)
    with tenant(org_id=claims.org_id, user_id=claims.user_id):
        async with open_session(engine) as session:
            found = (
                await session.execute(
                    select(Membership.role, UserSession.revoked_at, UserSession.expires_at)
                    .join(
                        UserSession,
                        (UserSession.org_id == Membership.org_id)
                        & (UserSession.user_id == Membership.user_id),
                    )
                    .where(
                        Membership.org_id == claims.org_id,
                        Membership.user_id == claims.user_id,
                        UserSession.id == claims.session_id,
                    )
                )
            ).first()
            if found is None:
                raise Unauthenticated("not_a_member", "You are no longer a member of this org.")
            role, revoked_at, expires_at = found
            if revoked_at is not None or expires_at <= now:
                raise Unauthenticated("session_revoked", "This session has ended; sign in again.")
            teams = await session.scalars(
                select(TeamMember.team_id).where(
                    TeamMember.org_id == claims.org_id, TeamMember.user_id == claims.user_id
                )
            )
            team_ids = frozenset(teams)
    return Principal.member(
        claims.org_id,
        claims.user_id,
        Role(role),
        session_id=claims.session_id,
        team_ids=team_ids,
    )
