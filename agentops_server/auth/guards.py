"""Litestar guards: every route of ``/api/v1`` names the permission it needs.

``requires(Permission.RUNS_READ)`` admits members whose role grants it and API keys whose scopes
do (and whose creator still may); everyone else gets 403 ``permission_denied`` (a person),
``insufficient_scope`` (a key) or ``creator_lacks_permission`` (a key whose scopes allow it but
whose creator no longer may).
Routes open to anyone (sign-up, sign-in, accepting an invitation) say so with :data:`PUBLIC` in
their ``opt``, which also skips authentication. ``tests/server/test_permissions.py`` fails for a
route that does neither.
"""

from __future__ import annotations

from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.types import Guard

from agentops_server.refusals import Forbidden, Unauthenticated
from agentops_server.security.permissions import Permission
from agentops_server.security.principal import Principal

__all__ = ["PUBLIC", "permission_of", "requires"]

PUBLIC: dict[str, Any] = {"exclude_from_auth": True, "public": True}
"""``opt`` of a route anyone may call, signed in or not."""

_PERMISSION_ATTRIBUTE = "agentops_permission"


def requires(permission: Permission) -> Guard:
    """A guard admitting only callers holding ``permission``."""

    def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        principal = connection.scope.get("auth")
        if not isinstance(principal, Principal):
            raise Unauthenticated("unauthenticated", "Sign in or send an API key.")
        if principal.can(permission):
            return
        if permission in principal.withheld:
            raise Forbidden(
                "creator_lacks_permission",
                f"This API key's creator may no longer do {permission.value!r}, so neither may "
                "the key: an owner or admin can rotate it to make it theirs.",
                permission=permission.value,
            )
        if principal.kind == "api_key":
            raise Forbidden(
                "insufficient_scope",
                f"This API key's scopes do not allow {permission.value!r}.",
                permission=permission.value,
            )
        raise Forbidden(
            "permission_denied",
            f"Your role ({principal.role}) does not allow {permission.value!r}.",
            permission=permission.value,
        )

    setattr(guard, _PERMISSION_ATTRIBUTE, permission)
    guard.__name__ = f"requires_{permission.name.lower()}"
    return guard


def permission_of(handler: BaseRouteHandler) -> Permission | None:
    """The permission ``handler``'s guards require (None for a public or unguarded route)."""
    found = [
        getattr(guard, _PERMISSION_ATTRIBUTE)
        for layer in handler.ownership_layers
        for guard in layer.guards or ()
        if hasattr(guard, _PERMISSION_ATTRIBUTE)
    ]
    if len(found) > 1:
        raise ValueError(f"{handler} requires several permissions: {found}")
    return found[0] if found else None
