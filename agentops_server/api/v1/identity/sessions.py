"""``/api/v1/auth``: sessions: refreshing tokens, signing out, switching org, listing and ending
one's sessions.

``/refresh`` is public (the refresh token is the credential); the others act on the caller's own
account (``account:self``), signed in with a hub session or a Supabase token (which is no hub
session: ``POST /logout`` answers ``400 no_session``).
"""

from __future__ import annotations

import dataclasses
import uuid
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, delete, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.params import JSONBody, PathParameter
from sqlalchemy.ext.asyncio import AsyncSession

from agentops_server.api.problems import AUTH_FAILURES, JSON_BODY_LIMIT, problems
from agentops_server.api.v1.actors import actor_of, client_ip, client_of, request_id, user_id_of
from agentops_server.api.v1.openapi import ANYONE
from agentops_server.auth.guards import PUBLIC, requires
from agentops_server.backends.rate_limit import FailedAuthentications
from agentops_server.refusals import (
    Forbidden,
    Invalid,
    NotFound,
    Unauthenticated,
)
from agentops_server.security.permissions import Permission
from agentops_server.security.principal import Principal
from agentops_server.services import audit
from agentops_server.services.identity import accounts, sessions
from agentops_server.services.identity.sessions import ActiveSession, TokenPair
from agentops_server.settings import Settings
from agentops_server.values import Text

__all__ = ["SessionController"]


class RefreshForm(msgspec.Struct, forbid_unknown_fields=True):
    """A refresh token, used once."""

    refresh_token: Text


class LogoutForm(msgspec.Struct, forbid_unknown_fields=True):
    """``everywhere``: end every session of the user in every org, not only this one."""

    everywhere: bool = False


class SwitchOrgForm(msgspec.Struct, forbid_unknown_fields=True):
    """The org to sign into (id or slug)."""

    org: Text


@dataclasses.dataclass(frozen=True, slots=True)
class SessionList:
    """The user's live sessions in this org, newest first."""

    items: list[ActiveSession]


class SessionController(Controller):
    """Sessions."""

    path = "/auth"
    tags = ("auth",)
    request_max_body_size = JSON_BODY_LIMIT

    @post(
        "/refresh",
        opt=PUBLIC,
        security=ANYONE,
        status_code=200,
        summary="Trade a refresh token for a new pair",
        responses=problems(
            Unauthenticated("invalid_refresh_token", "not a refresh token of this hub"),
            Unauthenticated(
                "refresh_token_reused", "the token was already used: its session is now revoked"
            ),
            Unauthenticated("session_revoked", "the session was signed out or revoked"),
            Unauthenticated(
                "session_expired", "the session is older than AGENTOPS_REFRESH_TOKEN_TTL"
            ),
            Unauthenticated("not_a_member", "the user no longer belongs to the session's org"),
            AUTH_FAILURES,
        ),
    )
    async def refresh(
        self,
        request: Request[Any, Any, State],
        db_session: NamedDependency[AsyncSession],
        settings: NamedDependency[Settings],
        auth_failures: NamedDependency[FailedAuthentications],
        data: JSONBody[RefreshForm],
    ) -> TokenPair:
        """A new access token and refresh token; the one sent is used up. Sending a used one
        again revokes the whole session: refresh one request at a time."""
        async with auth_failures.guard():
            return await sessions.rotate_refresh_token(
                db_session,
                settings,
                data.refresh_token,
                actor=audit.Actor("system", None, client_ip(request), request_id(request)),
            )

    @post(
        "/logout",
        guards=[requires(Permission.ACCOUNT)],
        status_code=204,
        summary="Sign out",
        responses=problems(
            Invalid("no_session", "the credential is not a hub session (a Supabase token)")
        ),
    )
    async def logout(
        self,
        request: Request[Principal, Principal, State],
        db_session: NamedDependency[AsyncSession],
        data: JSONBody[LogoutForm | None] = None,
    ) -> None:
        """End this session (its access and refresh tokens stop working at once), or with
        ``everywhere`` every session of the user in every org."""
        principal = request.auth
        user_id, session_id = user_id_of(principal), _session_of(principal)
        if data is not None and data.everywhere:
            await sessions.revoke_everywhere(db_session, user_id, reason="logout_everywhere")
            return
        await sessions.sign_out(db_session, principal.org_id, user_id, session_id)

    @post(
        "/switch-org",
        guards=[requires(Permission.ACCOUNT)],
        status_code=200,
        summary="Sign into another of my orgs",
        responses=problems(Forbidden("not_a_member", "the user does not belong to that org")),
    )
    async def switch_org(
        self,
        request: Request[Principal, Principal, State],
        db_session: NamedDependency[AsyncSession],
        settings: NamedDependency[Settings],
        data: JSONBody[SwitchOrgForm],
    ) -> TokenPair:
        """Tokens of a new session in ``org``; this session stays open."""
        return await accounts.switch_org(
            db_session,
            settings,
            user_id_of(request.auth),
            data.org,
            client=client_of(request),
        )

    @get("/sessions", guards=[requires(Permission.ACCOUNT)], summary="My sessions in this org")
    async def list_sessions(
        self,
        request: Request[Principal, Principal, State],
        db_session: NamedDependency[AsyncSession],
    ) -> SessionList:
        """The user's sessions in this org that have not ended, newest first."""
        principal = request.auth
        found = await sessions.list_sessions(
            db_session, principal.org_id, user_id_of(principal), current=principal.session_id
        )
        return SessionList(found)

    @delete(
        "/sessions/{session_id:uuid}",
        guards=[requires(Permission.ACCOUNT)],
        summary="End one of my sessions",
        responses=problems(
            NotFound("session_not_found", "no live session of yours in this org has it"),
        ),
    )
    async def revoke_session(
        self,
        request: Request[Principal, Principal, State],
        db_session: NamedDependency[AsyncSession],
        session_id: Annotated[uuid.UUID, PathParameter(description="The session's id.")],
    ) -> None:
        """Revoke one of the user's sessions in this org (records ``session.revoked``)."""
        principal = request.auth
        await sessions.end_own_session(
            db_session,
            principal.org_id,
            user_id_of(principal),
            session_id,
            actor=actor_of(request),
        )


def _session_of(principal: Principal) -> uuid.UUID:
    if principal.session_id is None:
        raise Invalid(
            "no_session",
            "This credential is not a hub session (an external identity's token): "
            "sign out with the identity provider.",
        )
    return principal.session_id
