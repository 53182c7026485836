"""Accepting an invitation: the token from the email is the credential.

Accepting (a public route) creates the membership, the user too when the hub has no account
for that email (then a name and a strong password are needed), and the team membership, and
signs the user into the org. An existing account joins only when the acceptance proves it comes
from that account: holding the link is not consent (a link is forwarded, or read on its way).
The proof is a session of that account (its access token, from any of its orgs), or, for an
account in no org any more (which has no session to show), its password and, when it has a
second factor, a code: what signing in asks, so a second factor is never skipped
(``sign_in_required``, ``wrong_account``, ``invalid_credentials``, ``mfa_code_required``,
``invalid_mfa_code``). Accepting is audited in the transaction that makes it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession

from agentops_server.db.models import Invitation, Membership, Org, TeamMember, User
from agentops_server.db.tenancy import tenant
from agentops_server.refusals import (
    Conflict,
    Forbidden,
    Gone,
    Invalid,
    Unauthenticated,
)
from agentops_server.security.passwords import WeakPassword, verify_password
from agentops_server.security.permissions import Role
from agentops_server.security.tokens import (
    parse_opaque_token,
    secret_matches,
)
from agentops_server.services import audit
from agentops_server.services.audit import Actor
from agentops_server.services.identity import mfa
from agentops_server.services.identity.api_keys import follow_creator
from agentops_server.services.identity.invitations import (
    TOKEN_KIND,
    invalid_token,
    no_longer_pending,
    revoked,
    settle,
    text_or_none,
    used,
)
from agentops_server.services.identity.sessions import TokenPair, start_session
from agentops_server.services.identity.teams import team_exists
from agentops_server.services.identity.users import (
    EmailTaken,
    create_user,
    find_user_by_email,
)
from agentops_server.settings import Settings
from agentops_server.values import Name, Text

__all__ = ["Acceptance", "AcceptedInvitation", "accept_invitation"]

_MAX_TOKEN_LENGTH = 256


class Acceptance(msgspec.Struct, forbid_unknown_fields=True):
    """An invitation accepted: the token from the email. A name and password make the account
    when the hub has none for the invited email yet; for an existing account signed in nowhere,
    its password (and a ``code`` or ``recovery_code`` when it has a second factor) prove it."""

    token: Text
    name: Name | None = None
    password: Text | None = None
    code: Text | None = None
    recovery_code: Text | None = None


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
        raise invalid_token()
    org_id = parsed.owner_id
    with tenant(org_id=org_id):
        row = await session.get(Invitation, (org_id, parsed.row_id))
        if row is None or not secret_matches(acceptance.token, row.token_hash):
            raise invalid_token()
        now = dt.datetime.now(dt.UTC)
        if row.revoked_at is not None:
            raise revoked()
        if row.accepted_at is not None:
            raise used()
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
        if not await settle(session, row, accepted_at=now):
            raise await no_longer_pending(session, row)
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
                "team_id": text_or_none(team_id),
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
