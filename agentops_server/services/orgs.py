"""Orgs and their API keys (the first org and key come from ``agentops-hub bootstrap``)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Iterable

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from agentops_server.auth.api_keys import SCOPES, hash_key, new_key
from agentops_server.db.models import ApiKey, Org
from agentops_server.db.tenancy import tenant
from agentops_server.services.slugs import slugify

__all__ = ["IssuedKey", "create_org", "issue_key", "revoke_key"]


@dataclasses.dataclass(frozen=True, slots=True)
class IssuedKey:
    """A key as issued: ``key`` is shown once and never stored."""

    org_id: uuid.UUID
    key_id: uuid.UUID
    key: str
    prefix: str
    scopes: tuple[str, ...]


def create_org(session: Session, name: str) -> IssuedKey:
    """Create the org ``name`` with one API key carrying every scope; commit."""
    slug = slugify(name)
    if session.scalar(select(Org).where(Org.slug == slug)) is not None:
        raise ValueError(f"an org named {name!r} (slug {slug!r}) already exists")
    org = Org(id=uuid.uuid4(), name=name, slug=slug)
    with tenant(org_id=org.id):
        session.add(org)
        session.flush()
        issued = issue_key(session, org.id, name="bootstrap", scopes=sorted(SCOPES))
        session.commit()
    return issued


def issue_key(
    session: Session, org_id: uuid.UUID, *, name: str, scopes: Iterable[str]
) -> IssuedKey:
    """Add an API key to ``org_id`` (not committed)."""
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
    )
    session.add(row)
    session.flush()
    return IssuedKey(org_id, row.id, key, parts.prefix, wanted)


def revoke_key(session: Session, org_id: uuid.UUID, key_id: uuid.UUID) -> None:
    """Revoke a key at once (not committed)."""
    session.execute(
        update(ApiKey)
        .where(ApiKey.org_id == org_id, ApiKey.id == key_id)
        .values(revoked_at=dt.datetime.now(dt.UTC))
    )
