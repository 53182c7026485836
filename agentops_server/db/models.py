"""SQLAlchemy models of the hub's tables.

Every tenant table carries ``org_id``, and ``org_id`` leads its primary key, unique keys and
indexes, so the tables can be distributed by org (Citus) and no query needs rows of two orgs.
Ids are the UUIDv7s the SDK made (time-ordered), stored as native UUIDs. JSON columns are JSONB on
PostgreSQL. Money is ``Numeric``, never a float.
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Uuid,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from agentops_server.db.types import UtcDateTime

__all__ = [
    "TENANT_TABLES",
    "USER_VISIBLE_TABLES",
    "Agent",
    "ApiKey",
    "AuditEvent",
    "Base",
    "Invitation",
    "Membership",
    "MfaFactor",
    "OAuthIdentity",
    "Org",
    "OrgLogo",
    "PasswordReset",
    "RecoveryCode",
    "RefreshToken",
    "Run",
    "Span",
    "Team",
    "TeamMember",
    "User",
    "UserSession",
]

# None is SQL NULL (not JSON null) however a row is written, so IS NULL filters work.
Json = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")
Money = Numeric(20, 10)
Moment = UtcDateTime()


class Base(DeclarativeBase):
    """Declarative base with constraint names Alembic can diff on both databases."""

    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        dict[str, Any]: Json,
        list[Any]: Json,
        Any: Json,
    }


# --- identity: global tables (a user may belong to several orgs) -------------------------------


class User(Base):
    """A person who signs in. Not a tenant row: memberships tie users to orgs."""

    __tablename__ = "users"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    email: Mapped[str] = mapped_column(String(320), unique=True)  # stored lower-cased
    name: Mapped[str] = mapped_column(String(200), default="")
    password_hash: Mapped[str | None] = mapped_column(String(256))  # None: external login only
    created_at: Mapped[dt.datetime] = mapped_column(Moment, server_default=func.now())
    password_changed_at: Mapped[dt.datetime | None] = mapped_column(Moment)


class MfaFactor(Base):
    """A second factor of a user. ``kind`` is ``totp`` today; the table leaves room for more."""

    __tablename__ = "mfa_factors"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    secret: Mapped[str] = mapped_column(String(512))  # encrypted with the hub's secret key
    label: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[dt.datetime] = mapped_column(Moment, server_default=func.now())
    confirmed_at: Mapped[dt.datetime | None] = mapped_column(Moment)
    last_used_step: Mapped[int | None] = mapped_column(BigInteger)  # refuses a replayed code

    __table_args__ = (Index(None, "user_id"),)


class RecoveryCode(Base):
    """A single-use recovery code of a user, stored only as a hash."""

    __tablename__ = "recovery_codes"

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    code_hash: Mapped[str] = mapped_column(String(256))
    used_at: Mapped[dt.datetime | None] = mapped_column(Moment)


class PasswordReset(Base):
    """A single-use, expiring password-reset token, stored only as a hash."""

    __tablename__ = "password_resets"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    token_hash: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[dt.datetime] = mapped_column(Moment, server_default=func.now())
    expires_at: Mapped[dt.datetime] = mapped_column(Moment)
    used_at: Mapped[dt.datetime | None] = mapped_column(Moment)

    __table_args__ = (Index(None, "user_id"),)


class OAuthIdentity(Base):
    """A user's account at an external identity provider (GitHub, Google, OIDC, Supabase)."""

    __tablename__ = "oauth_identities"

    provider: Mapped[str] = mapped_column(String(64), primary_key=True)
    subject: Mapped[str] = mapped_column(String(256), primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    email: Mapped[str | None] = mapped_column(String(320))
    created_at: Mapped[dt.datetime] = mapped_column(Moment, server_default=func.now())

    __table_args__ = (Index(None, "user_id"),)


# --- tenants ----------------------------------------------------------------------------------


class Org(Base):
    """A tenant: everything else belongs to exactly one org."""

    __tablename__ = "orgs"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(200))
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    plan: Mapped[str] = mapped_column(String(32), default="free", server_default="free")
    region: Mapped[str] = mapped_column(String(32), default="default", server_default="default")
    logo_url: Mapped[str | None] = mapped_column(String(2048))
    created_at: Mapped[dt.datetime] = mapped_column(Moment, server_default=func.now())
    updated_at: Mapped[dt.datetime | None] = mapped_column(Moment)


class OrgLogo(Base):
    """An uploaded logo, kept in the database so every hub process can serve it."""

    __tablename__ = "org_logos"

    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("orgs.id"), primary_key=True)
    content_type: Mapped[str] = mapped_column(String(64))
    data: Mapped[bytes] = mapped_column(LargeBinary)
    updated_at: Mapped[dt.datetime] = mapped_column(Moment, server_default=func.now())


class Membership(Base):
    """A user's place in an org, with one role (see ``agentops_server.security.permissions``)."""

    __tablename__ = "memberships"

    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("orgs.id"), primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), primary_key=True)
    role: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[dt.datetime] = mapped_column(Moment, server_default=func.now())


class Team(Base):
    """A group of members inside an org; agents and budgets can belong to a team."""

    __tablename__ = "teams"

    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("orgs.id"), primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(Moment, server_default=func.now())

    __table_args__ = (Index(None, "org_id", "name", unique=True),)


class TeamMember(Base):
    """A member of a team (both of one org)."""

    __tablename__ = "team_members"

    org_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    team_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)

    __table_args__ = (
        ForeignKeyConstraint(
            ["org_id", "team_id"], ["teams.org_id", "teams.id"], ondelete="CASCADE"
        ),
        ForeignKeyConstraint(
            ["org_id", "user_id"], ["memberships.org_id", "memberships.user_id"], ondelete="CASCADE"
        ),
    )


class Invitation(Base):
    """An invitation to join an org by email: single use, expiring, revocable."""

    __tablename__ = "invitations"

    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("orgs.id"), primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    email: Mapped[str] = mapped_column(String(320))
    role: Mapped[str] = mapped_column(String(32))
    team_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    token_hash: Mapped[str] = mapped_column(String(128))
    invited_by: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    created_at: Mapped[dt.datetime] = mapped_column(Moment, server_default=func.now())
    expires_at: Mapped[dt.datetime] = mapped_column(Moment)
    accepted_at: Mapped[dt.datetime | None] = mapped_column(Moment)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(Moment)

    __table_args__ = (Index(None, "org_id", "email"),)


class UserSession(Base):
    """A signed-in session of a user in one org: one family of rotating refresh tokens."""

    __tablename__ = "user_sessions"

    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("orgs.id"), primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    method: Mapped[str] = mapped_column(String(64))  # password, mfa, oauth:github, invitation…
    created_at: Mapped[dt.datetime] = mapped_column(Moment, server_default=func.now())
    expires_at: Mapped[dt.datetime] = mapped_column(Moment)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(Moment)
    revoked_reason: Mapped[str | None] = mapped_column(String(64))
    ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(512))

    __table_args__ = (Index(None, "org_id", "user_id"),)


class RefreshToken(Base):
    """One refresh token of a session, stored only as a hash; used once, then rotated."""

    __tablename__ = "refresh_tokens"

    org_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    session_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    token_hash: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[dt.datetime] = mapped_column(Moment, server_default=func.now())
    used_at: Mapped[dt.datetime | None] = mapped_column(Moment)

    __table_args__ = (
        ForeignKeyConstraint(
            ["org_id", "session_id"],
            ["user_sessions.org_id", "user_sessions.id"],
            ondelete="CASCADE",
        ),
        Index(None, "org_id", "session_id"),
    )


class AuditEvent(Base):
    """One entry of an org's audit log: who did what to what, before and after. Append-only."""

    __tablename__ = "audit_log"

    # CASCADE: deleting an org takes its log with it (the only delete the triggers allow).
    org_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("orgs.id", ondelete="CASCADE"), primary_key=True
    )
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    at: Mapped[dt.datetime] = mapped_column(Moment)
    actor_type: Mapped[str] = mapped_column(String(16))  # user, api_key, system
    actor_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    action: Mapped[str] = mapped_column(String(64))  # e.g. member.role_changed
    target_type: Mapped[str] = mapped_column(String(32))
    target_id: Mapped[str | None] = mapped_column(String(128))
    before: Mapped[dict[str, Any] | None] = mapped_column()
    after: Mapped[dict[str, Any] | None] = mapped_column()
    ip: Mapped[str | None] = mapped_column(String(64))
    request_id: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (
        Index(None, "org_id", "at", "id"),
        Index(None, "org_id", "action", "at"),
        Index(None, "org_id", "actor_id", "at"),
    )


class ApiKey(Base):
    """An API key, stored only as a hash; ``prefix`` is the visible part (``ak_…``)."""

    __tablename__ = "api_keys"

    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("orgs.id"), primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    prefix: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(128))
    name: Mapped[str] = mapped_column(String(200), default="")
    scopes: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[dt.datetime] = mapped_column(Moment, server_default=func.now())
    created_by: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    expires_at: Mapped[dt.datetime | None] = mapped_column(Moment)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(Moment)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(Moment)

    __table_args__ = (Index(None, "org_id", "prefix", unique=True),)


class Agent(Base):
    """An agent, registered the first time one of its runs arrives."""

    __tablename__ = "agents"

    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("orgs.id"), primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(256))
    team_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    first_seen_at: Mapped[dt.datetime] = mapped_column(Moment)
    last_seen_at: Mapped[dt.datetime] = mapped_column(Moment)

    __table_args__ = (Index(None, "org_id", "name", unique=True),)


class Run(Base):
    """One execution of an agent, as last reported by the SDK."""

    __tablename__ = "runs"

    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("orgs.id"), primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    agent: Mapped[str] = mapped_column(String(256))
    name: Mapped[str] = mapped_column(String(256))
    environment: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[dt.datetime] = mapped_column(Moment)
    ended_at: Mapped[dt.datetime | None] = mapped_column(Moment)
    tags: Mapped[list[Any]] = mapped_column(default=list)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)
    input: Mapped[Any | None] = mapped_column()
    output: Mapped[Any | None] = mapped_column()
    error: Mapped[dict[str, Any] | None] = mapped_column()
    span_count: Mapped[int] = mapped_column(Integer, default=0)
    error_count: Mapped[int] = mapped_column(Integer, default=0)
    input_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    output_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    cost: Mapped[Decimal | None] = mapped_column(Money)
    received_at: Mapped[dt.datetime] = mapped_column(Moment, server_default=func.now())

    __table_args__ = (
        Index(None, "org_id", "started_at", "id"),
        Index(None, "org_id", "agent", "started_at"),
        Index(None, "org_id", "status", "started_at"),
        Index(None, "org_id", "environment", "started_at"),
    )


class Span(Base):
    """One agent, tool, step or LLM call inside a run."""

    __tablename__ = "spans"

    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("orgs.id"), primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    # No foreign key to runs: a span may arrive before its run.
    run_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    parent_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(256))
    status: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[dt.datetime] = mapped_column(Moment)
    ended_at: Mapped[dt.datetime | None] = mapped_column(Moment)
    tags: Mapped[list[Any]] = mapped_column(default=list)
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    input: Mapped[Any | None] = mapped_column()
    output: Mapped[Any | None] = mapped_column()
    error: Mapped[dict[str, Any] | None] = mapped_column()
    events: Mapped[list[Any]] = mapped_column(default=list)
    model: Mapped[str | None] = mapped_column(String(256))
    provider: Mapped[str | None] = mapped_column(String(256))
    input_tokens: Mapped[int | None] = mapped_column(BigInteger)
    output_tokens: Mapped[int | None] = mapped_column(BigInteger)
    cost: Mapped[Decimal | None] = mapped_column(Money)

    __table_args__ = (Index(None, "org_id", "run_id", "started_at"),)


TENANT_TABLES = frozenset(
    table.name for table in Base.metadata.sorted_tables if "org_id" in table.c
) | {"orgs"}
"""Tables whose rows belong to one org: each has a row-level security policy on PostgreSQL."""

USER_VISIBLE_TABLES = frozenset({"memberships"})
"""Tenant tables whose rows a user also sees in their own identity (their orgs, at sign-in)."""
