"""Signed-in sessions: an access token plus a rotating refresh token, per user and org.

A session is one family of refresh tokens. Each refresh token is used once: using it returns a
new pair and marks it used. Presenting a used one again means it was stolen or replayed, so the
whole family is revoked (OAuth 2.0 Security BCP, refresh token rotation).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from agentops_server.auth.tokens import encode_access_token, hash_secret, new_opaque_token
from agentops_server.db.models import RefreshToken, UserSession
from agentops_server.db.tenancy import tenant
from agentops_server.settings import Settings

__all__ = ["REFRESH_TOKEN_KIND", "TokenPair", "issue_tokens", "start_session"]

REFRESH_TOKEN_KIND = "rt"


@dataclasses.dataclass(frozen=True, slots=True)
class TokenPair:
    """What signing in returns. ``refresh_token`` is shown once and stored only as a hash."""

    access_token: str
    refresh_token: str
    expires_in: int
    org_id: uuid.UUID
    user_id: uuid.UUID
    session_id: uuid.UUID
    token_type: str = "bearer"


async def start_session(
    session: AsyncSession,
    settings: Settings,
    *,
    user_id: uuid.UUID,
    org_id: uuid.UUID,
    method: str,
    ip: str | None = None,
    user_agent: str | None = None,
) -> TokenPair:
    """Open a session for ``user_id`` in ``org_id`` (a member of it) and commit.

    ``method`` says how they signed in (``password``, ``mfa``, ``oauth:github``,
    ``invitation``…). Runs as the org's tenant whatever the caller's context.
    """
    with tenant(org_id=org_id, user_id=user_id):
        now = dt.datetime.now(dt.UTC)
        family = UserSession(
            org_id=org_id,
            id=uuid.uuid4(),
            user_id=user_id,
            method=method,
            expires_at=now + dt.timedelta(seconds=settings.refresh_token_ttl),
            ip=ip,
            user_agent=(user_agent or "")[:512] or None,
        )
        session.add(family)
        await session.flush()
        pair = await issue_tokens(session, settings, family)
        await session.commit()
    return pair


async def issue_tokens(session: AsyncSession, settings: Settings, family: UserSession) -> TokenPair:
    """A fresh access token and refresh token for ``family`` (the refresh token is added, not
    committed)."""
    row_id = uuid.uuid4()
    refresh = new_opaque_token(REFRESH_TOKEN_KIND, family.org_id, row_id)
    session.add(
        RefreshToken(
            org_id=family.org_id, id=row_id, session_id=family.id, token_hash=hash_secret(refresh)
        )
    )
    access = encode_access_token(
        settings.secret_key,
        user_id=family.user_id,
        org_id=family.org_id,
        session_id=family.id,
        ttl=settings.access_token_ttl,
    )
    return TokenPair(
        access, refresh, settings.access_token_ttl, family.org_id, family.user_id, family.id
    )
