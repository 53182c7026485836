"""The caller of a request: a member of an org signed in as a user, or an API key of an org.

A key acts for the person who created it, and never does what that person no longer may
(docs/decisions/0015): its permissions are its scopes' less what its creator's current role
withholds. A key no person created (``agentops-hub bootstrap``'s) acts for the org itself.
"""

from __future__ import annotations

import dataclasses
import uuid
from typing import Literal

from agentops_server.security.permissions import (
    ROLE_PERMISSIONS,
    Permission,
    Role,
    scope_permissions,
    withheld_from_key,
)

__all__ = ["Principal"]


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
    creator_id: uuid.UUID | None = None
    """The person who created this API key (None: a key of the org itself)."""
    withheld: frozenset[Permission] = frozenset()
    """What this key's scopes allow but its creator no longer may do."""

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
    def api_key(
        cls,
        org_id: uuid.UUID,
        key_id: uuid.UUID,
        scopes: frozenset[str],
        *,
        creator_id: uuid.UUID | None = None,
        creator_role: Role | None = None,
    ) -> Principal:
        """An API key with ``scopes`` (unknown scope names grant nothing), created by
        ``creator_id``, whose role now is ``creator_role``."""
        withheld = frozenset() if creator_id is None else withheld_from_key(scopes, creator_role)
        return cls(
            "api_key",
            org_id,
            scope_permissions(scopes) - withheld,
            key_id=key_id,
            scopes=scopes,
            creator_id=creator_id,
            withheld=withheld,
        )

    @property
    def person_id(self) -> uuid.UUID | None:
        """The person acting: the signed-in user, or the creator of the key (None for a key
        of the org itself)."""
        return self.user_id if self.kind == "user" else self.creator_id

    @property
    def actor_id(self) -> uuid.UUID:
        """The user or key acting (for the audit log and rate limits)."""
        actor = self.user_id if self.kind == "user" else self.key_id
        assert actor is not None
        return actor

    def can(self, permission: Permission) -> bool:
        """Whether this caller holds ``permission``."""
        return permission in self.permissions
