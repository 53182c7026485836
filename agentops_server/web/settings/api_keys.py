"""The API keys page: the org's keys; create, revoke and rotate one.

Creating or rotating answers the page itself with the new key's secret, shown this once (the
answer is never cached, and no later page holds it: the hub keeps only its hash). Each action
is the service ``/api/v1/api-keys`` calls (:mod:`agentops_server.services.identity.api_keys`):
nobody grants a key more than they may do themselves.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import PathParameter
from sqlalchemy.ext.asyncio import AsyncSession

from agentops_server.api.v1.actors import actor_of
from agentops_server.auth.guards import requires
from agentops_server.refusals import Invalid, Refused
from agentops_server.security.permissions import Permission, Scope
from agentops_server.security.principal import Principal
from agentops_server.services.identity import api_keys
from agentops_server.services.identity.api_keys import CreatedApiKey
from agentops_server.web.forms import fields_of, form_of
from agentops_server.web.pages import done
from agentops_server.web.settings.tabs import render, settle

__all__ = ["ApiKeyPages"]

PATH = "/settings/api-keys"
GRACE_CHOICES = ((0, "at once"), (3600, "in 1 hour"), (86400, "in 1 day"), (604800, "in 7 days"))
"""When a rotated key's old secret stops working (seconds, label)."""


class ApiKeyPages(Controller):
    """``/settings/api-keys``: read with ``api_keys:read``, change with ``api_keys:write``."""

    @get(PATH, guards=[requires(Permission.API_KEYS_READ)])
    async def api_keys_page(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
    ) -> Response[Any]:
        """The org's keys, never a secret."""
        return await _render(request, db_session)

    @post(PATH, guards=[requires(Permission.API_KEYS_WRITE)])
    async def create_key(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
    ) -> Response[Any]:
        """Make a key; the page shows its secret once. Audited as ``api_key.created``."""
        form = await form_of(request)
        try:
            days = _days((form.get("expires_in_days") or [""])[0])
            created = await api_keys.create_key(
                db_session,
                request.auth,
                actor_of(request),
                name=(form.get("name") or [""])[0],
                scopes=form.get("scope", []),
                expires_in_days=days,
            )
        except Refused as exc:
            return await _render(request, db_session, exc)
        return await _render(request, db_session, created=created)

    @post(PATH + "/{key_id:uuid}/revoke", guards=[requires(Permission.API_KEYS_WRITE)])
    async def revoke_key(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        key_id: Annotated[uuid.UUID, PathParameter()],
    ) -> Response[Any]:
        """Revoke the key at once; audited as ``api_key.revoked``."""
        try:
            await api_keys.revoke_key(db_session, request.auth, actor_of(request), key_id)
        except Refused as exc:
            return await _render(request, db_session, exc)
        return done(PATH, "api_key_revoked")

    @post(PATH + "/{key_id:uuid}/rotate", guards=[requires(Permission.API_KEYS_WRITE)])
    async def rotate_key(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        key_id: Annotated[uuid.UUID, PathParameter()],
    ) -> Response[Any]:
        """Replace the key by a new one (its secret shown once); the old one ends now or after
        the grace chosen. Audited as ``api_key.created`` and ``api_key.rotated``."""
        try:
            grace = _whole((await fields_of(request)).get("grace_seconds", "0") or "0", "grace")
            created = await api_keys.rotate_key(
                db_session, request.auth, actor_of(request), key_id, grace_seconds=grace
            )
        except Refused as exc:
            return await _render(request, db_session, exc)
        return await _render(request, db_session, created=created, rotated=key_id)


def _days(value: str) -> int | None:
    return _whole(value, "expiry") if value.strip() else None


def _whole(value: str, what: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise Invalid("invalid_form", f"The {what} is a whole number.") from None


async def _render(
    request: Request[Principal, Principal, Any],
    db_session: AsyncSession,
    refusal: Refused | None = None,
    *,
    created: CreatedApiKey | None = None,
    rotated: uuid.UUID | None = None,
) -> Response[Any]:
    await settle(db_session, refusal)
    return await render(
        request,
        db_session,
        "settings/api_keys.html",
        refusal,
        keys=(await api_keys.list_keys(db_session, request.auth.org_id)).items,
        created=created,
        rotated=rotated,
        scopes=[scope.value for scope in Scope],
        grace_choices=GRACE_CHOICES,
    )
