"""SQLAlchemy models of the hub's tables, one module per domain (``base`` holds what they share).

Every tenant table carries ``org_id``, and ``org_id`` leads its primary key, unique keys and
indexes, so the tables can be distributed by org (Citus) and no query needs rows of two orgs.
Ids are the UUIDv7s the SDK made (time-ordered), stored as native UUIDs. JSON columns are JSONB on
PostgreSQL. Money is ``Numeric``, never a float.
"""

from __future__ import annotations

from agentops_server.db.models.analytics import RollupBucket, RollupContribution, RollupRow
from agentops_server.db.models.approvals import ApprovalRequest, ApprovalRevision
from agentops_server.db.models.audit import AuditEvent
from agentops_server.db.models.base import Base
from agentops_server.db.models.budgets import (
    BudgetAlert,
    BudgetLease,
    BudgetLedgerEntry,
    BudgetRow,
    BudgetVersion,
)
from agentops_server.db.models.derived_work import PendingWork
from agentops_server.db.models.governance import Agent, Control, ControlVersion
from agentops_server.db.models.identity import (
    ApiKey,
    Invitation,
    Membership,
    MfaFactor,
    OAuthIdentity,
    Org,
    OrgLogo,
    PasswordReset,
    RecoveryCode,
    RefreshToken,
    Team,
    TeamMember,
    User,
    UserSession,
)
from agentops_server.db.models.notifications import Notification, Webhook, WebhookDelivery
from agentops_server.db.models.policies import PolicyState, PolicyVersion
from agentops_server.db.models.pricing import ModelPriceRow, PricingJob
from agentops_server.db.models.telemetry import Run, RunSearchDocument, Span

__all__ = [
    "TENANT_TABLES",
    "USER_VISIBLE_TABLES",
    "Agent",
    "ApiKey",
    "ApprovalRequest",
    "ApprovalRevision",
    "AuditEvent",
    "Base",
    "BudgetAlert",
    "BudgetLease",
    "BudgetLedgerEntry",
    "BudgetRow",
    "BudgetVersion",
    "Control",
    "ControlVersion",
    "Invitation",
    "Membership",
    "ModelPriceRow",
    "MfaFactor",
    "Notification",
    "OAuthIdentity",
    "Org",
    "OrgLogo",
    "PasswordReset",
    "PendingWork",
    "PolicyState",
    "PolicyVersion",
    "PricingJob",
    "RecoveryCode",
    "RefreshToken",
    "RollupBucket",
    "RollupContribution",
    "RollupRow",
    "Run",
    "RunSearchDocument",
    "Span",
    "Team",
    "TeamMember",
    "User",
    "UserSession",
    "Webhook",
    "WebhookDelivery",
]

TENANT_TABLES = frozenset(
    table.name for table in Base.metadata.sorted_tables if "org_id" in table.c
) | {"orgs"}
"""Tables whose rows belong to one org: each has a row-level security policy on PostgreSQL."""

USER_VISIBLE_TABLES = frozenset({"memberships"})
"""Tenant tables whose rows a user also sees in their own identity (their orgs, at sign-in)."""
