"""API keys of an org: create (the secret shown once), list, revoke, rotate.

A key is stored only as a hash (:mod:`agentops_server.security.api_keys`); lists show its prefix.
Nobody grants a key more than they may do themselves: the permissions of the scopes asked for
must all be the caller's own (``scope_escalation``), which matters most when a key creates or
rotates keys. Rotating makes a new key with the old one's name, scopes and expiry, and ends the
old one at once, or after a grace period (``grace_seconds``) during which both work: the old
key's expiry is brought forward to the end of the grace period.

A key acts for the person who created it (a key made by a key, for that key's creator) and never
does what they no longer may (docs/decisions/0015): the authentication caps it by its creator's
current role, and suspends it once its creator has left the org. Each key's ``state`` says so
(``capped``, ``suspended``), with what its creator's role ``withheld``; :func:`follow_creator`
audits every change of a creator's standing for each of their keys. Rotating a key makes the new
one the rotator's: that is how an owner or admin takes over a departed creator's key.

Each change is audited in the transaction that makes it; the secret never is.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Iterable
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from agentops_server.db.models import ApiKey, Membership
from agentops_server.refusals import Forbidden, Gone, Invalid, NotFound
from agentops_server.security.api_keys import SCOPES, hash_key, new_key
from agentops_server.security.permissions import SCOPE_PERMISSIONS, Role, Scope, withheld_from_key
from agentops_server.security.principal import Principal
from agentops_server.services import audit
from agentops_server.services.audit import Actor
from agentops_server.services.row_claims import claim
from agentops_server.values import clean_name

__all__ = [
    "MAX_EXPIRY_DAYS",
    "MAX_GRACE_SECONDS",
    "ApiKeyList",
    "ApiKeyView",
    "CreatedApiKey",
    "IssuedKey",
    "KeyState",
    "check_grantable",
    "create_key",
    "follow_creator",
    "issue_org_key",
    "list_keys",
    "new_key_row",
    "revoke_key",
    "rotate_key",
]

MAX_EXPIRY_DAYS = 3650
MAX_GRACE_SECONDS = 7 * 24 * 3600

KeyState = Literal["active", "capped", "suspended", "expired", "revoked"]
"""A key's standing: ``capped`` when its creator's role withholds some of what its scopes
allow, ``suspended`` when its creator has left the org (it then does nothing)."""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ApiKeyView:
    """A key as listed: never its secret nor its hash."""

    id: uuid.UUID
    name: str
    prefix: str
    scopes: list[str]
    created_at: dt.datetime
    created_by: uuid.UUID | None
    """The person the key acts for (null: a key of the org itself, made by the CLI)."""
    last_used_at: dt.datetime | None
    expires_at: dt.datetime | None
    revoked_at: dt.datetime | None
    state: KeyState
    withheld: list[str]
    """Permissions its scopes allow but its creator no longer has (so neither has the key)."""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class CreatedApiKey(ApiKeyView):
    """A key just made: ``key`` is the secret, shown this once and stored only as a hash."""

    key: str


@dataclasses.dataclass(frozen=True, slots=True)
class IssuedKey:
    """A key of the org itself as issued (the CLI's, the demo's): ``key`` is shown once and
    never stored."""

    org_id: uuid.UUID
    key_id: uuid.UUID
    key: str
    prefix: str
    scopes: tuple[str, ...]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ApiKeyList:
    """Every key of the org, revoked ones included, newest first."""

    items: list[ApiKeyView]


async def list_keys(
    session: AsyncSession, org_id: uuid.UUID, *, state: KeyState | None = None
) -> ApiKeyList:
    """The org's keys, newest first (only those in ``state``, if given)."""
    rows = await session.execute(
        select(ApiKey, Membership.role)
        .outerjoin(
            Membership,
            (Membership.org_id == ApiKey.org_id) & (Membership.user_id == ApiKey.created_by),
        )
        .where(ApiKey.org_id == org_id)
        .order_by(ApiKey.created_at.desc())
    )
    now = dt.datetime.now(dt.UTC)
    views = [_view(row, _role(role), now) for row, role in rows]
    return ApiKeyList(items=[view for view in views if state is None or view.state == state])


async def create_key(
    session: AsyncSession,
    principal: Principal,
    actor: Actor,
    *,
    name: str,
    scopes: Iterable[str],
    expires_at: dt.datetime | None = None,
    expires_in_days: int | None = None,
) -> CreatedApiKey:
    """Make a key; audit; commit. The answer holds the secret, once.

    Refusals: ``invalid_name``, ``unknown_scope``, ``no_scopes``, ``scope_escalation``,
    ``conflicting_expiry``, ``invalid_expiry``.
    """
    wanted = _scopes(scopes)
    check_grantable(principal, wanted)
    now = dt.datetime.now(dt.UTC)
    created = await _add_key(
        session,
        principal.org_id,
        principal.person_id,
        actor,
        now,
        name=clean_name(name, what="key"),
        scopes=wanted,
        expires_at=_expiry(now, expires_at, expires_in_days),
    )
    await session.commit()
    return created


async def revoke_key(
    session: AsyncSession, principal: Principal, actor: Actor, key_id: uuid.UUID
) -> None:
    """Revoke a key at once; audit; commit. Revoking a revoked key changes nothing.

    Refusals: ``api_key_not_found``.
    """
    row = await _key(session, principal.org_id, key_id)
    if row.revoked_at is not None:
        return
    before = _state(row)
    if await _end(session, row, revoked_at=dt.datetime.now(dt.UTC)):
        await audit.record(
            session,
            principal.org_id,
            actor,
            "api_key.revoked",
            target_type="api_key",
            target_id=key_id,
            before=before,
            after=_state(row),
        )
        await session.commit()


async def rotate_key(
    session: AsyncSession,
    principal: Principal,
    actor: Actor,
    key_id: uuid.UUID,
    *,
    grace_seconds: int = 0,
) -> CreatedApiKey:
    """Replace a key by a new one with its name, scopes and expiry; end the old one now, or
    ``grace_seconds`` from now; audit; commit.

    Refusals: ``api_key_not_found``, ``api_key_revoked``, ``api_key_expired``,
    ``scope_escalation``, ``invalid_grace``.
    """
    if not 0 <= grace_seconds <= MAX_GRACE_SECONDS:
        raise Invalid(
            "invalid_grace", f"grace_seconds is between 0 and {MAX_GRACE_SECONDS} (7 days)."
        )
    old = await _key(session, principal.org_id, key_id)
    now = dt.datetime.now(dt.UTC)
    if old.revoked_at is not None:
        raise Gone("api_key_revoked", "This key is revoked: create a new one instead.")
    if old.expires_at is not None and old.expires_at <= now:
        raise Gone("api_key_expired", "This key has expired: create a new one instead.")
    check_grantable(principal, old.scopes)
    new = await _add_key(
        session,
        principal.org_id,
        principal.person_id,
        actor,
        now,
        name=old.name,
        scopes=old.scopes,
        expires_at=old.expires_at,
        rotated_from=str(old.id),
    )
    before = _state(old)
    if grace_seconds == 0:
        ended = await _end(session, old, revoked_at=now)
    else:
        grace_end = now + dt.timedelta(seconds=grace_seconds)
        ended = await _end(session, old, expires_at=min(grace_end, old.expires_at or grace_end))
    if not ended:  # revoked by someone else meanwhile
        await session.rollback()
        raise Gone("api_key_revoked", "This key is revoked: create a new one instead.")
    await audit.record(
        session,
        principal.org_id,
        actor,
        "api_key.rotated",
        target_type="api_key",
        target_id=old.id,
        before=before,
        after={**_state(old), "replaced_by": str(new.id), "grace_seconds": grace_seconds},
    )
    await session.commit()
    return new


async def follow_creator(
    session: AsyncSession,
    org_id: uuid.UUID,
    actor: Actor,
    creator_id: uuid.UUID,
    *,
    before: Role | None,
    after: Role | None,
) -> None:
    """Audit what a change of ``creator_id``'s role (None: not a member) from ``before`` to
    ``after`` does to each of their live keys (not committed: it commits with the change):
    ``api_key.suspended`` (the creator left), ``api_key.capped`` (the new role withholds
    something else of what the key's scopes allow) or ``api_key.restored`` (nothing withheld
    any more)."""
    now = dt.datetime.now(dt.UTC)
    rows = await session.scalars(
        select(ApiKey).where(
            ApiKey.org_id == org_id, ApiKey.created_by == creator_id, ApiKey.revoked_at.is_(None)
        )
    )
    for row in rows:
        if row.expires_at is not None and row.expires_at <= now:
            continue
        was, now_withheld = (withheld_from_key(row.scopes, role) for role in (before, after))
        if was == now_withheld and (before is None) == (after is None):
            continue
        action = (
            "api_key.suspended"
            if after is None
            else "api_key.capped"
            if now_withheld
            else "api_key.restored"
        )
        await audit.record(
            session,
            org_id,
            actor,
            action,
            target_type="api_key",
            target_id=row.id,
            before=_standing(row, before, was),
            after=_standing(row, after, now_withheld),
        )


def check_grantable(principal: Principal, scopes: Iterable[str]) -> None:
    """``scope_escalation`` unless everything ``scopes`` allow, the caller may do too."""
    beyond = [
        scope for scope in scopes if not SCOPE_PERMISSIONS[Scope(scope)] <= principal.permissions
    ]
    if beyond:
        raise Forbidden(
            "scope_escalation",
            f"You cannot grant {', '.join(beyond)}: it allows more than you may do.",
            scopes=beyond,
        )


async def issue_org_key(
    session: AsyncSession, org_id: uuid.UUID, actor: Actor, *, name: str, scopes: Iterable[str]
) -> IssuedKey:
    """Add a key of the org itself (no creator: it follows nobody), audited ``api_key.created``
    (not committed); the key as issued."""
    created = await _add_key(
        session,
        org_id,
        None,
        actor,
        dt.datetime.now(dt.UTC),
        name=clean_name(name, what="key"),
        scopes=_scopes(scopes),
        expires_at=None,
    )
    return IssuedKey(org_id, created.id, created.key, created.prefix, tuple(created.scopes))


def new_key_row(
    org_id: uuid.UUID,
    *,
    name: str,
    scopes: Iterable[str],
    created_by: uuid.UUID | None = None,
    expires_at: dt.datetime | None = None,
) -> tuple[ApiKey, IssuedKey]:
    """A new key's row (to add to a session) and the key as issued; ``ValueError`` for an
    unknown scope."""
    wanted = tuple(sorted(set(scopes)))
    unknown = set(wanted) - SCOPES
    if unknown:
        raise ValueError(f"unknown scope(s): {', '.join(sorted(unknown))}")
    key, parts = new_key(org_id)
    row = ApiKey(
        org_id=org_id,
        id=uuid.uuid4(),
        prefix=parts.prefix,
        hash=hash_key(key),
        name=name,
        scopes=list(wanted),
        created_by=created_by,
        expires_at=expires_at,
    )
    return row, IssuedKey(org_id, row.id, key, parts.prefix, wanted)


async def _add_key(
    session: AsyncSession,
    org_id: uuid.UUID,
    created_by: uuid.UUID | None,
    actor: Actor,
    now: dt.datetime,
    *,
    name: str,
    scopes: Iterable[str],
    expires_at: dt.datetime | None,
    **noted: str,
) -> CreatedApiKey:
    """Add a key of ``org_id`` acting for ``created_by`` and audit ``api_key.created`` (with
    ``noted`` besides its state); not committed."""
    row, issued = new_key_row(
        org_id, name=name, scopes=scopes, created_by=created_by, expires_at=expires_at
    )
    row.created_at = now
    session.add(row)
    await audit.record(
        session,
        org_id,
        actor,
        "api_key.created",
        target_type="api_key",
        target_id=row.id,
        after={**_state(row), **noted},
    )
    # Nobody grants more than they may do (check_grantable): a new key withholds nothing.
    return CreatedApiKey(**_fields(row), state="active", withheld=[], key=issued.key)


def _scopes(scopes: Iterable[str]) -> list[str]:
    wanted = sorted(set(scopes))
    unknown = [scope for scope in wanted if scope not in SCOPES]
    if unknown:
        raise Invalid(
            "unknown_scope",
            f"Unknown scope(s) {', '.join(unknown)}; scopes are "
            f"{', '.join(scope.value for scope in Scope)}.",
            unknown=unknown,
        )
    if not wanted:
        raise Invalid("no_scopes", "Give the key at least one scope.")
    return wanted


def _expiry(
    now: dt.datetime, expires_at: dt.datetime | None, expires_in_days: int | None
) -> dt.datetime | None:
    if expires_at is not None and expires_in_days is not None:
        raise Invalid("conflicting_expiry", "Give expires_at or expires_in_days, not both.")
    if expires_in_days is not None:
        if not 1 <= expires_in_days <= MAX_EXPIRY_DAYS:
            raise Invalid("invalid_expiry", f"expires_in_days is between 1 and {MAX_EXPIRY_DAYS}.")
        return now + dt.timedelta(days=expires_in_days)
    if expires_at is None:
        return None
    moment = expires_at if expires_at.tzinfo else expires_at.replace(tzinfo=dt.UTC)
    if moment <= now:
        raise Invalid("invalid_expiry", "expires_at must be in the future.")
    if moment > now + dt.timedelta(days=MAX_EXPIRY_DAYS):
        raise Invalid("invalid_expiry", f"expires_at is at most {MAX_EXPIRY_DAYS} days away.")
    return moment.astimezone(dt.UTC)


async def _key(session: AsyncSession, org_id: uuid.UUID, key_id: uuid.UUID) -> ApiKey:
    row = await session.get(ApiKey, (org_id, key_id))
    if row is None:
        raise NotFound("api_key_not_found", "This org has no such API key.")
    return row


async def _end(session: AsyncSession, row: ApiKey, **values: dt.datetime) -> bool:
    """Revoke ``row`` or bring its expiry forward, unless it is revoked meanwhile; whether this
    call did (one conditional statement, so two revocations never both count)."""
    return await claim(session, row, ApiKey.revoked_at.is_(None), **values)


def _state(row: ApiKey) -> dict[str, Any]:
    """What the audit log keeps of a key (never its hash)."""
    return {
        "name": row.name,
        "prefix": row.prefix,
        "scopes": list(row.scopes),
        "expires_at": row.expires_at.isoformat() if row.expires_at else None,
        "revoked_at": row.revoked_at.isoformat() if row.revoked_at else None,
    }


def _fields(row: ApiKey) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "prefix": row.prefix,
        "scopes": list(row.scopes),
        "created_at": row.created_at,
        "created_by": row.created_by,
        "last_used_at": row.last_used_at,
        "expires_at": row.expires_at,
        "revoked_at": row.revoked_at,
    }


def _standing(row: ApiKey, role: Role | None, withheld: frozenset[str]) -> dict[str, Any]:
    """What the audit log keeps of a key's standing under its creator's ``role``."""
    return {
        "name": row.name,
        "prefix": row.prefix,
        "creator_role": None if role is None else role.value,
        "withheld": sorted(withheld),
    }


def _role(value: str | None) -> Role | None:
    return None if value is None else Role(value)


def _view(row: ApiKey, creator_role: Role | None, now: dt.datetime) -> ApiKeyView:
    """``row`` as listed, its creator being of ``creator_role`` (None: not a member)."""
    withheld = (
        frozenset() if row.created_by is None else withheld_from_key(row.scopes, creator_role)
    )
    state: KeyState
    if row.revoked_at is not None:
        state = "revoked"
    elif row.expires_at is not None and row.expires_at <= now:
        state = "expired"
    elif row.created_by is not None and creator_role is None:
        state = "suspended"
    else:
        state = "capped" if withheld else "active"
    return ApiKeyView(**_fields(row), state=state, withheld=sorted(withheld))
