"""Roles, API-key scopes and the permission matrix: who may do what, in one place.

Every route declares the one :class:`Permission` it needs (:func:`agentops_server.auth.guards.
requires`); a member gets the permissions of their role, an API key those of its scopes. The
matrix below is also rendered in ``docs/permissions.md``, and ``tests/server/test_permissions.py``
walks every route of the app with every role and key scope against it.

============  =========================================================================
role          may
============  =========================================================================
owner         everything, including deleting the org and managing owners
admin         everything but managing owners and the org's plan (prices: owners and admins only)
team_lead     read all but the audit log, keys and webhooks; write agents, budgets and policies,
              decide approvals, pause or stop agents, within the teams they belong to
member        read everything but the audit log and API keys; write agents
viewer        read agents, runs, analytics, policies, budgets, prices, approvals
              and controls
every role    its own account (``account:self``): profile, password, 2FA, sessions
============  =========================================================================
"""

from __future__ import annotations

import enum
from collections.abc import Iterable

__all__ = [
    "ROLE_PERMISSIONS",
    "SCOPE_PERMISSIONS",
    "Permission",
    "Role",
    "Scope",
    "can_assign",
    "scope_permissions",
    "withheld_from_key",
]


class Permission(enum.StrEnum):
    """One thing a caller may do."""

    AGENTS_READ = "agents:read"
    AGENTS_WRITE = "agents:write"
    RUNS_READ = "runs:read"
    INGEST = "runs:ingest"
    POLICIES_READ = "policies:read"
    POLICIES_WRITE = "policies:write"
    BUDGETS_READ = "budgets:read"
    BUDGETS_WRITE = "budgets:write"
    BUDGETS_LEASE = "budgets:lease"
    """Ask for budget leases and report on them: what an SDK spends from (key scope
    ``ingest``)."""
    PRICING_READ = "pricing:read"
    """Read the prices calls are priced at, the org's own prices and recompute jobs."""
    PRICING_WRITE = "pricing:write"
    """Add, change and delete the org's own prices; recompute costs."""
    ANALYTICS_READ = "analytics:read"
    """Read rollups: KPIs, series, agent trends, cost breakdowns and period reports."""
    APPROVALS_READ = "approvals:read"
    APPROVALS_REQUEST = "approvals:request"
    APPROVALS_DECIDE = "approvals:decide"
    CONTROLS_READ = "controls:read"
    CONTROLS_WRITE = "controls:write"
    STREAM = "stream:read"
    """Hold the org's live stream (``GET /api/v1/stream``): what the SDK and pages are pushed."""
    MEMBERS_READ = "members:read"
    MEMBERS_WRITE = "members:write"
    TEAMS_READ = "teams:read"
    TEAMS_WRITE = "teams:write"
    API_KEYS_READ = "api_keys:read"
    API_KEYS_WRITE = "api_keys:write"
    SETTINGS_READ = "settings:read"
    SETTINGS_WRITE = "settings:write"
    AUDIT_READ = "audit:read"
    WEBHOOKS_READ = "webhooks:read"
    WEBHOOKS_WRITE = "webhooks:write"
    OWNERS_MANAGE = "owners:manage"
    """Make, demote or remove an owner; change the plan or region; delete the org."""
    ACCOUNT = "account:self"
    """A signed-in person's own account: profile, password, second factor, sessions, orgs."""


class Role(enum.StrEnum):
    """A member's role in an org, from most to least powerful."""

    OWNER = "owner"
    ADMIN = "admin"
    TEAM_LEAD = "team_lead"
    MEMBER = "member"
    VIEWER = "viewer"

    @property
    def rank(self) -> int:
        """0 for owner, up to 4 for viewer: a lower rank is more powerful."""
        return list(Role).index(self)


class Scope(enum.StrEnum):
    """What an API key may be used for."""

    INGEST = "ingest"
    READ = "read"
    CONTROLS_READ = "controls:read"
    APPROVALS_WRITE = "approvals:write"
    ADMIN = "admin"


P = Permission
_READ_ALL = frozenset(
    {
        P.AGENTS_READ,
        P.RUNS_READ,
        P.POLICIES_READ,
        P.BUDGETS_READ,
        P.PRICING_READ,
        P.ANALYTICS_READ,
        P.APPROVALS_READ,
        P.CONTROLS_READ,
        P.STREAM,
    }
)
_MEMBER_READ = _READ_ALL | {P.TEAMS_READ, P.SETTINGS_READ, P.MEMBERS_READ, P.ACCOUNT}

ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.OWNER: frozenset(Permission),
    Role.ADMIN: frozenset(Permission) - {P.OWNERS_MANAGE},
    Role.TEAM_LEAD: _MEMBER_READ
    | {
        P.AGENTS_WRITE,
        P.BUDGETS_WRITE,
        P.POLICIES_WRITE,
        P.APPROVALS_DECIDE,
        P.CONTROLS_WRITE,
        P.TEAMS_WRITE,
    },
    Role.MEMBER: _MEMBER_READ | {P.AGENTS_WRITE},
    Role.VIEWER: _READ_ALL | {P.ACCOUNT},
}
"""What each role may do. Team leads' writes are limited to their teams by the services."""

SCOPE_PERMISSIONS: dict[Scope, frozenset[Permission]] = {
    # An SDK reads its controls, policies and budgets, takes budget leases, and holds the org's
    # stream, with its ingest key.
    Scope.INGEST: frozenset(
        {P.INGEST, P.CONTROLS_READ, P.POLICIES_READ, P.BUDGETS_READ, P.BUDGETS_LEASE, P.STREAM}
    ),
    Scope.READ: _READ_ALL,
    Scope.CONTROLS_READ: frozenset({P.CONTROLS_READ, P.POLICIES_READ, P.BUDGETS_READ, P.STREAM}),
    # An SDK asks, reads and claims approvals, and hears decisions on the org's stream.
    Scope.APPROVALS_WRITE: frozenset({P.APPROVALS_REQUEST, P.APPROVALS_READ, P.STREAM}),
    Scope.ADMIN: frozenset(Permission) - {P.OWNERS_MANAGE, P.ACCOUNT},
}
"""What each API-key scope allows. No key can manage owners or act as a person's account."""


def scope_permissions(scopes: Iterable[str]) -> frozenset[Permission]:
    """What a key with ``scopes`` may do (unknown scope names grant nothing)."""
    known = {scope.value for scope in Scope}
    return frozenset().union(
        *(SCOPE_PERMISSIONS[Scope(scope)] for scope in scopes if scope in known)
    )


def withheld_from_key(scopes: Iterable[str], creator_role: Role | None) -> frozenset[Permission]:
    """What a key's ``scopes`` allow but its creator, now of ``creator_role`` (None: no longer
    a member), may not do: the key may not either (docs/decisions/0015)."""
    allowed = scope_permissions(scopes)
    return allowed if creator_role is None else allowed - ROLE_PERMISSIONS[creator_role]


def can_assign(actor: Role, target_role: Role) -> bool:
    """Whether ``actor`` may give someone ``target_role`` (or change someone who has it).

    Owners may assign any role, admins any but owner, others only roles below their own: an
    admin can neither make nor demote an owner, and a team lead can invite no one above member.
    """
    if actor is Role.OWNER:
        return True
    if target_role is Role.OWNER:
        return False
    return target_role.rank >= actor.rank if actor is Role.ADMIN else target_role.rank > actor.rank
