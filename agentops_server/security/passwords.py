"""Passwords: checked for strength, hashed with argon2id, verified off the event loop.

argon2-cffi's defaults (RFC 9106's low-memory profile: 64 MiB, 3 passes) cost tens of
milliseconds by design, so hashing and verifying run in a worker thread.
"""

from __future__ import annotations

import anyio.to_thread
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

__all__ = [
    "MIN_LENGTH",
    "WeakPassword",
    "check_strength",
    "hash_password",
    "hash_password_blocking",
    "needs_rehash",
    "verify_password",
]

MIN_LENGTH = 10
MAX_LENGTH = 256
_hasher = PasswordHasher()
_DUMMY_HASH = _hasher.hash("a password nobody has")


class WeakPassword(ValueError):
    """The password is too short, too long or too easy to guess; ``str()`` says why."""


def check_strength(password: str, *, email: str = "") -> None:
    """Raise :class:`WeakPassword` unless ``password`` is long and varied enough."""
    if len(password) < MIN_LENGTH:
        raise WeakPassword(f"Use at least {MIN_LENGTH} characters.")
    if len(password) > MAX_LENGTH:
        raise WeakPassword(f"Use at most {MAX_LENGTH} characters.")
    if len(set(password)) < 5:
        raise WeakPassword("Use a less repetitive password.")
    classes = sum(
        (
            any(c.islower() for c in password),
            any(c.isupper() for c in password),
            any(c.isdigit() for c in password),
            any(not c.isalnum() for c in password),
        )
    )
    if classes < 2 and len(password) < 16:
        raise WeakPassword("Mix letters with digits or symbols, or use 16 characters or more.")
    local = email.partition("@")[0].lower()
    if len(local) >= 4 and local in password.lower():
        raise WeakPassword("Do not use your email address in your password.")


async def hash_password(password: str) -> str:
    """The argon2id hash of ``password``, computed in a worker thread."""
    return await anyio.to_thread.run_sync(hash_password_blocking, password)


def hash_password_blocking(password: str) -> str:
    """The argon2id hash of ``password``, on this thread (the CLI's form)."""
    return _hasher.hash(password)


async def verify_password(password: str, stored_hash: str | None) -> bool:
    """Whether ``password`` matches ``stored_hash``. With no hash (no such user, or an
    external-login user) it still spends the same time, so timing does not reveal accounts."""
    target = stored_hash or _DUMMY_HASH
    try:
        ok = await anyio.to_thread.run_sync(_hasher.verify, target, password)
    except (VerificationError, InvalidHashError):
        return False
    return bool(ok) and stored_hash is not None


def needs_rehash(stored_hash: str) -> bool:
    """Whether ``stored_hash`` was made with older parameters than today's."""
    return _hasher.check_needs_rehash(stored_hash)
