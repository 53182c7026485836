"""``/api/v1/invitations``: invite people by email, list, revoke and resend invitations, and
accept one (public: the token in the email is the credential)."""

from __future__ import annotations

import uuid
from typing import Any

from litestar import Controller, Request, delete, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, JSONBody
from sqlalchemy.ext.asyncio import AsyncSession

from agentops_server.api.problems import JSON_BODY_LIMIT, THROTTLED, problems
from agentops_server.api.v1.actors import actor_of, client_of
from agentops_server.api.v1.openapi import ANYONE
from agentops_server.auth.guards import PUBLIC, requires
from agentops_server.auth.middleware import Authenticator, bearer_token
from agentops_server.backends.mailer import Mailer
from agentops_server.backends.rate_limit import FailedAuthentications, Throttle
from agentops_server.refusals import (
    Conflict,
    Forbidden,
    Gone,
    Invalid,
    NotFound,
    Unauthenticated,
    Unavailable,
)
from agentops_server.security.permissions import Permission
from agentops_server.security.principal import Principal
from agentops_server.security.tokens import parse_opaque_token
from agentops_server.services.identity import invitation_acceptance, invitations
from agentops_server.services.identity.invitation_acceptance import Acceptance, AcceptedInvitation
from agentops_server.services.identity.invitations import (
    InvitationList,
    InvitationView,
    NewInvitation,
    Outbox,
)
from agentops_server.settings import Settings

__all__ = ["InvitationController"]

_ROLE_RULE = (
    "403 `role_escalation` when the caller could not give that role themselves (an admin "
    "inviting an owner)"
)


def _outbox(mailer: NamedDependency[Mailer], settings: NamedDependency[Settings]) -> Outbox:
    return Outbox(mailer, settings.public_url)


class InvitationController(Controller):
    """Invitations to the caller's org, and accepting one."""

    path = "/invitations"
    tags = ("invitations",)
    request_max_body_size = JSON_BODY_LIMIT
    dependencies = {"outbox": Provide(_outbox, sync_to_thread=False)}  # noqa: RUF012

    @get("/", guards=[requires(Permission.MEMBERS_READ)], summary="Pending invitations")
    async def list_invitations(
        self, request: Request[Principal, Principal, Any], db_session: NamedDependency[AsyncSession]
    ) -> InvitationList:
        """Invitations neither accepted nor revoked (expired ones too, flagged), newest first."""
        return await invitations.list_invitations(db_session, request.auth.org_id)

    @post(
        "/",
        guards=[requires(Permission.MEMBERS_WRITE)],
        summary="Invite someone by email",
        description=(
            "Emails a link with a single-use token, valid 7 days; the token is never in an "
            "answer. A pending invitation to the same address is refreshed (its old link stops "
            "working). Audited as `invitation.created`. Errors: 400 `invalid_email`, "
            f"`invalid_role`; {_ROLE_RULE}; 404 `team_not_found`; 409 `already_member`; "
            "503 `mail_unavailable` (nothing changed)."
        ),
        responses=problems(
            Forbidden("role_escalation", "a role above the caller's"),
            NotFound("team_not_found", "the team is not the org's"),
            Conflict("already_member", "the address is a member already"),
            Unavailable("mail_unavailable", "the mail server refused; nothing changed"),
        ),
    )
    async def create_invitation(
        self,
        request: Request[Principal, Principal, State],
        db_session: NamedDependency[AsyncSession],
        outbox: NamedDependency[Outbox],
        data: JSONBody[NewInvitation],
    ) -> InvitationView:
        """Invite ``email`` with ``role`` (and into ``team_id``)."""
        return await invitations.create_invitation(
            db_session, request.auth, actor_of(request), data, outbox
        )

    @delete(
        "/{invitation_id:uuid}",
        guards=[requires(Permission.MEMBERS_WRITE)],
        summary="Revoke an invitation",
        description=(
            "Its link stops working (410 `invitation_revoked`). Revoking twice changes nothing. "
            f"Audited as `invitation.revoked`. Errors: 404 `invitation_not_found`; "
            f"409 `invitation_used`; {_ROLE_RULE}."
        ),
        responses=problems(
            Forbidden("role_escalation", "a role above the caller's"),
            Conflict("invitation_used", "already accepted"),
        ),
    )
    async def revoke_invitation(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        invitation_id: FromPath[uuid.UUID],
    ) -> None:
        """Revoke the invitation."""
        await invitations.revoke_invitation(
            db_session, request.auth, actor_of(request), invitation_id
        )

    @post(
        "/{invitation_id:uuid}/resend",
        guards=[requires(Permission.MEMBERS_WRITE)],
        status_code=200,
        summary="Resend an invitation",
        description=(
            "Emails a new link with a new 7-day expiry; the old link stops working. Audited as "
            "`invitation.resent`. Errors: 404 `invitation_not_found`; 409 `invitation_used`; "
            f"410 `invitation_revoked`; {_ROLE_RULE}; 503 `mail_unavailable`."
        ),
        responses=problems(
            Forbidden("role_escalation", "a role above the caller's"),
            Conflict("invitation_used", "already accepted"),
            Gone("invitation_revoked", "the invitation was revoked"),
            Unavailable("mail_unavailable", "the mail server refused; nothing changed"),
        ),
    )
    async def resend_invitation(
        self,
        request: Request[Principal, Principal, State],
        db_session: NamedDependency[AsyncSession],
        outbox: NamedDependency[Outbox],
        invitation_id: FromPath[uuid.UUID],
    ) -> InvitationView:
        """Send the invitation again with a fresh token."""
        return await invitations.resend_invitation(
            db_session, request.auth, actor_of(request), invitation_id, outbox
        )

    @post(
        "/accept",
        opt=PUBLIC,
        security=ANYONE,
        status_code=200,
        summary="Accept an invitation",
        description=(
            "Public: the token from the email is the credential. Joins the org (and its team) "
            "and answers a session there (`tokens`). When the hub has no account for the "
            "invited email, `name` and `password` make one. When it has one, only that account "
            "may accept: with its access token (`Authorization: Bearer`, a session in any of "
            "its orgs), or with its `password` and, if it has a second factor, a `code` or "
            "`recovery_code`. Errors: 400 `invalid_invitation`, `password_required`, "
            "`weak_password`, `mfa_code_required`; 401 `sign_in_required`, "
            "`invalid_credentials`, `invalid_mfa_code`; 403 `wrong_account`; 409 "
            "`invitation_used`, `already_member`; 410 `invitation_expired`, "
            "`invitation_revoked`; 429 `too_many_attempts` (passwords tried too often for this "
            "invitation or from this address, or too many tokens that were not authentic)."
        ),
        responses=problems(
            Invalid("invalid_invitation", "the token names no invitation"),
            Unauthenticated("sign_in_required", "the address has an account: prove it"),
            Unauthenticated("invalid_credentials", "the password is wrong"),
            Unauthenticated("invalid_mfa_code", "the code is wrong"),
            Forbidden("wrong_account", "signed in as another account"),
            Conflict("invitation_used", "already accepted"),
            Conflict("already_member", "a member already"),
            Gone("invitation_expired", "past its 7 days"),
            Gone("invitation_revoked", "the invitation was revoked"),
            THROTTLED,
        ),
    )
    async def accept_invitation(
        self,
        *,
        request: Request[Any, Any, State],
        db_session: NamedDependency[AsyncSession],
        settings: NamedDependency[Settings],
        throttle: NamedDependency[Throttle],
        auth_failures: NamedDependency[FailedAuthentications],
        authenticator: NamedDependency[Authenticator],
        data: JSONBody[Acceptance],
    ) -> AcceptedInvitation:
        """Accept the invitation the token names."""
        client = client_of(request)
        if data.password is not None:  # a password to set or to prove: limited like sign-in
            parsed = parse_opaque_token(invitations.TOKEN_KIND, data.token)
            await throttle.count("accept", parsed.row_id.hex if parsed else None)
        async with auth_failures.guard():
            return await invitation_acceptance.accept_invitation(
                db_session,
                settings,
                data,
                signed_in_as=await _signed_in_as(request, authenticator),
                ip=client.ip,
                user_agent=client.user_agent,
                request_id=client.request_id,
            )


async def _signed_in_as(
    request: Request[Any, Any, State], authenticator: Authenticator
) -> uuid.UUID | None:
    """The person whose access token the request carries, if it carries a credential (401 if
    the credential proves no one; None for an API key, which is no person)."""
    if not request.headers.get("authorization"):
        return None
    return await authenticator.person_of(request, bearer_token(request))
