"""Invitations: join an org by email, with an expiring, single-use, revocable token.

An admin invites an email address with a role (and optionally a team); the hub emails a link
holding the token ``inv_<org hex>_<invitation hex>_<secret>``. Only its SHA-256 is stored and no
answer of the API ever shows it: whoever accepts proves they read that mailbox. The token
expires after :data:`INVITATION_TTL`; resending makes a new token and expiry (the old link stops
working); inviting an address that already has a pending invitation refreshes that one.

Accepting one is :mod:`~agentops_server.services.identity.invitation_acceptance`.
Invitations follow the role rules: nobody invites (or resends, or revokes
an invitation) to a role they could not give themselves (``role_escalation``).

Every change is audited in the transaction that makes it; the email is sent before that
transaction writes anything, so a mail server that refuses leaves nothing changed.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from typing import Any

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from agentops_server.backends.mailer import Email, Mailer
from agentops_server.db.models import Invitation, Membership, Org, User
from agentops_server.refusals import (
    Conflict,
    Gone,
    Invalid,
    NotFound,
    Unavailable,
)
from agentops_server.security.permissions import Role
from agentops_server.security.principal import Principal
from agentops_server.security.tokens import (
    hash_secret,
    new_opaque_token,
)
from agentops_server.services import audit
from agentops_server.services.audit import Actor
from agentops_server.services.identity.members import check_assignable, parse_role
from agentops_server.services.identity.teams import team_exists
from agentops_server.services.identity.users import (
    InvalidEmail,
    normalize_email,
)
from agentops_server.services.row_claims import claim
from agentops_server.values import Text

__all__ = [
    "used",
    "text_or_none",
    "settle",
    "revoked",
    "no_longer_pending",
    "invalid_token",
    "INVITATION_TTL",
    "TOKEN_KIND",
    "InvitationList",
    "InvitationView",
    "NewInvitation",
    "Outbox",
    "create_invitation",
    "list_invitations",
    "resend_invitation",
    "revoke_invitation",
]

INVITATION_TTL = dt.timedelta(days=7)
TOKEN_KIND = "inv"


class NewInvitation(msgspec.Struct, forbid_unknown_fields=True):
    """Whom to invite, with which role, into which team (optional)."""

    email: Text
    role: Text
    team_id: uuid.UUID | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Outbox:
    """Where invitation emails go, and the hub's address their links point to."""

    mailer: Mailer
    public_url: str


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class InvitationView:
    """A pending invitation (never its token)."""

    id: uuid.UUID
    email: str
    role: Role
    team_id: uuid.UUID | None
    invited_by: uuid.UUID | None
    created_at: dt.datetime
    expires_at: dt.datetime
    expired: bool


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class InvitationList:
    """The org's pending invitations (expired ones too, to resend), newest first."""

    items: list[InvitationView]


async def list_invitations(session: AsyncSession, org_id: uuid.UUID) -> InvitationList:
    """The org's invitations neither accepted nor revoked, newest first."""
    rows = await session.scalars(
        select(Invitation)
        .where(
            Invitation.org_id == org_id,
            Invitation.accepted_at.is_(None),
            Invitation.revoked_at.is_(None),
        )
        .order_by(Invitation.created_at.desc())
    )
    now = dt.datetime.now(dt.UTC)
    return InvitationList(items=[_view(row, now) for row in rows])


async def create_invitation(
    session: AsyncSession,
    principal: Principal,
    actor: Actor,
    new: NewInvitation,
    outbox: Outbox,
) -> InvitationView:
    """Invite ``new.email`` (or refresh their pending invitation) and email them the link;
    audit; commit.

    Refusals: ``invalid_email``, ``invalid_role``, ``role_escalation``, ``team_not_found``,
    ``already_member``, ``mail_unavailable``.
    """
    org_id = principal.org_id
    try:
        email = normalize_email(new.email)
    except InvalidEmail as exc:
        raise Invalid("invalid_email", f"Not an email address: {exc}") from None
    role = parse_role(new.role)
    check_assignable(principal, role)
    if new.team_id is not None and not await team_exists(session, org_id, new.team_id):
        raise NotFound("team_not_found", "This org has no such team.")
    member = await session.scalar(
        select(Membership.user_id)
        .join(User, User.id == Membership.user_id)
        .where(Membership.org_id == org_id, User.email == email)
    )
    if member is not None:
        raise Conflict("already_member", "This person is already a member of the org.")
    pending = await session.scalar(
        select(Invitation)
        .where(
            Invitation.org_id == org_id,
            Invitation.email == email,
            Invitation.accepted_at.is_(None),
            Invitation.revoked_at.is_(None),
        )
        .order_by(Invitation.created_at.desc())
        .limit(1)
    )
    if pending is not None:
        check_assignable(principal, Role(pending.role))
    now = dt.datetime.now(dt.UTC)
    row = pending or Invitation(org_id=org_id, id=uuid.uuid4(), email=email, created_at=now)
    before = _state(pending) if pending else None
    token = new_opaque_token(TOKEN_KIND, org_id, row.id)
    await _send(
        session,
        outbox,
        invitation_id=row.id,
        email=email,
        role=role,
        principal=principal,
        token=token,
        expires_at=now + INVITATION_TTL,
    )
    row.role, row.team_id, row.invited_by = role.value, new.team_id, principal.user_id
    row.token_hash, row.expires_at = hash_secret(token), now + INVITATION_TTL
    session.add(row)
    await _audit_change(session, actor, "invitation.created", row, before)
    await session.commit()
    return _view(row, now)


async def resend_invitation(
    session: AsyncSession,
    principal: Principal,
    actor: Actor,
    invitation_id: uuid.UUID,
    outbox: Outbox,
) -> InvitationView:
    """Email the invitation again with a new token and expiry (the old link stops working);
    audit; commit.

    Refusals: ``invitation_not_found``, ``invitation_used``, ``invitation_revoked``,
    ``role_escalation``, ``mail_unavailable``.
    """
    row = await _pending(session, principal, invitation_id)
    now = dt.datetime.now(dt.UTC)
    before = _state(row)
    token = new_opaque_token(TOKEN_KIND, row.org_id, row.id)
    await _send(
        session,
        outbox,
        invitation_id=row.id,
        email=row.email,
        role=Role(row.role),
        principal=principal,
        token=token,
        expires_at=now + INVITATION_TTL,
    )
    if not await settle(
        session, row, token_hash=hash_secret(token), expires_at=now + INVITATION_TTL
    ):
        raise await no_longer_pending(session, row)
    await _audit_change(session, actor, "invitation.resent", row, before)
    await session.commit()
    return _view(row, now)


async def revoke_invitation(
    session: AsyncSession, principal: Principal, actor: Actor, invitation_id: uuid.UUID
) -> None:
    """Revoke the invitation: its link stops working; audit; commit. Revoking a revoked
    invitation changes nothing.

    Refusals: ``invitation_not_found``, ``invitation_used``, ``role_escalation``.
    """
    row = await _invitation(session, principal.org_id, invitation_id)
    if row.revoked_at is not None:
        return
    if row.accepted_at is not None:
        raise used()
    check_assignable(principal, Role(row.role))
    before = _state(row)
    if not await settle(session, row, revoked_at=dt.datetime.now(dt.UTC)):
        refusal = await no_longer_pending(session, row)
        if isinstance(refusal, Gone):
            return  # revoked meanwhile: the outcome asked for
        raise refusal
    await _audit_change(session, actor, "invitation.revoked", row, before)
    await session.commit()


async def _send(
    session: AsyncSession,
    outbox: Outbox,
    *,
    invitation_id: uuid.UUID,
    email: str,
    role: Role,
    principal: Principal,
    token: str,
    expires_at: dt.datetime,
) -> None:
    """Email the invitation link; ``mail_unavailable`` if the mailer refuses (nothing has been
    written yet, so nothing changes)."""
    org = await session.get_one(Org, principal.org_id)
    inviter = await session.get(User, principal.user_id) if principal.user_id else None
    who = f"{inviter.name or inviter.email}" if inviter else "An administrator"
    link = f"{outbox.public_url.rstrip('/')}/invitations/accept?token={token}"
    message = Email(
        to=email,
        subject=f"You are invited to join {org.name} on AgentOps Hub",
        text=(
            f"{who} invited you to join {org.name} on AgentOps Hub as {role.value}.\n\n"
            f"Accept the invitation here (the link works once, until "
            f"{expires_at:%Y-%m-%d %H:%M} UTC):\n\n{link}\n\n"
            "If you did not expect this invitation, ignore this email.\n"
        ),
    )
    try:
        await outbox.mailer.send(message)
    except (OSError, ValueError) as exc:
        raise Unavailable(
            "mail_unavailable",
            "The invitation email could not be sent; nothing was changed. Try again later.",
            invitation_id=str(invitation_id),
        ) from exc


async def _invitation(
    session: AsyncSession, org_id: uuid.UUID, invitation_id: uuid.UUID
) -> Invitation:
    row = await session.get(Invitation, (org_id, invitation_id))
    if row is None:
        raise NotFound("invitation_not_found", "This org has no such invitation.")
    return row


async def _pending(
    session: AsyncSession, principal: Principal, invitation_id: uuid.UUID
) -> Invitation:
    row = await _invitation(session, principal.org_id, invitation_id)
    if row.accepted_at is not None:
        raise used()
    if row.revoked_at is not None:
        raise revoked()
    check_assignable(principal, Role(row.role))
    return row


async def settle(session: AsyncSession, row: Invitation, **values: Any) -> bool:
    """Write ``values`` to the invitation only while it is pending with the token it had (one
    conditional statement: of two concurrent accepts, or an accept and a revoke, one wins)."""
    return await claim(
        session,
        row,
        Invitation.token_hash == row.token_hash,
        Invitation.accepted_at.is_(None),
        Invitation.revoked_at.is_(None),
        **values,
    )


async def no_longer_pending(session: AsyncSession, row: Invitation) -> Conflict | Gone:
    """Why ``row`` stopped being pending while this request ran."""
    await session.rollback()
    now = await session.get(Invitation, (row.org_id, row.id), populate_existing=True)
    if now is None or now.revoked_at is not None or now.token_hash != row.token_hash:
        return revoked()
    return used()


def invalid_token() -> Invalid:
    """The refusal of a token that names no invitation of this hub."""
    return Invalid("invalid_invitation", "This invitation link is not valid.")


def revoked() -> Gone:
    """The refusal of a revoked invitation."""
    return Gone("invitation_revoked", "This invitation was revoked.")


def used() -> Conflict:
    """The refusal of an invitation already accepted."""
    return Conflict("invitation_used", "This invitation has already been accepted.")


async def _audit_change(
    session: AsyncSession,
    actor: Actor,
    action: str,
    row: Invitation,
    before: dict[str, Any] | None,
) -> None:
    """Record ``action`` on the invitation: its state ``before`` and now."""
    await audit.record(
        session,
        row.org_id,
        actor,
        action,
        target_type="invitation",
        target_id=row.id,
        before=before,
        after=_state(row),
    )


def _state(row: Invitation) -> dict[str, Any]:
    """What the audit log keeps of an invitation (never its token)."""
    return {
        "email": row.email,
        "role": row.role,
        "team_id": text_or_none(row.team_id),
        "expires_at": row.expires_at.isoformat() if row.expires_at else None,
        "revoked_at": row.revoked_at.isoformat() if row.revoked_at else None,
    }


def _view(row: Invitation, now: dt.datetime) -> InvitationView:
    return InvitationView(
        id=row.id,
        email=row.email,
        role=Role(row.role),
        team_id=row.team_id,
        invited_by=row.invited_by,
        created_at=row.created_at,
        expires_at=row.expires_at,
        expired=row.expires_at <= now,
    )


def text_or_none(value: Any) -> str | None:
    """``value`` as text, None staying None (for audit snapshots)."""
    return None if value is None else str(value)
