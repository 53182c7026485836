"""``/api/v1/auth/me``: who the caller is (user, org, role, every org they belong to) and their
profile (``account:self``)."""

from __future__ import annotations

import msgspec
from litestar import Controller, Request, get, patch
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.params import JSONBody
from sqlalchemy.ext.asyncio import AsyncSession

from agentops_server.api.problems import JSON_BODY_LIMIT
from agentops_server.api.v1.actors import user_id_of
from agentops_server.auth.guards import requires
from agentops_server.security.permissions import Permission
from agentops_server.security.principal import Principal
from agentops_server.services.identity import accounts
from agentops_server.services.identity.accounts import (
    AccountView,
    UserProfile,
)
from agentops_server.values import Name

__all__ = ["AccountController"]


class ProfileForm(msgspec.Struct, forbid_unknown_fields=True):
    """The user's display name."""

    name: Name


class AccountController(Controller):
    """The caller's account."""

    path = "/auth/me"
    tags = ("auth",)
    request_max_body_size = JSON_BODY_LIMIT

    @get("/", guards=[requires(Permission.ACCOUNT)], summary="Who am I")
    async def me(
        self,
        request: Request[Principal, Principal, State],
        db_session: NamedDependency[AsyncSession],
    ) -> AccountView:
        """The user, the org and role of this credential, and every org the user belongs to.
        ``session_id`` is this hub session's, or null for a Supabase token (no hub session)."""
        principal = request.auth
        return await accounts.account(
            db_session, user_id_of(principal), principal.org_id, principal.session_id
        )

    @patch("/", guards=[requires(Permission.ACCOUNT)], summary="Change my profile")
    async def update_me(
        self,
        request: Request[Principal, Principal, State],
        db_session: NamedDependency[AsyncSession],
        data: JSONBody[ProfileForm],
    ) -> UserProfile:
        """Change the display name."""
        return await accounts.rename(db_session, user_id_of(request.auth), data.name)
