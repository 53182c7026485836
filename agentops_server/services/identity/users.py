"""Users: made at sign-up, by accepting an invitation or at a first external login."""

from __future__ import annotations

import uuid

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from agentops_server.db.models import User
from agentops_server.refusals import Conflict, Invalid
from agentops_server.security.passwords import WeakPassword, check_strength, hash_password

__all__ = [
    "EmailTaken",
    "InvalidEmail",
    "create_user",
    "find_user_by_email",
    "new_user",
    "normalize_email",
]


class InvalidEmail(ValueError):
    """Not an email address; ``str()`` says what is wrong."""


class EmailTaken(ValueError):
    """A user with this email already exists."""


def normalize_email(email: str) -> str:
    """The canonical, lower-cased form of ``email``; :class:`InvalidEmail` if it is not one."""
    try:
        checked = validate_email(email.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidEmail(str(exc)) from exc
    return checked.normalized.lower()


async def find_user_by_email(session: AsyncSession, email: str) -> User | None:
    """The user with ``email`` (any case), or None."""
    return await session.scalar(select(User).where(User.email == email.strip().lower()))


async def create_user(
    session: AsyncSession, *, email: str, password: str | None, name: str = ""
) -> User:
    """Add a user (not committed). ``password`` None makes an external-login-only user.

    Raises :class:`InvalidEmail`, :class:`EmailTaken` or
    :class:`~agentops_server.security.passwords.WeakPassword`.
    """
    address = normalize_email(email)
    if password is not None:
        check_strength(password, email=address)
    taken = await session.scalar(select(func.count()).where(User.email == address))
    if taken:
        raise EmailTaken(f"An account with {address} already exists.")
    user = User(
        id=uuid.uuid4(),
        email=address,
        name=name.strip()[:200],
        password_hash=None if password is None else await hash_password(password),
    )
    session.add(user)
    await session.flush()
    return user


async def new_user(
    session: AsyncSession, *, email: str, password: str | None, name: str = ""
) -> User:
    """:func:`create_user`, refusing as the API does: ``invalid_email``, ``weak_password``,
    ``email_taken`` (after rolling the transaction back)."""
    try:
        return await create_user(session, email=email, password=password, name=name)
    except InvalidEmail as exc:
        raise Invalid("invalid_email", f"This is not an email address: {exc}") from exc
    except WeakPassword as exc:
        raise Invalid("weak_password", f"The password is too weak: {exc}") from exc
    except (EmailTaken, IntegrityError) as exc:
        await session.rollback()
        address = normalize_email(email)
        raise Conflict("email_taken", f"An account with {address} already exists.") from exc
