"""Orgs and their API keys (the first org and key come from ``agentops-hub bootstrap``)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Iterable

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from agentops_server.db.models import ApiKey, Membership, Org, User
from agentops_server.db.tenancy import tenant
from agentops_server.security.api_keys import SCOPES, hash_key, new_key
from agentops_server.security.passwords import check_strength, hash_password_blocking
from agentops_server.security.permissions import Role
from agentops_server.services.slugs import slugify
from agentops_server.services.users import EmailTaken, normalize_email

__all__ = ["IssuedKey", "create_org", "issue_key", "new_key_row", "revoke_key"]


@dataclasses.dataclass(frozen=True, slots=True)
class IssuedKey:
    """A key as issued: ``key`` is shown once and never stored."""

    org_id: uuid.UUID
    key_id: uuid.UUID
    key: str
    prefix: str
    scopes: tuple[str, ...]


def create_org(
    session: Session, name: str, *, owner_email: str | None = None, owner_password: str = ""
) -> IssuedKey:
    """Create the org ``name`` with one API key carrying every scope, and optionally its owner
    (a new user with ``owner_email`` and ``owner_password``); commit.

    Raises ValueError when the org's slug is taken, the email is invalid or already has an
    account, or the password is weak.
    """
    slug = slugify(name)
    org = Org(id=uuid.uuid4(), name=name, slug=slug)
    with tenant(org_id=org.id):
        session.add(org)
        try:
            session.flush()
        except IntegrityError as exc:  # the unique slug: other orgs are invisible from here
            session.rollback()
            raise ValueError(f"an org named {name!r} (slug {slug!r}) already exists") from exc
        issued = issue_key(session, org.id, name="bootstrap", scopes=sorted(SCOPES))
        if owner_email is not None:
            _add_owner(session, org.id, owner_email, owner_password)
        session.commit()
    return issued


def _add_owner(session: Session, org_id: uuid.UUID, email: str, password: str) -> None:
    address = normalize_email(email)
    check_strength(password, email=address)
    if session.scalar(select(User.id).where(User.email == address)) is not None:
        raise EmailTaken(f"An account with {address} already exists.")
    user = User(id=uuid.uuid4(), email=address, password_hash=hash_password_blocking(password))
    session.add(user)
    session.flush()
    session.add(Membership(org_id=org_id, user_id=user.id, role=Role.OWNER.value))


def issue_key(
    session: Session, org_id: uuid.UUID, *, name: str, scopes: Iterable[str]
) -> IssuedKey:
    """Add an API key to ``org_id`` (not committed)."""
    row, issued = new_key_row(org_id, name=name, scopes=scopes)
    session.add(row)
    session.flush()
    return issued


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


def revoke_key(session: Session, org_id: uuid.UUID, key_id: uuid.UUID) -> None:
    """Revoke a key at once (not committed)."""
    session.execute(
        update(ApiKey)
        .where(ApiKey.org_id == org_id, ApiKey.id == key_id)
        .values(revoked_at=dt.datetime.now(dt.UTC))
    )
