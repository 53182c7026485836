"""Changing a password, signed in or with an emailed reset token.

- :func:`change_password` (signed in, with the current password) ends the user's other
  sessions in every org; :func:`reset_password` (with a token from
  :func:`request_password_reset`'s email) ends all of them.

A reset runs on public routes, as nobody: it reads the global identity tables, then acts as each
org the user belongs to when it ends their sessions, committing between tenants.
"""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from agentops_server.backends.mailer import Email, Mailer
from agentops_server.db.models import PasswordReset, User
from agentops_server.refusals import Forbidden, Invalid
from agentops_server.security.passwords import (
    WeakPassword,
    check_strength,
    hash_password,
    verify_password,
)
from agentops_server.security.tokens import (
    hash_secret,
    new_opaque_token,
    parse_opaque_token,
    secret_matches,
)
from agentops_server.services import audit
from agentops_server.services.identity import sessions
from agentops_server.services.identity.accounts import Client, get_user
from agentops_server.services.identity.users import (
    InvalidEmail,
    find_user_by_email,
    normalize_email,
)
from agentops_server.services.row_claims import claim
from agentops_server.settings import Settings

__all__ = [
    "RESET_TOKEN_KIND",
    "RESET_TOKEN_TTL",
    "change_password",
    "request_password_reset",
    "reset_password",
]


RESET_TOKEN_KIND = "pr"


RESET_TOKEN_TTL = dt.timedelta(hours=1)


async def change_password(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    org_id: uuid.UUID,
    session_id: uuid.UUID | None,
    current: str,
    new: str,
    client: Client = Client(),
) -> int:
    """Replace the password after checking ``current``; end every other session of the user
    in every org; record ``user.password_changed`` in ``org_id``. How many sessions ended."""
    user = await get_user(session, user_id)
    if not await verify_password(current, user.password_hash):
        raise Forbidden("invalid_password", "The current password is wrong.")
    _check_new_password(new, user.email)
    user.password_hash = await hash_password(new)
    user.password_changed_at = dt.datetime.now(dt.UTC)
    await audit.record(
        session,
        org_id,
        client.actor(user_id),
        "user.password_changed",
        target_type="user",
        target_id=user_id,
    )
    await session.commit()
    return await sessions.revoke_everywhere(
        session, user_id, reason="password_changed", keep=session_id
    )


async def request_password_reset(
    session: AsyncSession, settings: Settings, mailer: Mailer, email: str
) -> bool:
    """Email a reset link to ``email`` if an account has it; whether one was sent.

    The link carries a single-use token valid for :data:`RESET_TOKEN_TTL`, stored hashed.
    """
    try:
        address = normalize_email(email)
    except InvalidEmail:
        return False
    user = await find_user_by_email(session, address)
    if user is None:
        return False
    row_id = uuid.uuid4()
    token = new_opaque_token(RESET_TOKEN_KIND, user.id, row_id)
    session.add(
        PasswordReset(
            id=row_id,
            user_id=user.id,
            token_hash=hash_secret(token),
            expires_at=dt.datetime.now(dt.UTC) + RESET_TOKEN_TTL,
        )
    )
    await session.commit()
    link = f"{settings.public_url.rstrip('/')}/reset-password?token={token}"
    await mailer.send(
        Email(to=user.email, subject=_RESET_SUBJECT, text=_reset_text(user, link, token))
    )
    return True


async def reset_password(
    session: AsyncSession, token: str, new: str, *, client: Client = Client()
) -> int:
    """Set a new password with an emailed reset ``token``; end all the user's sessions in every
    org (recording ``user.password_reset`` in each) and every other reset token. How many
    sessions ended.

    Refused as ``invalid_reset_token``, ``reset_token_used``, ``reset_token_expired`` or
    ``weak_password``, changing nothing.
    """
    parts = parse_opaque_token(RESET_TOKEN_KIND, token)
    if parts is None:
        raise Invalid("invalid_reset_token", "This is not a password-reset token.")
    now = dt.datetime.now(dt.UTC)
    row = await session.scalar(
        select(PasswordReset).where(
            PasswordReset.id == parts.row_id, PasswordReset.user_id == parts.owner_id
        )
    )
    if row is None or not secret_matches(token, row.token_hash):
        raise Invalid("invalid_reset_token", "The password-reset token is not valid.")
    if row.used_at is not None:
        raise _reset_token_used()
    if row.expires_at <= now:
        raise Invalid("reset_token_expired", "This reset link has expired; ask for a new one.")
    user = await get_user(session, row.user_id)
    _check_new_password(new, user.email)
    password_hash = await hash_password(new)
    if not await claim(session, row, PasswordReset.used_at.is_(None), used_at=now):
        await session.rollback()
        raise _reset_token_used()
    await session.execute(
        update(PasswordReset)
        .where(PasswordReset.user_id == user.id, PasswordReset.used_at.is_(None))
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    user.password_hash = password_hash
    user.password_changed_at = now
    await session.commit()

    async def record_reset(db: AsyncSession, org_id: uuid.UUID, ended: int) -> None:
        await audit.record(
            db,
            org_id,
            client.actor(user.id),
            "user.password_reset",
            target_type="user",
            target_id=user.id,
            after={"sessions_revoked": ended},
        )

    return await sessions.revoke_everywhere(
        session, user.id, reason="password_reset", in_each_org=record_reset
    )


_RESET_SUBJECT = "Reset your AgentOps Hub password"


def _reset_text(user: User, link: str, token: str) -> str:
    minutes = int(RESET_TOKEN_TTL.total_seconds() // 60)
    return "\n".join(
        (
            f"Someone asked to reset the password of your AgentOps Hub account ({user.email}).",
            "",
            f"To choose a new password, open this link within {minutes} minutes:",
            "",
            link,
            "",
            "or send this token to POST /api/v1/auth/password/reset:",
            "",
            token,
            "",
            "It works once. If you did not ask for it, ignore this message: your password",
            "stays as it is.",
        )
    )


def _check_new_password(password: str, email: str) -> None:
    try:
        check_strength(password, email=email)
    except WeakPassword as exc:
        raise Invalid("weak_password", f"The new password is too weak: {exc}") from exc


def _reset_token_used() -> Invalid:
    return Invalid("reset_token_used", "This reset link was already used; ask for a new one.")
