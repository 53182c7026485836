"""Authenticate ``/api/v1`` requests by API key; guards check the key's scopes."""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult
from litestar.types import Guard
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from agentops_server.auth.api_keys import matches, parse_key
from agentops_server.db.models import ApiKey
from agentops_server.errors import Problem

__all__ = ["ApiKeyAuthentication", "Principal", "requires_scope"]


@dataclasses.dataclass(frozen=True, slots=True)
class Principal:
    """The caller of a request: an API key of one org, with its scopes."""

    org_id: uuid.UUID
    key_id: uuid.UUID
    scopes: frozenset[str]


class ApiKeyAuthentication(AbstractAuthenticationMiddleware):
    """Reads ``Authorization: Bearer <key>``; answers 401 ``invalid_api_key`` otherwise."""

    async def authenticate_request(
        self, connection: ASGIConnection[Any, Any, Any, Any]
    ) -> AuthenticationResult:
        header = connection.headers.get("authorization", "")
        scheme, _, key = header.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise Problem(401, "invalid_api_key", "Send an API key: Authorization: Bearer <key>.")
        key = key.strip()
        parts = parse_key(key)
        if parts is None:
            raise Problem(401, "invalid_api_key", "The API key is malformed.")
        engine: AsyncEngine = connection.app.state.engine
        async with AsyncSession(engine) as session:
            row = await session.scalar(
                select(ApiKey).where(ApiKey.org_id == parts.org_id, ApiKey.prefix == parts.prefix)
            )
        if row is None or not matches(key, row.hash):
            raise Problem(401, "invalid_api_key", "The API key is not valid.")
        if row.revoked_at is not None:
            raise Problem(401, "revoked_api_key", "The API key has been revoked.")
        principal = Principal(row.org_id, row.id, frozenset(row.scopes))
        return AuthenticationResult(user=principal, auth=principal)


def requires_scope(scope: str) -> Guard:
    """A guard admitting only keys that carry ``scope``."""

    def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        principal = connection.auth
        if not isinstance(principal, Principal) or scope not in principal.scopes:
            raise Problem(403, "insufficient_scope", f"This API key lacks the {scope!r} scope.")

    return guard
