"""Identity and access: users and their factors, orgs, members, teams, invitations, sessions,
API keys."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import (
    BigInteger,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    String,
    Uuid,
    func,
)
from sqlalchemy.orm import Mapped, mapped_column

from agentops_server.db.models.base import Base, Moment

__all__ = [
    "ApiKey",
    "Invitation",
    "Membership",
    "MfaFactor",
    "OAuthIdentity",
    "Org",
    "OrgLogo",
    "PasswordReset",
    "RecoveryCode",
    "RefreshToken",
    "Team",
    "TeamMember",
    "User",
    "UserSession",
]


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
    retention_days: Mapped[int] = mapped_column(Integer, default=30, server_default="30")
    """How many days raw runs and spans are kept (services/telemetry/retention.py)."""


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
