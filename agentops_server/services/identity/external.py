"""External identities: accounts at GitHub, Google, an OIDC provider or Supabase, tied to users.

An identity is ``(provider, subject)``: the provider's stable id for the person, never their
email (emails change hands). The first time an identity is seen it is tied to a hub user:

1. an identity row ``(provider, subject)`` already names the user: that user;
2. else, when the provider vouches for the email (verified), the user with that email, if any,
   gets the identity linked;
3. else a user with that email exists but the email is unverified: refused
   (``email_not_verified``), since anyone can type someone else's address at a provider;
4. else a new user (no password: they sign in through the provider).

:func:`sign_in_external` does this for OAuth sign-in and picks the org to sign into (making a
personal org for a newcomer, as sign-up does); :func:`member_for_identity` does it for each
request carrying a Supabase token and finds the membership the request acts in.
"""

from __future__ import annotations

import dataclasses
import secrets
import uuid

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from agentops_server.db.models import OAuthIdentity, TeamMember, User
from agentops_server.db.tenancy import tenant
from agentops_server.refusals import Forbidden, Invalid
from agentops_server.security.permissions import Role
from agentops_server.services.identity.accounts import Client, choose_org, memberships_of
from agentops_server.services.identity.orgs import OrgMembership, SlugTaken, create_org_with_owner
from agentops_server.services.identity.users import (
    EmailTaken,
    InvalidEmail,
    create_user,
    normalize_email,
)
from agentops_server.slugs import slugify

__all__ = [
    "ExternalIdentity",
    "Member",
    "SignedIn",
    "member_for_identity",
    "sign_in_external",
    "user_for_identity",
]

_ATTEMPTS = 3
"""Writes that lose a race (the same newcomer signing in twice at once, a taken slug) retry."""
_RACES = (IntegrityError, EmailTaken, SlugTaken)


@dataclasses.dataclass(frozen=True, slots=True)
class ExternalIdentity:
    """Who a provider says signed in. ``email_verified`` only when the provider vouches for it."""

    provider: str
    subject: str
    email: str | None
    email_verified: bool
    name: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class SignedIn:
    """Where an external sign-in lands: the user, the org, and what was made on the way."""

    user_id: uuid.UUID
    org_id: uuid.UUID
    new_user: bool
    new_org: bool


@dataclasses.dataclass(frozen=True, slots=True)
class Member:
    """A user acting in one of their orgs."""

    user_id: uuid.UUID
    org_id: uuid.UUID
    role: Role
    team_ids: frozenset[uuid.UUID]


async def sign_in_external(
    session: AsyncSession,
    identity: ExternalIdentity,
    *,
    org_slug: str | None,
    client: Client,
    signup_open: bool = True,
) -> SignedIn:
    """The user and org an OAuth sign-in lands in; commits what it had to create.

    The org is ``org_slug`` (the user must be a member), else the user's first org, else a new
    personal org with the user as owner (audited ``org.created`` and ``member.added``, as
    sign-up does) when ``signup_open``. Checks come before writes: a refused sign-in creates
    nothing.

    The provider must vouch for the email address. Refused
    (:mod:`~agentops_server.refusals`) as ``email_required``, ``email_not_verified``,
    ``not_a_member`` or, sign-up being closed, ``no_membership``.
    """
    if not identity.email_verified:  # accounts are made and linked by address: it must be theirs
        raise Forbidden(
            "email_not_verified" if identity.email else "email_required",
            f"{identity.provider} does not vouch for an email address of this account: verify "
            "one there, then sign in again.",
        )
    for attempt in range(_ATTEMPTS):
        try:
            return await _sign_in(
                session,
                identity,
                org_slug=org_slug,
                client=client,
                attempt=attempt,
                signup_open=signup_open,
            )
        except _RACES:
            await session.rollback()
            if attempt == _ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


async def user_for_identity(session: AsyncSession, identity: ExternalIdentity) -> uuid.UUID:
    """The user of ``identity``, whatever orgs they belong to; made on first sight, as
    :func:`member_for_identity` does (accepting an invitation proves who accepts this way).

    Refused as ``email_required`` or ``email_not_verified``."""
    return await _user_for(session, identity)


async def member_for_identity(
    session: AsyncSession, identity: ExternalIdentity, *, org: str | None
) -> Member:
    """The membership a request with ``identity`` acts in: ``org`` (an org id or slug) among
    the user's orgs, else their only one. Makes the user on first sight (without an org: an
    admin invites them).

    Refused as ``email_required``, ``email_not_verified``, ``not_a_member``, ``no_membership``
    or ``org_required``."""
    user_id = await _user_for(session, identity)
    memberships = await memberships_of(session, user_id)
    if org is not None:
        chosen = _named(memberships, org)
    elif len(memberships) == 1:
        chosen = memberships[0]
    elif memberships:
        raise Invalid(
            "org_required",
            "You belong to several orgs: choose one with the X-AgentOps-Org header "
            "(its id or slug).",
        )
    else:
        raise Forbidden(
            "no_membership", "You are not a member of any org yet: ask an admin to invite you."
        )
    with tenant(org_id=chosen.id, user_id=user_id):
        teams = await session.scalars(
            select(TeamMember.team_id).where(
                TeamMember.org_id == chosen.id, TeamMember.user_id == user_id
            )
        )
        team_ids = frozenset(teams)
        await session.rollback()
    return Member(user_id, chosen.id, chosen.role, team_ids)


# --- helpers ----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class _Found:
    """What is known of the identity's user (plain values: they outlive the transaction)."""

    user_id: uuid.UUID | None
    linked: bool  # the identity row already exists
    name: str = ""
    email: str = ""


async def _sign_in(
    session: AsyncSession,
    identity: ExternalIdentity,
    *,
    org_slug: str | None,
    client: Client,
    attempt: int,
    signup_open: bool,
) -> SignedIn:
    found = await _find(session, identity)
    await session.rollback()  # read-only so far
    memberships = [] if found.user_id is None else await memberships_of(session, found.user_id)
    if org_slug is not None:
        chosen: OrgMembership | None = _named(memberships, org_slug)
    else:
        chosen = memberships[0] if memberships else None  # else a personal org, made below
    if chosen is None and not signup_open:
        raise Forbidden(
            "no_membership",
            "You are not a member of any org, and this hub makes accounts by invitation only: "
            "ask an admin to invite you.",
        )
    org_id = chosen.id if chosen is not None else uuid.uuid4()
    with tenant(org_id=org_id, user_id=found.user_id):
        user = found if found.user_id is not None else await _new_user(session, identity)
        assert user.user_id is not None
        if not found.linked:
            await _link(session, identity, user.user_id)
        if chosen is None:
            await _create_personal_org(session, org_id, user, attempt=attempt, client=client)
        await session.commit()
    return SignedIn(user.user_id, org_id, new_user=found.user_id is None, new_org=chosen is None)


async def _user_for(session: AsyncSession, identity: ExternalIdentity) -> uuid.UUID:
    """The user of ``identity``, linked or made (and committed) when first seen."""
    for attempt in range(_ATTEMPTS):
        found = await _find(session, identity)
        if found.linked and found.user_id is not None:
            await session.rollback()
            return found.user_id
        try:
            user = found if found.user_id is not None else await _new_user(session, identity)
            assert user.user_id is not None
            await _link(session, identity, user.user_id)
            await session.commit()
        except _RACES:  # the same identity's first requests, at once: one wins
            await session.rollback()
            if attempt == _ATTEMPTS - 1:
                raise
            continue
        return user.user_id
    raise AssertionError("unreachable")


async def _find(session: AsyncSession, identity: ExternalIdentity) -> _Found:
    # One statement, so one snapshot: a concurrent first sign-in of the same identity commits
    # its user and identity together, and this sees both or neither.
    linked = (
        select(OAuthIdentity.user_id)
        .where(
            OAuthIdentity.provider == identity.provider,
            OAuthIdentity.subject == identity.subject,
        )
        .scalar_subquery()
    )
    try:
        address: str | None = _address(identity)
    except Forbidden:
        address = None  # fine for a known identity; a new user cannot be made without one
    wanted = User.id == linked if address is None else or_(User.id == linked, User.email == address)
    found = (
        await session.execute(
            select(User.id, User.name, User.email, (User.id == linked).label("linked")).where(
                wanted
            )
        )
    ).all()
    for row in found:
        if row.linked:
            return _Found(row.id, linked=True, name=row.name, email=row.email)
    if not found:
        return _Found(None, linked=False)
    (row,) = found
    if not identity.email_verified:
        raise Forbidden(
            "email_not_verified",
            f"An account with {address} already exists, and {identity.provider} does not "
            "vouch for this email address: sign in to that account another way.",
        )
    return _Found(row.id, linked=False, name=row.name, email=row.email)


async def _new_user(session: AsyncSession, identity: ExternalIdentity) -> _Found:
    user = await create_user(session, email=_address(identity), password=None, name=identity.name)
    return _Found(user.id, linked=False, name=user.name, email=user.email)


def _address(identity: ExternalIdentity) -> str:
    if not identity.email:
        raise Forbidden(
            "email_required", f"{identity.provider} gave no email address for this account."
        )
    try:
        return normalize_email(identity.email)
    except InvalidEmail as exc:
        raise Forbidden(
            "email_required", f"{identity.provider} gave an email address the hub cannot use: {exc}"
        ) from exc


async def _link(session: AsyncSession, identity: ExternalIdentity, user_id: uuid.UUID) -> None:
    session.add(
        OAuthIdentity(
            provider=identity.provider,
            subject=identity.subject,
            user_id=user_id,
            email=identity.email,
        )
    )
    await session.flush()


def _named(memberships: list[OrgMembership], org: str) -> OrgMembership:
    try:
        return choose_org(memberships, org)
    except Forbidden as exc:  # no_membership or not_a_member: either way, not this org
        raise Forbidden("not_a_member", f"You are not a member of the org {org!r}.") from exc


async def _create_personal_org(
    session: AsyncSession,
    org_id: uuid.UUID,
    owner: _Found,
    *,
    attempt: int,
    client: Client,
) -> None:
    """A newcomer's own org, named after them (run as ``tenant(org_id=org_id)``)."""
    assert owner.user_id is not None
    name = owner.name or owner.email.split("@", 1)[0]
    slug = slugify(name)
    if attempt:  # the plain slug may be taken (other orgs are invisible here, so it was tried)
        slug = f"{slug[:57]}-{secrets.token_hex(3)}"
    await create_org_with_owner(
        session,
        org_id=org_id,
        name=name,
        slug=slug,
        owner_id=owner.user_id,
        owner_email=owner.email,
        actor=client.actor(owner.user_id),
    )
