"""The hub's pages for people: server-rendered Jinja templates, a stylesheet and small scripts.

:func:`web_router` holds every page and the static files. Pages authenticate with the session
cookie (:mod:`agentops_server.web.sessions`), not bearer tokens, and every form that changes
something carries a CSRF token (:func:`csrf_config`); the JSON API under ``/api/v1`` sees
neither. Each page names the one permission it needs with the API's guard
(:func:`agentops_server.auth.guards.requires`), and calls the same services as the API: the
permission matrix is the only check. There is no build step: templates and assets ship inside
the package (docs/decisions/0034-web-ui.md).
"""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path
from typing import Any

from litestar import Router
from litestar.config.csrf import CSRFConfig
from litestar.datastructures import CacheControlHeader
from litestar.middleware import DefineMiddleware
from litestar.middleware.csrf import CSRFMiddleware
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.static_files import create_static_files_router
from litestar.template import TemplateConfig
from sqlalchemy.ext.asyncio import AsyncEngine

from agentops_server.backends.rate_limit import DEPENDENCIES as RATE_LIMITS
from agentops_server.settings import Settings
from agentops_server.web.account import AccountPages
from agentops_server.web.agent_detail import AgentDetailPages
from agentops_server.web.agents import AgentPages
from agentops_server.web.approvals import ApprovalPages
from agentops_server.web.budgets import BudgetPages
from agentops_server.web.charts import ChartAssets
from agentops_server.web.controls import ControlPages
from agentops_server.web.costs import CostPages
from agentops_server.web.dashboard import DashboardPages
from agentops_server.web.errors import EXCEPTION_HANDLERS
from agentops_server.web.invitations import InvitationPages
from agentops_server.web.live import LivePages
from agentops_server.web.notifications import NotificationPages
from agentops_server.web.oauth import OAuthPages
from agentops_server.web.policies import PolicyPages
from agentops_server.web.reports import ReportPages
from agentops_server.web.runs import RunPages
from agentops_server.web.sessions import PageSessions, SessionBackend
from agentops_server.web.settings import SETTINGS_PAGES
from agentops_server.web.sign_in import SignInPages

__all__ = ["PAGE", "csrf_config", "template_config", "web_router"]

HERE = Path(__file__).parent
PAGE: dict[str, Any] = {"exclude_from_auth": True, "page": True}
"""``opt`` of every route of the pages: the bearer middleware leaves them to the session cookie
(``page`` tells the API's route walks to leave them out)."""
CSRF_COOKIE = "agentops_csrf"
STATIC_MAX_AGE = 300
"""Seconds a browser keeps the stylesheet and scripts (they have no fingerprint in their name:
an upgrade's assets are used within this long)."""


def web_router(settings: Settings, engine: AsyncEngine) -> Router:
    """The pages and their static files, at the root of the hub."""
    static = create_static_files_router(
        path="/static",
        directories=[HERE / "static"],
        opt={"exclude_from_csrf": True, "public": True},
        include_in_schema=False,
        cache_control=CacheControlHeader(max_age=STATIC_MAX_AGE),
    )
    return Router(
        path="/",
        route_handlers=[
            SignInPages,
            ControlPages,
            AgentPages,
            ApprovalPages,
            LivePages,
            *SETTINGS_PAGES,
            RunPages,
            AgentDetailPages,
            AccountPages,
            InvitationPages,
            NotificationPages,
            OAuthPages,
            BudgetPages,
            PolicyPages,
            DashboardPages,
            CostPages,
            ReportPages,
            ChartAssets,
            static,
        ],
        opt=PAGE,
        include_in_schema=False,
        cache_control=CacheControlHeader(no_store=True),  # pages hold an org's data and tokens
        middleware=[
            DefineMiddleware(PageSessions, backend=SessionBackend(engine, settings)),
            DefineMiddleware(CSRFMiddleware, config=csrf_config(settings)),
        ],
        exception_handlers=EXCEPTION_HANDLERS,
        dependencies=RATE_LIMITS,
    )


def csrf_config(settings: Settings) -> CSRFConfig:
    """The pages' CSRF protection: a signed double-submit token, in an HTTP-only cookie and in
    each form (``{{ csrf_input }}``)."""
    secret = hmac.new(settings.secret_key.encode(), b"agentops-hub:csrf", hashlib.sha256)
    return CSRFConfig(
        secret=secret.hexdigest(),
        cookie_name=CSRF_COOKIE,
        cookie_secure=settings.served_over_https,
        cookie_httponly=True,
        cookie_samesite="lax",
    )


def template_config() -> TemplateConfig[JinjaTemplateEngine]:
    """The pages' templates (autoescaped Jinja)."""
    return TemplateConfig(directory=HERE / "templates", engine=JinjaTemplateEngine)
