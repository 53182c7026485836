"""Signed tokens the hub issues: short-lived access tokens and other purpose-bound JWTs.

An access token is a JWT (HS256, signed with a key derived from ``AGENTOPS_SECRET_KEY``) naming
the user (``sub``), the org they act in (``org``) and their session (``sid``). It lives
``access_token_ttl`` seconds (15 minutes by default); the middleware also checks the session on
every request, so signing out or a password reset ends it at once. Each purpose (``access``,
``mfa``, ``oauth_state``…) signs with its own derived key, so a token made for one purpose is
never accepted for another.

Opaque secrets (refresh tokens, invitation and reset tokens) read ``<kind>_<org or id hex>_<id
hex>_<secret>`` like API keys: the visible ids let the hub find the row, and with it the org,
before the first tenant query; only the SHA-256 of the whole token is stored.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import secrets
import time
import uuid
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import OctKey
from joserfc.jwt import JWTClaimsRegistry

__all__ = [
    "ISSUER",
    "AccessClaims",
    "InvalidToken",
    "OpaqueToken",
    "decode_access_token",
    "decode_token",
    "encode_access_token",
    "encode_token",
    "hash_secret",
    "new_opaque_token",
    "parse_opaque_token",
    "secret_matches",
]

ISSUER = "agentops-hub"


class InvalidToken(Exception):
    """A token that is malformed, tampered with, expired or made for another purpose."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


@dataclasses.dataclass(frozen=True, slots=True)
class AccessClaims:
    """What an access token says."""

    user_id: uuid.UUID
    org_id: uuid.UUID
    session_id: uuid.UUID
    expires_at: int


def encode_access_token(
    secret_key: str, *, user_id: uuid.UUID, org_id: uuid.UUID, session_id: uuid.UUID, ttl: int
) -> str:
    """A signed access token for ``user_id`` acting in ``org_id`` under ``session_id``."""
    claims = {"sub": str(user_id), "org": str(org_id), "sid": str(session_id)}
    return encode_token(secret_key, "access", claims, ttl=ttl)


def decode_access_token(secret_key: str, token: str) -> AccessClaims:
    """The claims of a valid access token; :class:`InvalidToken` otherwise."""
    claims = decode_token(secret_key, "access", token)
    try:
        return AccessClaims(
            uuid.UUID(claims["sub"]),
            uuid.UUID(claims["org"]),
            uuid.UUID(claims["sid"]),
            int(claims["exp"]),
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise InvalidToken("invalid_token", "The access token's claims are malformed.") from exc


def encode_token(secret_key: str, purpose: str, claims: dict[str, Any], *, ttl: int) -> str:
    """A JWT for ``purpose`` carrying ``claims``, valid for ``ttl`` seconds."""
    now = int(time.time())
    body = {"iss": ISSUER, "aud": f"{ISSUER}:{purpose}", "iat": now, "exp": now + ttl, **claims}
    return jwt.encode({"alg": "HS256"}, body, _key(secret_key, purpose))


def decode_token(secret_key: str, purpose: str, token: str) -> dict[str, Any]:
    """The claims of a valid ``purpose`` token made by :func:`encode_token`."""
    try:
        decoded = jwt.decode(token, _key(secret_key, purpose), algorithms=["HS256"])
    except (JoseError, ValueError) as exc:
        raise InvalidToken(
            "invalid_token", "The token is malformed or its signature is wrong."
        ) from exc
    registry = JWTClaimsRegistry(
        iss={"essential": True, "value": ISSUER},
        aud={"essential": True, "value": f"{ISSUER}:{purpose}"},
        exp={"essential": True},
    )
    try:
        registry.validate(decoded.claims)
    except JoseError as exc:
        if exc.error == "expired_token":
            raise InvalidToken("token_expired", "The token has expired.") from exc
        raise InvalidToken("invalid_token", f"The token is not valid here: {exc}.") from exc
    return dict(decoded.claims)


@dataclasses.dataclass(frozen=True, slots=True)
class OpaqueToken:
    """The visible parts of an opaque token: its kind, the owner id and the row id."""

    kind: str
    owner_id: uuid.UUID
    row_id: uuid.UUID


def new_opaque_token(kind: str, owner_id: uuid.UUID, row_id: uuid.UUID) -> str:
    """A fresh opaque token, e.g. ``rt_<org hex>_<token id hex>_<secret>``."""
    return f"{kind}_{owner_id.hex}_{row_id.hex}_{secrets.token_urlsafe(32)}"


def parse_opaque_token(kind: str, token: str) -> OpaqueToken | None:
    """The visible parts of ``token`` if it is shaped like a ``kind`` token, else None."""
    parts = token.split("_", 3)
    if len(parts) != 4 or parts[0] != kind or len(parts[3]) < 32:
        return None
    try:
        return OpaqueToken(kind, uuid.UUID(hex=parts[1]), uuid.UUID(hex=parts[2]))
    except ValueError:
        return None


def hash_secret(token: str) -> str:
    """The stored form of an opaque token or API key (they are long and random: SHA-256 is
    enough; passwords get argon2id)."""
    return hashlib.sha256(token.encode()).hexdigest()


def secret_matches(token: str, stored_hash: str) -> bool:
    """Constant-time check of ``token`` against its stored hash."""
    return hmac.compare_digest(hash_secret(token), stored_hash)


def _key(secret_key: str, purpose: str) -> OctKey:
    derived = hmac.new(secret_key.encode(), f"agentops-hub:{purpose}".encode(), "sha256").digest()
    return OctKey.import_key(derived)
