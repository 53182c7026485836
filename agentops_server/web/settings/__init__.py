"""The settings pages: the org's profile, members and invitations, teams, API keys, webhooks,
its own prices and the audit log, one module per area, each calling the services of the matching
``/api/v1`` routes with their guards (:mod:`agentops_server.web.settings.tabs` draws the area's
tabs)."""

from __future__ import annotations

from agentops_server.web.settings.api_keys import ApiKeyPages
from agentops_server.web.settings.audit import AuditPages
from agentops_server.web.settings.members import MemberPages
from agentops_server.web.settings.org import OrgPages
from agentops_server.web.settings.pricing import PricingPages
from agentops_server.web.settings.teams import TeamPages
from agentops_server.web.settings.webhooks import WebhookPages

__all__ = ["SETTINGS_PAGES"]

SETTINGS_PAGES = (
    OrgPages,
    MemberPages,
    TeamPages,
    ApiKeyPages,
    WebhookPages,
    PricingPages,
    AuditPages,
)
"""The settings area's controllers, for the pages' router."""
