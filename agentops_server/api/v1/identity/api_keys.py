"""``/api/v1/api-keys``: the org's API keys: create (the secret shown once), list, revoke,
rotate."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, delete, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession

from agentops_server.api.problems import JSON_BODY_LIMIT, problems
from agentops_server.api.v1.actors import actor_of
from agentops_server.auth.guards import requires
from agentops_server.refusals import Forbidden, Gone
from agentops_server.security.permissions import Permission, Scope
from agentops_server.security.principal import Principal
from agentops_server.services.identity import api_keys
from agentops_server.services.identity.api_keys import ApiKeyList, CreatedApiKey, KeyState
from agentops_server.values import Name, Text, Timestamp

__all__ = ["ApiKeyController"]

_SCOPES = ", ".join(f"`{scope.value}`" for scope in Scope)


class NewApiKey(msgspec.Struct, forbid_unknown_fields=True):
    """A key to make: its name, scopes, and optionally when it expires (one of the two)."""

    name: Name
    scopes: list[Text]
    expires_at: Timestamp | None = None
    expires_in_days: int | None = None


class Rotation(msgspec.Struct, forbid_unknown_fields=True):
    """How long the old key keeps working beside the new one (0: not at all)."""

    grace_seconds: int = 0


class ApiKeyController(Controller):
    """API keys of the caller's org."""

    path = "/api-keys"
    tags = ("api keys",)
    request_max_body_size = JSON_BODY_LIMIT

    @get(
        "/",
        guards=[requires(Permission.API_KEYS_READ)],
        summary="The org's API keys",
        description=(
            "Every key, revoked ones too, newest first: name, prefix, scopes, times, and its "
            "`state`: `active`, `capped` (its creator's role now withholds some of what its "
            "scopes allow: `withheld` lists it), `suspended` (its creator left the org: it does "
            "nothing; rotate it to make it yours, or revoke it), `expired` or `revoked`. Never "
            "the secret or its hash."
        ),
    )
    async def list_keys(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        key_state: Annotated[
            KeyState | None,
            QueryParameter(
                name="state",
                description="Only keys in this state (`suspended`: those of departed creators).",
            ),
        ] = None,
    ) -> ApiKeyList:
        """The org's keys."""
        return await api_keys.list_keys(db_session, request.auth.org_id, state=key_state)

    @post(
        "/",
        guards=[requires(Permission.API_KEYS_WRITE)],
        summary="Create an API key",
        description=(
            f"Scopes: {_SCOPES}. The answer holds the key (`key`): shown this once, stored only "
            "as a hash. Nobody grants a key more than they may do themselves. Audited as "
            "`api_key.created`. Errors: 400 `invalid_name`, `unknown_scope`, `no_scopes`, "
            "`invalid_expiry`, `conflicting_expiry`; 403 `scope_escalation`."
        ),
        responses=problems(
            Forbidden("scope_escalation", "a scope allowing more than the caller may do")
        ),
    )
    async def create_key(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        data: JSONBody[NewApiKey],
    ) -> CreatedApiKey:
        """Make a key."""
        return await api_keys.create_key(
            db_session,
            request.auth,
            actor_of(request),
            name=data.name,
            scopes=data.scopes,
            expires_at=data.expires_at,
            expires_in_days=data.expires_in_days,
        )

    @delete(
        "/{key_id:uuid}",
        guards=[requires(Permission.API_KEYS_WRITE)],
        summary="Revoke an API key",
        description=(
            "The key stops working at once (401 `revoked_api_key`). Revoking twice changes "
            "nothing. Audited as `api_key.revoked`. 404 `api_key_not_found`."
        ),
    )
    async def revoke_key(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        key_id: FromPath[uuid.UUID],
    ) -> None:
        """Revoke the key."""
        await api_keys.revoke_key(db_session, request.auth, actor_of(request), key_id)

    @post(
        "/{key_id:uuid}/rotate",
        guards=[requires(Permission.API_KEYS_WRITE)],
        summary="Rotate an API key",
        description=(
            "Makes a new key with the old one's name, scopes and expiry (the answer shows it "
            "once), acting for the caller: so an owner or admin takes over a suspended key. "
            "The old key is revoked at once, or with `grace_seconds` (at most 7 days) "
            "keeps working until then (its expiry is brought forward). Audited as "
            "`api_key.created` and `api_key.rotated`. Errors: 400 `invalid_grace`; 403 "
            "`scope_escalation`; 404 `api_key_not_found`; 410 `api_key_revoked`, "
            "`api_key_expired`."
        ),
        responses=problems(
            Forbidden("scope_escalation", "a scope allowing more than the caller may do"),
            Gone("api_key_revoked", "the key is revoked"),
            Gone("api_key_expired", "the key has expired"),
        ),
    )
    async def rotate_key(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        key_id: FromPath[uuid.UUID],
        data: JSONBody[Rotation | None] = None,
    ) -> CreatedApiKey:
        """Replace the key by a new one."""
        return await api_keys.rotate_key(
            db_session,
            request.auth,
            actor_of(request),
            key_id,
            grace_seconds=(data or Rotation()).grace_seconds,
        )
