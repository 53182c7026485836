"""API keys: made, shown once, stored only as a hash.

A key reads ``ak_<org id>_<prefix>_<secret>``. The org id and the 8-character prefix are visible
(they identify the key in lists and logs, and let the hub find it within its org without a
cross-org lookup); the secret is 43 URL-safe characters from ``secrets``. The hub stores the
SHA-256 of the whole key: keys are long random strings, so a fast hash is safe here, unlike
passwords (which get argon2 in a later issue).
"""

from __future__ import annotations

import dataclasses
import secrets
import uuid

from agentops_server.security.permissions import Scope
from agentops_server.security.tokens import hash_secret, secret_matches

__all__ = ["SCOPES", "KeyParts", "hash_key", "matches", "new_key", "parse_key"]

SCOPES = frozenset(scope.value for scope in Scope)
_PREFIX = "ak"


@dataclasses.dataclass(frozen=True, slots=True)
class KeyParts:
    """The visible parts of a key."""

    org_id: uuid.UUID
    prefix: str


def new_key(org_id: uuid.UUID) -> tuple[str, KeyParts]:
    """A fresh key for ``org_id``, and its visible parts."""
    prefix = secrets.token_hex(4)
    key = f"{_PREFIX}_{org_id.hex}_{prefix}_{secrets.token_urlsafe(32)}"
    return key, KeyParts(org_id, prefix)


def parse_key(key: str) -> KeyParts | None:
    """The visible parts of ``key``, or None if it is not shaped like one of ours."""
    parts = key.split("_", 3)
    if len(parts) != 4 or parts[0] != _PREFIX or len(parts[2]) != 8 or len(parts[3]) < 32:
        return None
    try:
        return KeyParts(uuid.UUID(hex=parts[1]), parts[2])
    except ValueError:
        return None


def hash_key(key: str) -> str:
    """The stored form of ``key``."""
    return hash_secret(key)


def matches(key: str, stored_hash: str) -> bool:
    """Constant-time check of ``key`` against a stored hash."""
    return secret_matches(key, stored_hash)
