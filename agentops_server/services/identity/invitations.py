"""Invitations: join an org by email, with an expiring, single-use, revocable token.

An admin invites an email address with a role (and optionally a team); the hub emails a link
holding the token ``inv_<org hex>_<invitation hex>_<secret>``. Only its SHA-256 is stored and no
answer of the API ever shows it: whoever accepts proves they read that mailbox. The token
expires after :data:`INVITATION_TTL`; resending makes a new token and expiry (the old link stops
working); inviting an address that already has a pending invitation refreshes that one.

Accepting (a public route) creates the membership, the user too when the hub has no account
for that email (then a name and a strong password are needed), and the team membership, and
signs the user into the org. An existing account joins only when the acceptance proves it comes
from that account: holding the link is not consent (a link is forwarded, or read on its way).
The proof is a session of that account (its access token, from any of its orgs), or, for an
account in no org any more (which has no session to show), its password and, when it has a
second factor, a code: what signing in asks, so a second factor is never skipped
(``sign_in_required``, ``wrong_account``, ``invalid_credentials``, ``mfa_code_required``,
``invalid_mfa_code``). Invitations follow the role rules: nobody invites (or resends, or revokes
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
from agentops_server.db.models import Invitation, Membership, Org, TeamMember, User
from agentops_server.db.tenancy import tenant
from agentops_server.refusals import (
    Conflict,
    Forbidden,
    Gone,
    Invalid,
    NotFound,
    Unauthenticated,
    Unavailable,
)
from agentops_server.security.passwords import WeakPassword, verify_password
from agentops_server.security.permissions import Role
from agentops_server.security.principal import Principal
from agentops_server.security.tokens import (
    hash_secret,
    new_opaque_token,
    parse_opaque_token,
    secret_matches,
)
from agentops_server.services import audit
from agentops_server.services.audit import Actor
from agentops_server.services.identity import mfa
from agentops_server.services.identity.api_keys import follow_creator
from agentops_server.services.identity.members import check_assignable, parse_role
from agentops_server.services.identity.sessions import TokenPair, start_session
from agentops_server.services.identity.teams import team_exists
from agentops_server.services.identity.users import (
    EmailTaken,
    InvalidEmail,
    create_user,
    find_user_by_email,
    normalize_email,
)
from agentops_server.services.row_claims import claim
from agentops_server.settings import Settings
from agentops_server.values import Name, Text

__all__ = [
    "INVITATION_TTL",
    "TOKEN_KIND",
    "Acceptance",
    "AcceptedInvitation",
    "InvitationList",
    "InvitationView",
    "NewInvitation",
    "Outbox",
    "accept_invitation",
    "create_invitation",
    "list_invitations",
    "resend_invitation",
    "revoke_invitation",
]

INVITATION_TTL = dt.timedelta(days=7)
TOKEN_KIND = "inv"
_MAX_TOKEN_LENGTH = 256


class NewInvitation(msgspec.Struct, forbid_unknown_fields=True):
    """Whom to invite, with which role, into which team (optional)."""

    email: Text
    role: Text
    team_id: uuid.UUID | None = None


class Acceptance(msgspec.Struct, forbid_unknown_fields=True):
    """An invitation accepted: the token from the email. A name and password make the account
    when the hub has none for the invited email yet; for an existing account signed in nowhere,
    its password (and a ``code`` or ``recovery_code`` when it has a second factor) prove it."""

    token: Text
    name: Name | None = None
    password: Text | None = None
    code: Text | None = None
    recovery_code: Text | None = None


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


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class AcceptedInvitation:
    """What accepting did; ``tokens`` are a session of the user in the org they joined."""

    org_id: uuid.UUID
    org_name: str
    user_id: uuid.UUID
    email: str
    role: Role
    team_id: uuid.UUID | None
    new_user: bool
    tokens: TokenPair


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
    if not await _settle(
        session, row, token_hash=hash_secret(token), expires_at=now + INVITATION_TTL
    ):
        raise await _no_longer_pending(session, row)
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
        raise _used()
    check_assignable(principal, Role(row.role))
    before = _state(row)
    if not await _settle(session, row, revoked_at=dt.datetime.now(dt.UTC)):
        refusal = await _no_longer_pending(session, row)
        if isinstance(refusal, Gone):
            return  # revoked meanwhile: the outcome asked for
        raise refusal
    await _audit_change(session, actor, "invitation.revoked", row, before)
    await session.commit()


async def accept_invitation(
    session: AsyncSession,
    settings: Settings,
    acceptance: Acceptance,
    *,
    signed_in_as: uuid.UUID | None = None,
    ip: str | None = None,
    user_agent: str | None = None,
    request_id: str | None = None,
) -> AcceptedInvitation:
    """Accept an invitation by its token: join the org (creating the user if needed) and sign
    in there; audit; commit. Runs as the invitation's org, whatever the caller's context. When
    the invited email has an account, ``signed_in_as`` (the user whose session the request
    carries) must be that account, or the acceptance must hold its password (and second factor).

    Refusals: ``invalid_invitation`` (unknown, malformed or tampered token),
    ``invitation_revoked``, ``invitation_used``, ``invitation_expired``, ``sign_in_required``,
    ``wrong_account``, ``invalid_credentials``, ``mfa_code_required``, ``invalid_mfa_code``,
    ``already_member``, ``password_required``, ``weak_password``, ``email_taken``.
    """
    parsed = (
        parse_opaque_token(TOKEN_KIND, acceptance.token)
        if len(acceptance.token) <= _MAX_TOKEN_LENGTH
        else None
    )
    if parsed is None:
        raise _invalid_token()
    org_id = parsed.owner_id
    with tenant(org_id=org_id):
        row = await session.get(Invitation, (org_id, parsed.row_id))
        if row is None or not secret_matches(acceptance.token, row.token_hash):
            raise _invalid_token()
        now = dt.datetime.now(dt.UTC)
        if row.revoked_at is not None:
            raise _revoked()
        if row.accepted_at is not None:
            raise _used()
        if row.expires_at <= now:
            raise Gone("invitation_expired", "This invitation has expired: ask for a new one.")
        user = await find_user_by_email(session, row.email)
        new_user = user is None
        if user is None:
            user = await _new_user(session, row.email, acceptance)
        else:
            await _prove_account(session, settings, user, signed_in_as, acceptance)
            if await session.get(Membership, (org_id, user.id)) is not None:
                raise Conflict("already_member", "You are already a member of this org.")
        if not await _settle(session, row, accepted_at=now):
            raise await _no_longer_pending(session, row)
        team_id = row.team_id
        if team_id is not None and not await team_exists(session, org_id, team_id):
            team_id = None  # the team was deleted since: join the org without it
        session.add(Membership(org_id=org_id, user_id=user.id, role=row.role, created_at=now))
        if team_id is not None:
            await session.flush()  # the membership first: the team row refers to it
            session.add(TeamMember(org_id=org_id, team_id=team_id, user_id=user.id))
        actor = Actor("user", user.id, ip, request_id)
        if not new_user:  # someone who left and comes back: their old keys follow them again
            await follow_creator(session, org_id, actor, user.id, before=None, after=Role(row.role))
        await audit.record(
            session,
            org_id,
            actor,
            "invitation.accepted",
            target_type="invitation",
            target_id=row.id,
            before={"accepted_at": None},
            after={"accepted_at": now.isoformat(), "user_id": str(user.id)},
        )
        await audit.record(
            session,
            org_id,
            actor,
            "member.added",
            target_type="member",
            target_id=user.id,
            after={
                "email": user.email,
                "role": row.role,
                "team_id": _text(team_id),
                "invitation_id": str(row.id),
                "new_user": new_user,
            },
        )
        org_name = (await session.get_one(Org, org_id)).name
        tokens = await start_session(  # commits everything above with the session
            session,
            settings,
            user_id=user.id,
            org_id=org_id,
            method="invitation",
            ip=ip,
            user_agent=user_agent,
        )
    return AcceptedInvitation(
        org_id=org_id,
        org_name=org_name,
        user_id=user.id,
        email=user.email,
        role=Role(row.role),
        team_id=team_id,
        new_user=new_user,
        tokens=tokens,
    )


async def _prove_account(
    session: AsyncSession,
    settings: Settings,
    user: User,
    signed_in_as: uuid.UUID | None,
    acceptance: Acceptance,
) -> None:
    """Only the invited account itself accepts for it: signed in, or with its password (and
    second factor)."""
    if signed_in_as is not None:
        if signed_in_as != user.id:
            raise Forbidden(
                "wrong_account",
                "This invitation is for another account: sign in as the invited one to accept.",
            )
        return
    if acceptance.password is None:
        raise Unauthenticated(
            "sign_in_required",
            f"{user.email} has an account: accept signed in as it (its access token), or with "
            "its password.",
        )
    if not await verify_password(acceptance.password, user.password_hash):
        raise Unauthenticated("invalid_credentials", "The password is wrong.")
    if await mfa.enabled_kinds(session, user.id):
        if acceptance.code is None and acceptance.recovery_code is None:
            raise Invalid("mfa_code_required", "This account has a second factor: send a code too.")
        await mfa.verify_second_factor(
            session, settings, user.id, code=acceptance.code, recovery_code=acceptance.recovery_code
        )


async def _new_user(session: AsyncSession, email: str, acceptance: Acceptance) -> User:
    if not acceptance.password:
        raise Invalid(
            "password_required", "You have no account yet: choose a password (and your name)."
        )
    try:
        return await create_user(
            session, email=email, password=acceptance.password, name=acceptance.name or ""
        )
    except WeakPassword as exc:
        raise Invalid("weak_password", str(exc)) from None
    except EmailTaken:
        raise Conflict(
            "email_taken", "An account with this email was just created: accept again."
        ) from None


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
        raise _used()
    if row.revoked_at is not None:
        raise _revoked()
    check_assignable(principal, Role(row.role))
    return row


async def _settle(session: AsyncSession, row: Invitation, **values: Any) -> bool:
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


async def _no_longer_pending(session: AsyncSession, row: Invitation) -> Conflict | Gone:
    """Why ``row`` stopped being pending while this request ran."""
    await session.rollback()
    now = await session.get(Invitation, (row.org_id, row.id), populate_existing=True)
    if now is None or now.revoked_at is not None or now.token_hash != row.token_hash:
        return _revoked()
    return _used()


def _invalid_token() -> Invalid:
    return Invalid("invalid_invitation", "This invitation link is not valid.")


def _revoked() -> Gone:
    return Gone("invitation_revoked", "This invitation was revoked.")


def _used() -> Conflict:
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
        "team_id": _text(row.team_id),
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


def _text(value: Any) -> str | None:
    return None if value is None else str(value)
