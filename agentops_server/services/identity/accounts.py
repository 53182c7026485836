"""Accounts: signing up, signing in (with a second factor), the profile.

- :func:`signup` makes an org, its first user (the owner) and a session, in one transaction.
- :func:`sign_in` checks an email and password and answers with tokens, or with a short-lived
  ``mfa`` token when the user has a second factor; :func:`finish_sign_in` trades that token and
  a code for tokens. Wrong password and unknown email are the same error, in the same time.

Sign-in runs on public routes, as nobody: it reads the global identity tables, then acts as the
user (their memberships) or as one org (writes), committing between tenants. Passwords change in
:mod:`~agentops_server.services.identity.password_changes`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from agentops_server.db.models import User
from agentops_server.db.tenancy import tenant
from agentops_server.refusals import Conflict, Forbidden, Invalid, NotFound, Unauthenticated
from agentops_server.security.passwords import (
    WeakPassword,
    check_strength,
    hash_password,
    needs_rehash,
    verify_password,
)
from agentops_server.security.tokens import (
    InvalidToken,
    decode_token,
    encode_token,
)
from agentops_server.services import audit
from agentops_server.services.identity import mfa, orgs, sessions
from agentops_server.services.identity.orgs import OrgMembership, SlugTaken
from agentops_server.services.identity.users import (
    InvalidEmail,
    find_user_by_email,
    new_user,
    normalize_email,
)
from agentops_server.settings import Settings
from agentops_server.values import clean_name

__all__ = [
    "MFA_TOKEN_TTL",
    "AccountView",
    "Client",
    "MfaChallenge",
    "OrgMembership",
    "PendingSignIn",
    "SignedUp",
    "UserProfile",
    "account",
    "choose_org",
    "finish_sign_in",
    "get_user",
    "memberships_of",
    "read_mfa_token",
    "rename",
    "sign_in",
    "signup",
    "switch_org",
]

MFA_TOKEN_TTL = 300
"""Seconds between the password step and the second-factor step of a sign-in."""
_MFA_PURPOSE = "mfa"


@dataclasses.dataclass(frozen=True, slots=True)
class Client:
    """Where a request comes from, for sessions and the audit log."""

    ip: str | None = None
    user_agent: str | None = None
    request_id: str | None = None

    def actor(self, user_id: uuid.UUID) -> audit.Actor:
        """``user_id`` acting from here."""
        return audit.Actor("user", user_id, self.ip, self.request_id)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class UserProfile:
    """A user as they see themselves."""

    id: uuid.UUID
    email: str
    name: str
    mfa_enabled: bool
    mfa_methods: list[str]
    """Kinds of confirmed second factors (``totp``)."""
    created_at: dt.datetime


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class SignedUp:
    """What sign-up made: the user, their org, and a session in it."""

    user: UserProfile
    org: OrgMembership
    tokens: sessions.TokenPair


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class AccountView:
    """``GET /me``: the user, the org of this session, and every org they belong to."""

    user: UserProfile
    org: OrgMembership
    session_id: uuid.UUID | None
    """None for an external identity's token (Supabase), which is no hub session."""
    orgs: list[OrgMembership]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class MfaChallenge:
    """The password was right; now a code of a second factor (``POST /auth/login/mfa``)."""

    mfa_token: str
    expires_in: int
    methods: list[str]
    """Second-factor kinds the user has; a recovery code always works too."""
    mfa_required: bool = True


@dataclasses.dataclass(frozen=True, slots=True)
class PendingSignIn:
    """What an ``mfa`` token says: who passed the password step, for which org."""

    user_id: uuid.UUID
    org_id: uuid.UUID


# -- sign-up -------------------------------------------------------------------------------------


async def signup(
    session: AsyncSession,
    settings: Settings,
    *,
    email: str,
    password: str,
    name: str,
    org_name: str,
    org_slug: str | None = None,
    client: Client = Client(),
) -> SignedUp:
    """Make an org named ``org_name``, its owner and a signed-in session; commit.

    The org's slug is ``org_slug`` or made from its name; a taken slug is refused
    (``slug_taken``), never silently changed.
    """
    try:
        address = normalize_email(email)
        check_strength(password, email=address)
    except InvalidEmail as exc:
        raise Invalid("invalid_email", f"This is not an email address: {exc}") from exc
    except WeakPassword as exc:
        raise Invalid("weak_password", f"The password is too weak: {exc}") from exc
    try:
        org_name = clean_name(org_name, what="org")
    except Invalid as exc:  # sign-up has two names: say which one
        raise Invalid("invalid_org_name", exc.detail) from exc
    slug = orgs.org_slug(org_name, org_slug)
    org_id = uuid.uuid4()
    with tenant(org_id=org_id):
        user = await new_user(session, email=address, password=password, name=name)
        try:
            org = await orgs.create_org_with_owner(
                session,
                org_id=org_id,
                name=org_name,
                slug=slug,
                owner_id=user.id,
                owner_email=user.email,
                actor=client.actor(user.id),
            )
        except SlugTaken as exc:
            raise Conflict(
                "slug_taken",
                f"An org with the slug {slug!r} already exists; choose another org_slug.",
            ) from exc
        tokens = await sessions.start_session(
            session,
            settings,
            user_id=user.id,
            org_id=org_id,
            method="signup",
            ip=client.ip,
            user_agent=client.user_agent,
        )
    return SignedUp(user=_profile(user, []), org=org, tokens=tokens)


# -- sign-in -------------------------------------------------------------------------------------


async def sign_in(
    session: AsyncSession,
    settings: Settings,
    *,
    email: str,
    password: str,
    org: str | None = None,
    client: Client = Client(),
) -> sessions.TokenPair | MfaChallenge:
    """Check ``email`` and ``password`` and open a session in ``org`` (an id or slug; by
    default the user's oldest membership), or ask for a second factor first.

    Refused as ``invalid_credentials`` (wrong password and unknown email alike, in the same
    time), ``no_membership`` or ``not_a_member``.
    """
    user = await find_user_by_email(session, email)
    if not await verify_password(password, user.password_hash if user else None):
        raise Unauthenticated("invalid_credentials", "The email or password is wrong.")
    assert user is not None
    assert user.password_hash is not None
    if needs_rehash(user.password_hash):
        user.password_hash = await hash_password(password)
    methods = await mfa.enabled_kinds(session, user.id)
    await session.commit()
    chosen = choose_org(await memberships_of(session, user.id), org)
    if methods:
        token = encode_token(
            settings.secret_key,
            _MFA_PURPOSE,
            {"sub": str(user.id), "org": str(chosen.id)},
            ttl=MFA_TOKEN_TTL,
        )
        return MfaChallenge(mfa_token=token, expires_in=MFA_TOKEN_TTL, methods=methods)
    return await sessions.start_session(
        session,
        settings,
        user_id=user.id,
        org_id=chosen.id,
        method="password",
        ip=client.ip,
        user_agent=client.user_agent,
    )


def read_mfa_token(settings: Settings, token: str) -> PendingSignIn:
    """Who a sign-in's ``mfa`` token is for; ``invalid_mfa_token`` or ``mfa_token_expired``."""
    try:
        claims = decode_token(settings.secret_key, _MFA_PURPOSE, token)
        return PendingSignIn(uuid.UUID(claims["sub"]), uuid.UUID(claims["org"]))
    except InvalidToken as exc:
        if exc.code == "token_expired":
            raise Unauthenticated(
                "mfa_token_expired", "The sign-in took too long; sign in again."
            ) from exc
        raise Unauthenticated("invalid_mfa_token", "The mfa_token is not valid.") from exc
    except (KeyError, ValueError, TypeError) as exc:
        raise Unauthenticated("invalid_mfa_token", "The mfa_token is not valid.") from exc


async def finish_sign_in(
    session: AsyncSession,
    settings: Settings,
    pending: PendingSignIn,
    *,
    code: str | None = None,
    recovery_code: str | None = None,
    client: Client = Client(),
) -> sessions.TokenPair:
    """Check a second-factor ``code`` (or a ``recovery_code``) and open the session."""
    used = await mfa.verify_second_factor(
        session, settings, pending.user_id, code=code, recovery_code=recovery_code
    )
    return await sessions.start_session(
        session,
        settings,
        user_id=pending.user_id,
        org_id=pending.org_id,
        method=f"password+{used}",
        ip=client.ip,
        user_agent=client.user_agent,
    )


async def memberships_of(session: AsyncSession, user_id: uuid.UUID) -> list[OrgMembership]:
    """Every org of ``user_id``, oldest membership first. Runs as the user (it sees their
    memberships in every org) and commits that read."""
    with tenant(user_id=user_id):
        found = await orgs.orgs_of(session, user_id)
        await session.commit()
    return found


def choose_org(memberships: Sequence[OrgMembership], wanted: str | None) -> OrgMembership:
    """The membership ``wanted`` names (an org id or slug), by default the first one."""
    if not memberships:
        raise Forbidden("no_membership", "You belong to no org; ask for an invitation.")
    if wanted is None:
        return memberships[0]
    for membership in memberships:
        if wanted.strip().lower() in (membership.slug, str(membership.id)):
            return membership
    raise Forbidden("not_a_member", f"You are not a member of the org {wanted!r}.")


# -- the signed-in user ----------------------------------------------------------------------------


async def account(
    session: AsyncSession, user_id: uuid.UUID, org_id: uuid.UUID, session_id: uuid.UUID | None
) -> AccountView:
    """The user, their role in ``org_id`` (this session's) and all their orgs. Runs as the
    request's tenant: the user sees their own memberships in every org."""
    user = await get_user(session, user_id)
    memberships = await orgs.orgs_of(session, user_id)
    current = next(membership for membership in memberships if membership.id == org_id)
    return AccountView(
        user=_profile(user, await mfa.enabled_kinds(session, user_id)),
        org=current,
        session_id=session_id,
        orgs=memberships,
    )


async def rename(session: AsyncSession, user_id: uuid.UUID, name: str) -> UserProfile:
    """Change the user's display name; commit."""
    user = await get_user(session, user_id)
    user.name = " ".join(name.split())[:200]
    methods = await mfa.enabled_kinds(session, user_id)
    await session.commit()
    return _profile(user, methods)


async def switch_org(
    session: AsyncSession,
    settings: Settings,
    user_id: uuid.UUID,
    wanted: str,
    *,
    client: Client = Client(),
) -> sessions.TokenPair:
    """A new session of the user in another of their orgs (``wanted``: id or slug). Call it
    with no transaction open: it runs as the user, then as the chosen org."""
    chosen = choose_org(await memberships_of(session, user_id), wanted)
    return await sessions.start_session(
        session,
        settings,
        user_id=user_id,
        org_id=chosen.id,
        method="switch",
        ip=client.ip,
        user_agent=client.user_agent,
    )


# -- helpers -------------------------------------------------------------------------------------


async def get_user(session: AsyncSession, user_id: uuid.UUID) -> User:
    """The user ``user_id`` (a global row: any tenant sees it)."""
    user = await session.scalar(select(User).where(User.id == user_id))
    if user is None:  # the middleware checked the membership, so the user exists
        raise NotFound("user_not_found", "This user no longer exists.")
    return user


def _profile(user: User, methods: list[str]) -> UserProfile:
    return UserProfile(
        id=user.id,
        email=user.email,
        name=user.name,
        mfa_enabled=bool(methods),
        mfa_methods=methods,
        created_at=user.created_at,
    )
