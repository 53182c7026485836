"""The hub's application factory: ``create_app(settings)`` builds a Litestar app.

Nothing that matters lives in the process: the database holds the state, so tests build as many
apps as they like and production runs as many processes as it needs.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any

from advanced_alchemy.extensions.litestar import (
    AsyncSessionConfig,
    SQLAlchemyAsyncConfig,
    SQLAlchemyPlugin,
)
from litestar import Litestar, get
from litestar.connection import Request
from litestar.di import NamedDependency, Provide
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import OpenAPIRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from agentops_sdk import __version__
from agentops_server.api.decoding import HubRequest, ValueKinds
from agentops_server.api.headers import proxy_middleware, security_headers
from agentops_server.api.problems import declare_problems, problem_details_plugin
from agentops_server.api.rate_limits import RateLimitMiddleware
from agentops_server.api.v1 import api_router
from agentops_server.auth.middleware import Authentication, Authenticator
from agentops_server.auth.oauth import OAuthProviders
from agentops_server.auth.supabase import SupabaseAuth
from agentops_server.backends import create_derived_work, create_mailer, create_rate_limiter
from agentops_server.backends.derived_work import DerivedWork
from agentops_server.backends.live import LiveUpdates, StreamTopic
from agentops_server.backends.stats_cache import create_stats_cache
from agentops_server.db.engine import create_async_db_engine
from agentops_server.db.migrate import is_current
from agentops_server.db.tenancy import TenantSession
from agentops_server.observability import (
    PrincipalLogContextMiddleware,
    RequestLoggingMiddleware,
    configure_logging,
    configure_sentry,
)
from agentops_server.refusals import Unavailable
from agentops_server.services.budgets.definitions import BUDGETS, BUDGETS_TOPIC, BudgetsChanged
from agentops_server.services.budgets.state import Clock, utc_now
from agentops_server.services.costs.prices import start_loading_catalog
from agentops_server.services.governance.approval_feed import APPROVALS, APPROVALS_TOPIC
from agentops_server.services.governance.approvals import ApprovalsChanged
from agentops_server.services.governance.control_sets import CONTROLS, CONTROLS_TOPIC
from agentops_server.services.governance.controls import ControlsChanged
from agentops_server.services.governance.policies import (
    POLICIES,
    POLICIES_TOPIC,
    PoliciesChanged,
)
from agentops_server.services.notifications.inbox import NOTIFICATIONS_TOPIC
from agentops_server.services.tasks import TaskContext, register_tasks
from agentops_server.settings import Settings
from agentops_server.web import template_config, web_router

__all__ = ["create_app"]

PUBLIC_PATHS = ["^/health$", "^/ready$", "^/schema"]
STREAM_TOPICS: tuple[StreamTopic, ...] = (
    CONTROLS_TOPIC,
    POLICIES_TOPIC,
    NOTIFICATIONS_TOPIC,
    APPROVALS_TOPIC,
    BUDGETS_TOPIC,
)
"""The topics of every org's live stream (:mod:`agentops_server.backends.live`)."""


@get("/health", sync_to_thread=False, tags=["operations"])
def health() -> dict[str, str]:
    """Liveness: the process is up and serving."""
    return {"status": "ok", "version": __version__}


@get("/ready", tags=["operations"])
async def ready(engine: NamedDependency[AsyncEngine]) -> dict[str, str]:
    """Readiness: the database answers and its schema is at the newest migration."""
    try:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
            current = await connection.run_sync(is_current)
    except Exception as exc:
        raise Unavailable("database_unavailable", f"The database is unreachable: {exc}") from exc
    if not current:
        raise Unavailable("migrations_pending", "Run `agentops-hub db upgrade`.")
    return {"status": "ready"}


class SchemaIndex(OpenAPIRenderPlugin):
    """``/schema``: a plain page linking the schema files. No script or asset from elsewhere."""

    def __init__(self) -> None:
        super().__init__(path="/", favicon="")

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        """The index page."""
        title = openapi_schema["info"]["title"]
        return (
            f"<!doctype html><html><head><meta charset='utf-8'><title>{title} API</title>"
            f"</head><body><h1>{title} API</h1><ul>"
            "<li><a href='/schema/openapi.json'>OpenAPI schema (JSON)</a></li>"
            "</ul></body></html>"
        ).encode()


def create_app(
    settings: Settings | None = None,
    *,
    derived_work: DerivedWork | None = None,
    stream_topics: Iterable[StreamTopic] | None = None,
    controls_changed: ControlsChanged | None = None,
    policies_changed: PoliciesChanged | None = None,
    approvals_changed: ApprovalsChanged | None = None,
    budgets_changed: BudgetsChanged | None = None,
    clock: Clock = utc_now,
    **litestar_options: Any,
) -> Litestar:
    """Build the hub's ASGI app from ``settings`` (default: from the environment).

    ``derived_work`` takes the notices of committed changes (default: the queue on Redis when
    ``redis_url`` is set, else an in-process runner, started and stopped with the app); every
    domain's tasks are registered on it, as the workers register them. ``stream_topics`` are the
    topics of the org streams of ``GET /api/v1/stream`` (default: :data:`STREAM_TOPICS`);
    ``controls_changed`` is told an org's id after each committed change of its controls or
    agent profiles (default: the ``controls`` topic of its stream is refreshed, so its SDKs get
    the change at once); ``policies_changed``, after each commit that changed its active policy
    set (default: its ``policies`` topic is refreshed); ``approvals_changed``, after each
    committed decision of its approval requests (default: its ``approvals`` topic is
    refreshed, so a waiting SDK hears the answer at once); ``budgets_changed``, after each
    committed change of its budgets (default: its ``budgets`` topic is refreshed); ``clock``
    is the time budgets' windows, leases and alerts are read at (a test's, to travel in
    time)."""
    settings = settings or Settings.from_env()
    configure_logging(settings)
    configure_sentry(settings)  # before Litestar(): its integration hooks into the constructor
    rate_limiter = create_rate_limiter(settings)
    engine = create_async_db_engine(
        settings.database_url, pool_size=settings.db_pool_size, tenant_isolation=True
    )
    mailer = create_mailer(settings)
    derived_work = derived_work or create_derived_work(settings)
    stats_cache = create_stats_cache(settings)
    live = LiveUpdates.from_settings(settings, engine)
    register_tasks(
        derived_work,
        TaskContext(engine, settings, mailer, stats_cache=stats_cache, live=live, clock=clock),
    )
    for topic in STREAM_TOPICS if stream_topics is None else stream_topics:
        live.register(topic)
    authenticator = Authenticator(
        engine, settings, rate_limiter, SupabaseAuth.from_settings(settings)
    )
    infrastructure = {
        "settings": settings,
        "engine": engine,
        "rate_limiter": rate_limiter,
        "mailer": mailer,
        "oauth_providers": OAuthProviders.from_settings(settings),  # validated now, used later
        "authenticator": authenticator,
        "derived_work": derived_work,
        "live": live,
        "stats_cache": stats_cache,
        "controls_changed": controls_changed or functools.partial(live.refresh, kind=CONTROLS),
        "policies_changed": policies_changed or functools.partial(live.refresh, kind=POLICIES),
        "approvals_changed": approvals_changed or functools.partial(live.refresh, kind=APPROVALS),
        "budgets_changed": budgets_changed or functools.partial(live.refresh, kind=BUDGETS),
        "clock": clock,
    }
    database = SQLAlchemyAsyncConfig(
        engine_instance=engine,
        session_dependency_key="db_session",
        session_config=AsyncSessionConfig(expire_on_commit=False, sync_session_class=TenantSession),
    )
    app = Litestar(
        route_handlers=[health, ready, api_router(), web_router(settings, engine)],
        plugins=[
            SQLAlchemyPlugin(config=database),
            problem_details_plugin(),
            ValueKinds(),
            live.channels,
        ],
        request_class=HubRequest,
        middleware=[
            *proxy_middleware(settings),
            RequestLoggingMiddleware(),
            DefineMiddleware(Authentication, authenticator=authenticator, exclude=PUBLIC_PATHS),
            PrincipalLogContextMiddleware(),
            RateLimitMiddleware(rate_limiter, settings),
        ],
        before_send=[security_headers(settings)],
        logging_config=None,  # configure_logging() set logging up; Litestar must not redo it
        on_startup=[
            derived_work.start,
            live.start,
            *([start_loading_catalog] if settings.pricing else []),
        ],
        on_shutdown=[live.close, derived_work.close, rate_limiter.close, stats_cache.close],
        request_max_body_size=settings.max_body_bytes,
        template_config=template_config(),
        openapi_config=OpenAPIConfig(
            title="AgentOps Hub",
            version=__version__,
            render_plugins=[SchemaIndex()],  # no page pulling scripts from a CDN
            components=Components(
                security_schemes={
                    "bearer": SecurityScheme(
                        type="http",
                        scheme="bearer",
                        description="An API key (`ak_…`) or an access token from "
                        "`POST /api/v1/auth/login`.",
                    )
                }
            ),
            security=[{"bearer": []}],
        ),
        dependencies={name: _provide(value) for name, value in infrastructure.items()},
        **litestar_options,
    )
    declare_problems(app)
    return app


def _provide(value: Any) -> Provide:
    """A dependency that is always ``value``: the app's infrastructure reaches handlers by
    injection, built once here."""
    return Provide(lambda: value, use_cache=True, sync_to_thread=False)
