"""The caller of a request: a member of an org signed in as a user, or an API key of an org."""

from __future__ import annotations

import dataclasses
import uuid
from typing import Literal

from agentops_server.auth.permissions import (
    ROLE_PERMISSIONS,
    SCOPE_PERMISSIONS,
    Permission,
    Role,
    Scope,
)

__all__ = ["Principal"]

_SCOPE_NAMES = frozenset(scope.value for scope in Scope)


@dataclasses.dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling, in which org, and what they may do there."""

    kind: Literal["user", "api_key"]
    org_id: uuid.UUID
    permissions: frozenset[Permission]
    user_id: uuid.UUID | None = None
    key_id: uuid.UUID | None = None
    session_id: uuid.UUID | None = None
    role: Role | None = None
    scopes: frozenset[str] = frozenset()
    team_ids: frozenset[uuid.UUID] = frozenset()
    """The teams a user belongs to (team leads act within these)."""

    @classmethod
    def member(
        cls,
        org_id: uuid.UUID,
        user_id: uuid.UUID,
        role: Role,
        *,
        session_id: uuid.UUID | None = None,
        team_ids: frozenset[uuid.UUID] = frozenset(),
    ) -> Principal:
        """A signed-in member with ``role``."""
        return cls(
            "user",
            org_id,
            ROLE_PERMISSIONS[role],
            user_id=user_id,
            session_id=session_id,
            role=role,
            team_ids=team_ids,
        )

    @classmethod
    def api_key(cls, org_id: uuid.UUID, key_id: uuid.UUID, scopes: frozenset[str]) -> Principal:
        """An API key with ``scopes`` (unknown scope names grant nothing)."""
        granted: frozenset[Permission] = frozenset().union(
            *(SCOPE_PERMISSIONS[Scope(scope)] for scope in scopes if scope in _SCOPE_NAMES)
        )
        return cls("api_key", org_id, granted, key_id=key_id, scopes=scopes)

    @property
    def actor_id(self) -> uuid.UUID:
        """The user or key acting (for the audit log and rate limits)."""
        actor = self.user_id if self.kind == "user" else self.key_id
        assert actor is not None
        return actor

    def can(self, permission: Permission) -> bool:
        """Whether this caller holds ``permission``."""
        return permission in self.permissions
