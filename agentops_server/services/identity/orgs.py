"""The org itself: its profile (name, slug, plan, region, logo), creating more orgs, deleting one.

- **Profile.** Name and slug are settings (``settings:write``); the plan and the region belong
  to owners (``owners:manage``, else ``owner_required``), and take values from :data:`PLANS`
  and :data:`REGIONS`. Slugs are unique across the hub (``slug_taken``).
- **Logo.** Either an external ``https`` URL (here) or an uploaded image
  (:mod:`~agentops_server.services.identity.org_logos`), one at a time.
- **More orgs.** A signed-in person creates another org and becomes its owner. Every org is
  made here, audited: by :func:`create_org_with_owner` (sign-up and a first external sign-in
  too: the org, its owner's membership, the ``org.created`` and ``member.added`` audit
  entries), or by :func:`bootstrap_org` (the CLI and the demo: the org, optionally its owner,
  and a key of the org with every scope, audited ``api_key.created`` too).
- **Deleting** the org removes every row it has, its audit log included: an org's log lives and
  dies with it (the hub's own log keeps one ``org deleted`` line).

Every change is audited in the transaction that makes it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import unicodedata
import uuid
from typing import Any
from urllib.parse import urlsplit

import msgspec
import structlog
from sqlalchemy import delete, exists, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from agentops_server.db.models import Base, Membership, Org, OrgLogo, User
from agentops_server.db.tenancy import tenant
from agentops_server.refusals import Conflict, Forbidden, Invalid, NotFound
from agentops_server.security.api_keys import SCOPES
from agentops_server.security.permissions import Permission, Role
from agentops_server.security.principal import Principal
from agentops_server.services import audit
from agentops_server.services.audit import SYSTEM, Actor
from agentops_server.services.identity.api_keys import IssuedKey, issue_org_key
from agentops_server.services.identity.users import new_user
from agentops_server.slugs import SLUG_PATTERN, slugify
from agentops_server.values import Name, Text, clean_name

__all__ = [
    "LOGO_URL_MAX_LENGTH",
    "MAX_RETENTION_DAYS",
    "MIN_RETENTION_DAYS",
    "PLANS",
    "REGIONS",
    "NewOrg",
    "OrgChanges",
    "OrgList",
    "OrgMembership",
    "OrgProfile",
    "SlugTaken",
    "check_slug",
    "ensure_owner",
    "bootstrap_org",
    "create_org",
    "create_org_with_owner",
    "delete_org",
    "get_profile",
    "list_orgs",
    "org_slug",
    "org_row",
    "orgs_of",
    "update_profile",
]

logger = structlog.stdlib.get_logger("agentops_server.orgs")

PLANS = ("free", "team", "business", "enterprise")
REGIONS = ("default", "us", "eu", "ap")
LOGO_URL_MAX_LENGTH = 2048
MIN_RETENTION_DAYS = 1
MAX_RETENTION_DAYS = 3650


_DELETED_WITH_THE_ORG = frozenset({"orgs", "audit_log"})
"""Tables the org-wide delete does not empty itself: the org row last, and the append-only
audit log, whose rows its foreign key's ``ON DELETE CASCADE`` removes with the org row (its
triggers refuse any other delete while the org exists)."""


class OrgChanges(msgspec.Struct, forbid_unknown_fields=True):
    """A change to the org's profile: only the fields given change (``logo_url`` null: none)."""

    name: Name | msgspec.UnsetType = msgspec.UNSET
    slug: Text | msgspec.UnsetType = msgspec.UNSET
    logo_url: Text | msgspec.UnsetType | None = msgspec.UNSET
    plan: Text | msgspec.UnsetType = msgspec.UNSET
    region: Text | msgspec.UnsetType = msgspec.UNSET
    retention_days: int | msgspec.UnsetType = msgspec.UNSET
    """Days raw runs and spans are kept (``MIN_RETENTION_DAYS`` to ``MAX_RETENTION_DAYS``)."""


class NewOrg(msgspec.Struct, forbid_unknown_fields=True):
    """Another org for the signed-in person; the slug defaults to one made from the name."""

    name: Name
    slug: Text | None = None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class OrgProfile:
    """The org as its members see it. ``logo_uploaded``: fetch the logo from
    ``/api/v1/org/logo``; else ``logo_url``, if any, is where it is."""

    id: uuid.UUID
    name: str
    slug: str
    plan: str
    region: str
    logo_url: str | None
    logo_uploaded: bool
    retention_days: int
    """Days raw runs and spans are kept; older ones are deleted by the retention job."""
    created_at: dt.datetime
    updated_at: dt.datetime | None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class OrgMembership:
    """An org a person belongs to, their role there and since when."""

    id: uuid.UUID
    name: str
    slug: str
    role: Role
    joined_at: dt.datetime


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class OrgList:
    """The orgs of the signed-in person, by name."""

    items: list[OrgMembership]


class SlugTaken(Conflict):
    """Another org has the slug (``slug_taken``)."""

    def __init__(self, slug: str) -> None:
        super().__init__("slug_taken", f"Another org already has the slug {slug!r}.")
        self.slug = slug


def check_slug(value: str) -> str:
    """``value`` if it is a valid slug; ``invalid_slug`` otherwise."""
    if not re.fullmatch(SLUG_PATTERN, value):
        raise Invalid(
            "invalid_slug",
            "A slug has 1 to 64 lower-case letters, digits and inner hyphens (acme-corp).",
        )
    return value


def org_slug(name: str, wanted: str | None) -> str:
    """The slug of a new org: ``wanted``, checked (``invalid_slug``), or one made from ``name``."""
    return slugify(name) if wanted is None else check_slug(wanted)


async def get_profile(session: AsyncSession, org_id: uuid.UUID) -> OrgProfile:
    """The org's profile."""
    org = await org_row(session, org_id)
    uploaded = await session.scalar(select(exists().where(OrgLogo.org_id == org_id)))
    return _profile(org, bool(uploaded))


async def update_profile(
    session: AsyncSession, principal: Principal, actor: Actor, changes: OrgChanges
) -> OrgProfile:
    """Apply ``changes`` to the org's profile; audit what changed; commit.

    Refusals: ``invalid_name``, ``invalid_slug``, ``invalid_logo_url``, ``owner_required``,
    ``invalid_plan``, ``invalid_region``, ``invalid_retention``, ``slug_taken``.
    """
    org = await org_row(session, principal.org_id)
    wanted: dict[str, Any] = {}
    if not isinstance(changes.name, msgspec.UnsetType):
        wanted["name"] = clean_name(changes.name, what="org")
    if not isinstance(changes.slug, msgspec.UnsetType):
        wanted["slug"] = check_slug(changes.slug)
    if not isinstance(changes.logo_url, msgspec.UnsetType):
        wanted["logo_url"] = None if changes.logo_url is None else _logo_url(changes.logo_url)
    if not isinstance(changes.retention_days, msgspec.UnsetType):
        wanted["retention_days"] = _retention_days(changes.retention_days)
    for field, allowed in (("plan", PLANS), ("region", REGIONS)):
        value = getattr(changes, field)
        if isinstance(value, msgspec.UnsetType) or value == getattr(org, field):
            continue
        if not principal.can(Permission.OWNERS_MANAGE):
            raise Forbidden("owner_required", f"Only an owner may change the org's {field}.")
        if value not in allowed:
            raise Invalid(f"invalid_{field}", f"The {field} is one of {', '.join(allowed)}.")
        wanted[field] = value
    changed = {field: value for field, value in wanted.items() if getattr(org, field) != value}
    if not changed:
        return await get_profile(session, org.id)
    before = {field: getattr(org, field) for field in changed}
    after = dict(changed)
    if changed.get("logo_url") is not None and await _drop_upload(session, org.id):
        before["logo_uploaded"], after["logo_uploaded"] = True, False
    for field, value in changed.items():
        setattr(org, field, value)
    org.updated_at = dt.datetime.now(dt.UTC)
    await audit.record(
        session,
        org.id,
        actor,
        "org.updated",
        target_type="org",
        target_id=org.id,
        before=before,
        after=after,
    )
    await _flush_unless_slug_taken(session, changed.get("slug"))
    await session.commit()
    return await get_profile(session, org.id)


async def orgs_of(session: AsyncSession, user_id: uuid.UUID) -> list[OrgMembership]:
    """Every org of ``user_id`` with their role there, oldest membership first, as far as the
    current tenant sees (a user sees their own memberships in every org)."""
    rows = await session.execute(
        select(Org.id, Org.name, Org.slug, Membership.role, Membership.created_at)
        .join(Membership, Membership.org_id == Org.id)
        .where(Membership.user_id == user_id)
        .order_by(Membership.created_at, Org.id)
    )
    return [
        OrgMembership(id=org_id, name=name, slug=slug, role=Role(role), joined_at=joined_at)
        for org_id, name, slug, role, joined_at in rows
    ]


async def list_orgs(session: AsyncSession, user_id: uuid.UUID) -> OrgList:
    """The orgs ``user_id`` belongs to, by name, with their role in each."""
    orgs = await orgs_of(session, user_id)
    return OrgList(items=sorted(orgs, key=lambda org: (org.name.casefold(), org.name, org.slug)))


async def create_org(
    session: AsyncSession, user_id: uuid.UUID, actor: Actor, new: NewOrg
) -> OrgProfile:
    """Create an org with ``user_id`` as its owner (:func:`create_org_with_owner`); commit.

    The slug is ``new.slug`` or made from the name; a taken slug is refused, never changed.
    Refusals: ``invalid_name``, ``invalid_slug``, ``slug_taken``.
    """
    name = clean_name(new.name, what="org")
    slug = org_slug(name, new.slug)
    owner_email = await session.scalar(select(User.email).where(User.id == user_id))
    assert owner_email is not None  # the signed-in person exists
    org_id = uuid.uuid4()
    await session.rollback()  # end the request's transaction: the next one acts as the new org
    with tenant(org_id=org_id, user_id=user_id):
        await create_org_with_owner(
            session,
            org_id=org_id,
            name=name,
            slug=slug,
            owner_id=user_id,
            owner_email=owner_email,
            actor=actor,
        )
        await session.commit()
        return await get_profile(session, org_id)


async def create_org_with_owner(
    session: AsyncSession,
    *,
    org_id: uuid.UUID,
    name: str,
    slug: str,
    owner_id: uuid.UUID,
    owner_email: str,
    actor: Actor,
) -> OrgMembership:
    """Add the org ``org_id`` with the user ``owner_id`` as its owner, audited ``org.created``
    and ``member.added`` in the new org (flushed, not committed); the owner's membership.

    Run it as ``tenant(org_id=org_id)``. ``name`` and ``slug`` are valid already; a slug
    another org has is refused as :class:`SlugTaken`, after rolling the transaction back.
    """
    now = dt.datetime.now(dt.UTC)  # explicit: SQLite's CURRENT_TIMESTAMP has whole seconds
    await _add_org(session, org_id, name=name, slug=slug, actor=actor, now=now)
    await _add_owner(
        session, org_id, owner_id=owner_id, owner_email=owner_email, actor=actor, now=now
    )
    await session.flush()
    return OrgMembership(id=org_id, name=name, slug=slug, role=Role.OWNER, joined_at=now)


async def bootstrap_org(
    session: AsyncSession,
    name: str,
    *,
    owner_email: str | None = None,
    owner_password: str = "",
    actor: Actor = SYSTEM,
) -> IssuedKey:
    """Create the org ``name`` (its slug made from the name) with one API key of the org
    carrying every scope, and optionally its owner, a new user with ``owner_email`` and
    ``owner_password``; audited in the new org (``org.created``, ``member.added``,
    ``api_key.created``); commit. The key as issued (its secret shown once).

    What ``agentops-hub bootstrap`` and the demo do. Refusals: ``invalid_name``,
    ``slug_taken`` (:class:`SlugTaken`), ``invalid_email``, ``weak_password``, ``email_taken``.
    """
    name = clean_name(name, what="org")
    slug = slugify(name)
    org_id = uuid.uuid4()
    now = dt.datetime.now(dt.UTC)
    with tenant(org_id=org_id):
        await _add_org(session, org_id, name=name, slug=slug, actor=actor, now=now)
        if owner_email is not None:
            owner = await new_user(session, email=owner_email, password=owner_password)
            await _add_owner(
                session,
                org_id,
                owner_id=owner.id,
                owner_email=owner.email,
                actor=actor,
                now=now,
            )
        issued = await issue_org_key(session, org_id, actor, name="bootstrap", scopes=SCOPES)
        await session.commit()
    return issued


async def ensure_owner(
    session: AsyncSession, org_id: uuid.UUID, email: str, *, actor: Actor = SYSTEM
) -> uuid.UUID:
    """An owner of the org: its first, or else a new user ``email`` without a password made its
    owner (audited ``member.added``; commit). How the demo finds whom its sign-in link signs in.
    """
    with tenant(org_id=org_id):
        found = await session.scalar(
            select(Membership.user_id)
            .where(Membership.org_id == org_id, Membership.role == Role.OWNER.value)
            .order_by(Membership.created_at, Membership.user_id)
            .limit(1)
        )
        if found is not None:
            return found
        owner = await new_user(session, email=email, password=None, name="Demo owner")
        await _add_owner(
            session,
            org_id,
            owner_id=owner.id,
            owner_email=owner.email,
            actor=actor,
            now=dt.datetime.now(dt.UTC),
        )
        await session.commit()
        return owner.id


async def _add_org(
    session: AsyncSession,
    org_id: uuid.UUID,
    *,
    name: str,
    slug: str,
    actor: Actor,
    now: dt.datetime,
) -> None:
    """Add the org, audited ``org.created``; :class:`SlugTaken` when another org has ``slug``."""
    session.add(Org(id=org_id, name=name, slug=slug, created_at=now))
    await _flush_unless_slug_taken(session, slug)  # other orgs are invisible: the index says
    await audit.record(
        session,
        org_id,
        actor,
        "org.created",
        target_type="org",
        target_id=org_id,
        after={"name": name, "slug": slug},
    )


async def _add_owner(
    session: AsyncSession,
    org_id: uuid.UUID,
    *,
    owner_id: uuid.UUID,
    owner_email: str,
    actor: Actor,
    now: dt.datetime,
) -> None:
    """Make ``owner_id`` an owner of the org, audited ``member.added``."""
    session.add(Membership(org_id=org_id, user_id=owner_id, role=Role.OWNER.value, created_at=now))
    await audit.record(
        session,
        org_id,
        actor,
        "member.added",
        target_type="member",
        target_id=owner_id,
        after={"email": owner_email, "role": Role.OWNER.value},
    )


async def delete_org(session: AsyncSession, principal: Principal, confirm: str | None) -> None:
    """Delete the org and every row it has, its audit log included; commit.

    ``confirm`` must be the org's slug (``confirmation_required`` otherwise): deleting an org
    cannot be undone.
    """
    org = await org_row(session, principal.org_id)
    if confirm != org.slug:
        raise Invalid(
            "confirmation_required",
            'Deleting an org cannot be undone: send {"confirm": "<the org\'s slug>"}.',
        )
    for table in reversed(Base.metadata.sorted_tables):  # rows that refer to others go first
        if "org_id" in table.c and table.name not in _DELETED_WITH_THE_ORG:
            await session.execute(delete(table).where(table.c.org_id == org.id))
    await session.execute(
        delete(Org).where(Org.id == org.id).execution_options(synchronize_session=False)
    )
    await session.commit()
    logger.info("org deleted", org_id=str(org.id), slug=org.slug, by=str(principal.actor_id))


def _retention_days(value: int) -> int:
    if not MIN_RETENTION_DAYS <= value <= MAX_RETENTION_DAYS:
        raise Invalid(
            "invalid_retention",
            f"retention_days is from {MIN_RETENTION_DAYS} to {MAX_RETENTION_DAYS}.",
        )
    return value


def _logo_url(value: str) -> str:
    url = value.strip()
    problem = None
    if len(url) > LOGO_URL_MAX_LENGTH:
        problem = f"is at most {LOGO_URL_MAX_LENGTH} characters"
    elif any(char.isspace() or unicodedata.category(char) == "Cc" for char in url):
        problem = "cannot hold spaces or control characters"
    else:
        try:
            parts = urlsplit(url)
            valid = parts.scheme == "https" and bool(parts.hostname) and not parts.username
        except ValueError:
            valid = False
        if not valid:
            problem = "must be an https:// URL with a host (and no user name)"
    if problem is not None:
        raise Invalid("invalid_logo_url", f"The logo URL {problem}.")
    return url


async def org_row(session: AsyncSession, org_id: uuid.UUID) -> Org:
    """The org's row; ``org_not_found`` if it no longer exists."""
    org = await session.get(Org, org_id)
    if org is None:  # the caller's org: gone only if it was deleted during the request
        raise NotFound("org_not_found", "This org no longer exists.")
    return org


async def _drop_upload(session: AsyncSession, org_id: uuid.UUID) -> bool:
    logo = await session.get(OrgLogo, org_id)
    if logo is None:
        return False
    await session.delete(logo)
    return True


async def _flush_unless_slug_taken(session: AsyncSession, slug: str | None) -> None:
    """Flush; ``slug_taken`` if the orgs' unique slug index refuses ``slug``."""
    try:
        await session.flush()
    except IntegrityError as exc:
        await session.rollback()
        if slug is None or "slug" not in str(exc.orig):
            raise
        raise SlugTaken(slug) from None


def _profile(org: Org, uploaded: bool) -> OrgProfile:
    return OrgProfile(
        id=org.id,
        name=org.name,
        slug=org.slug,
        plan=org.plan,
        region=org.region,
        logo_url=org.logo_url,
        logo_uploaded=uploaded,
        retention_days=org.retention_days,
        created_at=org.created_at,
        updated_at=org.updated_at,
    )
