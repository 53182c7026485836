"""Signed-in sessions: an access token plus a rotating refresh token, per user and org.

A session is one family of refresh tokens. Each refresh token is used once: using it returns a
new pair and marks it used. Presenting a used one again means it was stolen or replayed, so the
whole family is revoked (OAuth 2.0 Security BCP, refresh token rotation). Two requests racing
with the same token are indistinguishable from a thief racing its owner: one wins, the other is
a reuse, and the family ends.

A session lives ``refresh_token_ttl`` seconds from sign-in (refreshing does not extend it).
Revoking it ends its access tokens at once too: the authentication middleware checks the session
on every request.

Tenancy: sessions are rows of their org. Functions that work in one org expect to run as that
org's tenant (an authenticated request already does); :func:`start_session`,
:func:`rotate_refresh_token` and :func:`revoke_everywhere` enter the tenant themselves and must
be called with no transaction open under another tenant (commit first).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Awaitable, Callable, Sequence

from sqlalchemy import ColumnElement, CursorResult, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from agentops_server.db.models import Membership, RefreshToken, UserSession
from agentops_server.db.tenancy import tenant
from agentops_server.refusals import NotFound, Unauthenticated
from agentops_server.security.tokens import (
    encode_access_token,
    hash_secret,
    new_opaque_token,
    parse_opaque_token,
    secret_matches,
)
from agentops_server.services import audit
from agentops_server.services.row_claims import claim
from agentops_server.settings import Settings

__all__ = [
    "REFRESH_TOKEN_KIND",
    "ActiveSession",
    "TokenPair",
    "end_own_session",
    "issue_tokens",
    "list_sessions",
    "revoke_everywhere",
    "revoke_session",
    "revoke_user_sessions",
    "rotate_refresh_token",
    "sign_out",
    "start_session",
]

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


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ActiveSession:
    """A session that has not ended, as its user sees it in their session list."""

    id: uuid.UUID
    method: str
    created_at: dt.datetime
    expires_at: dt.datetime
    ip: str | None
    user_agent: str | None
    current: bool
    """Whether this is the session of the request listing it."""


async def start_session(
    session: AsyncSession,
    settings: Settings,
    *,
    user_id: uuid.UUID,
    org_id: uuid.UUID,
    method: str,
    ip: str | None = None,
    user_agent: str | None = None,
    session_id: uuid.UUID | None = None,
) -> TokenPair:
    """Open a session for ``user_id`` in ``org_id`` (a member of it) and commit.

    ``method`` says how they signed in (``password``, ``password+totp``, ``oauth:github``,
    ``invitation``…). Runs as the org's tenant whatever the caller's context. ``session_id``
    names the session (by default a new id): a one-time credential that names it can open it
    only once (the id is the table's key).
    """
    with tenant(org_id=org_id, user_id=user_id):
        now = dt.datetime.now(dt.UTC)
        family = UserSession(
            org_id=org_id,
            id=session_id or uuid.uuid4(),
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


async def rotate_refresh_token(
    session: AsyncSession, settings: Settings, token: str, *, actor: audit.Actor = audit.SYSTEM
) -> TokenPair:
    """Trade ``token`` for a new pair and commit; :class:`Unauthenticated` when refused.

    A token already used (or used by a concurrent request: the claim is a conditional update,
    so exactly one request wins) revokes its session, with a ``session.revoked`` audit entry by
    ``actor``, and is refused as ``refresh_token_reused``.
    """
    parts = parse_opaque_token(REFRESH_TOKEN_KIND, token)
    if parts is None:
        raise Unauthenticated("invalid_refresh_token", "This is not a refresh token of this hub.")
    org_id, now = parts.owner_id, dt.datetime.now(dt.UTC)
    with tenant(org_id=org_id):
        row = await session.scalar(
            select(RefreshToken).where(
                RefreshToken.org_id == org_id, RefreshToken.id == parts.row_id
            )
        )
        if row is None or not secret_matches(token, row.token_hash):
            raise Unauthenticated("invalid_refresh_token", "The refresh token is not valid.")
        family = await session.scalar(
            select(UserSession).where(
                UserSession.org_id == org_id, UserSession.id == row.session_id
            )
        )
        assert family is not None  # a foreign key ties every token to its session
        if row.used_at is None:
            if family.revoked_at is not None:
                raise Unauthenticated("session_revoked", "This session has ended; sign in again.")
            if family.expires_at <= now:
                raise Unauthenticated("session_expired", "This session has expired; sign in again.")
            role = await session.scalar(
                select(Membership.role).where(
                    Membership.org_id == org_id, Membership.user_id == family.user_id
                )
            )
            if role is None:
                raise Unauthenticated("not_a_member", "You are no longer a member of this org.")
            if await claim(session, row, RefreshToken.used_at.is_(None), used_at=now):
                pair = await issue_tokens(session, settings, family)
                await session.commit()
                return pair
        # Used before, or just now by a concurrent request: the token has leaked.
        if await revoke_session(session, org_id, family.id, reason="refresh_token_reused"):
            await audit.record(
                session,
                org_id,
                actor,
                "session.revoked",
                target_type="session",
                target_id=family.id,
                after={"reason": "refresh_token_reused", "user_id": str(family.user_id)},
            )
        await session.commit()
    raise Unauthenticated(
        "refresh_token_reused",
        "This refresh token was already used; its session is revoked. Sign in again.",
    )


async def list_sessions(
    session: AsyncSession,
    org_id: uuid.UUID,
    user_id: uuid.UUID,
    *,
    current: uuid.UUID | None = None,
) -> list[ActiveSession]:
    """The sessions of ``user_id`` in ``org_id`` that have not ended, newest first."""
    rows = await session.scalars(
        select(UserSession)
        .where(
            UserSession.org_id == org_id,
            UserSession.user_id == user_id,
            UserSession.revoked_at.is_(None),
            UserSession.expires_at > dt.datetime.now(dt.UTC),
        )
        .order_by(UserSession.created_at.desc(), UserSession.id)
    )
    return [
        ActiveSession(
            id=row.id,
            method=row.method,
            created_at=row.created_at,
            expires_at=row.expires_at,
            ip=row.ip,
            user_agent=row.user_agent,
            current=row.id == current,
        )
        for row in rows
    ]


async def revoke_session(
    session: AsyncSession,
    org_id: uuid.UUID,
    session_id: uuid.UUID,
    *,
    reason: str,
    user_id: uuid.UUID | None = None,
) -> bool:
    """End one session at once (not committed); with ``user_id``, only if it is theirs.

    False when there is no such live session (already revoked, or someone else's).
    """
    where = [
        UserSession.org_id == org_id,
        UserSession.id == session_id,
        UserSession.revoked_at.is_(None),
    ]
    if user_id is not None:
        where.append(UserSession.user_id == user_id)
    return await _revoke(session, where, reason) == 1


async def sign_out(
    session: AsyncSession, org_id: uuid.UUID, user_id: uuid.UUID, session_id: uuid.UUID
) -> None:
    """End the user's session ``session_id`` (signing out); commit."""
    await revoke_session(session, org_id, session_id, reason="logout", user_id=user_id)
    await session.commit()


async def end_own_session(
    session: AsyncSession,
    org_id: uuid.UUID,
    user_id: uuid.UUID,
    session_id: uuid.UUID,
    *,
    actor: audit.Actor,
) -> None:
    """End one of the user's live sessions in the org, audited ``session.revoked``; commit.

    Refusals: ``session_not_found`` (no live session of theirs has the id).
    """
    ended = await revoke_session(
        session, org_id, session_id, reason="revoked_by_user", user_id=user_id
    )
    if not ended:
        raise NotFound("session_not_found", f"You have no live session {session_id} in this org.")
    await audit.record(
        session,
        org_id,
        actor,
        "session.revoked",
        target_type="session",
        target_id=session_id,
        after={"reason": "revoked_by_user"},
    )
    await session.commit()


async def revoke_user_sessions(
    session: AsyncSession,
    org_id: uuid.UUID,
    user_id: uuid.UUID,
    *,
    reason: str,
    keep: uuid.UUID | None = None,
) -> int:
    """End every session of ``user_id`` in ``org_id`` but ``keep`` (not committed); how many."""
    where = [
        UserSession.org_id == org_id,
        UserSession.user_id == user_id,
        UserSession.revoked_at.is_(None),
    ]
    if keep is not None:
        where.append(UserSession.id != keep)
    return await _revoke(session, where, reason)


OrgHook = Callable[[AsyncSession, uuid.UUID, int], Awaitable[None]]
"""Called in each org's transaction with the org id and how many sessions ended there."""


async def revoke_everywhere(
    session: AsyncSession,
    user_id: uuid.UUID,
    *,
    reason: str,
    keep: uuid.UUID | None = None,
    in_each_org: OrgHook | None = None,
) -> int:
    """End every session of ``user_id`` in every org they belong to but ``keep``; how many.

    Each org is its own transaction, run as that org (row-level security admits no other way to
    write another org's rows), committed before the next; ``in_each_org`` adds to each (an audit
    entry, say). Call it with no transaction open.
    """
    with tenant(user_id=user_id):
        org_ids: Sequence[uuid.UUID] = (
            await session.scalars(
                select(Membership.org_id)
                .where(Membership.user_id == user_id)
                .order_by(Membership.org_id)
            )
        ).all()
        await session.commit()
    ended = 0
    for org_id in org_ids:
        with tenant(org_id=org_id, user_id=user_id):
            count = await revoke_user_sessions(session, org_id, user_id, reason=reason, keep=keep)
            if in_each_org is not None:
                await in_each_org(session, org_id, count)
            await session.commit()
        ended += count
    return ended


async def _revoke(session: AsyncSession, where: list[ColumnElement[bool]], reason: str) -> int:
    result: CursorResult[tuple[()]] = await session.execute(  # type: ignore[assignment]
        update(UserSession)
        .where(*where)
        .values(revoked_at=dt.datetime.now(dt.UTC), revoked_reason=reason)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount
