"""The hub's settings: one typed object, read once from ``AGENTOPS_*`` environment variables.

========================  =================================  ===================================
setting                   environment variable               default
========================  =================================  ===================================
database_url              AGENTOPS_DATABASE_URL              ``sqlite:///agentops.db``
redis_url                 AGENTOPS_REDIS_URL                 None (in-process backends)
queue_name                AGENTOPS_QUEUE_NAME                ``agentops`` (the derived-work
                                                             queue on Redis)
secret_key                AGENTOPS_SECRET_KEY                random per process (set it!)
public_url                AGENTOPS_PUBLIC_URL                ``http://localhost:8000``
max_body_bytes            AGENTOPS_MAX_BODY_BYTES            16 MiB, after gzip decompression
max_batch_events          AGENTOPS_MAX_BATCH_EVENTS          10,000
db_pool_size              AGENTOPS_DB_POOL_SIZE              10
access_token_ttl          AGENTOPS_ACCESS_TOKEN_TTL          900 seconds
refresh_token_ttl         AGENTOPS_REFRESH_TOKEN_TTL         30 days, in seconds
rate_limit_org            AGENTOPS_RATE_LIMIT_ORG            ``6000/minute`` per org
rate_limit_key            AGENTOPS_RATE_LIMIT_KEY            ``1200/minute`` per API key or user
                                                             (requests other than ingest)
rate_limit_ingest         AGENTOPS_RATE_LIMIT_INGEST         ``6000000/minute`` events ingested
                                                             per API key (100,000/s)
rate_limit_login          AGENTOPS_RATE_LIMIT_LOGIN          ``10/minute`` per account
rate_limit_login_ip       AGENTOPS_RATE_LIMIT_LOGIN_IP       ``50/minute`` per client address
rate_limit_auth_failures  AGENTOPS_RATE_LIMIT_AUTH_FAILURES  ``60/minute`` failed
                                                             authentications per address
trusted_proxies           AGENTOPS_TRUSTED_PROXIES           none (addresses or networks,
                                                             comma-separated, whose
                                                             X-Forwarded-* are believed)
hsts_max_age              AGENTOPS_HSTS_MAX_AGE              one year, in seconds (0: off;
                                                             sent when public_url is https)
signup_open               AGENTOPS_SIGNUP_OPEN               ``true`` (``false``: only
                                                             invitations make accounts)
pricing                   AGENTOPS_PRICING                   ``true``: LLM spans are priced at
                                                             ingest (``false``: stored unpriced,
                                                             for comparison; see docs/costs.md)
rollups                   AGENTOPS_ROLLUPS                   ``true``: derived work keeps the
                                                             analytics' rollups (``false``: none
                                                             are made, for comparison; see
                                                             docs/analytics.md)
upkeep                    AGENTOPS_UPKEEP                    ``true``: the hub schedules its
                                                             span partitions and retention
                                                             itself (``false``: off, for an
                                                             outside scheduler running
                                                             ``agentops-hub jobs``)
upkeep_partitions         AGENTOPS_UPKEEP_PARTITIONS         ``0 */6 * * *`` (cron, UTC; a
                                                             sixth field is seconds): span
                                                             partitions made ahead and expired
                                                             ones dropped; also at start
upkeep_retention          AGENTOPS_UPKEEP_RETENTION          ``30 2 * * *`` (cron, UTC): every
                                                             org's retention applied
mail_url                  AGENTOPS_MAIL_URL                  ``console`` (or ``file:///dir``,
                                                             ``smtp://user:pass@host:port``)
mail_from                 AGENTOPS_MAIL_FROM                 ``AgentOps Hub <hub@localhost>``
webhooks_allow_private    AGENTOPS_WEBHOOKS_ALLOW_PRIVATE    ``false`` (``true``: webhooks may
                                                             reach private, loopback and
                                                             link-local addresses)
webhooks_attempts         AGENTOPS_WEBHOOKS_ATTEMPTS         5 tries per delivery
webhooks_backoff          AGENTOPS_WEBHOOKS_BACKOFF          2 seconds before the first retry,
                                                             doubling after (capped at 5 min)
webhooks_timeout          AGENTOPS_WEBHOOKS_TIMEOUT          10 seconds per delivery attempt
oauth_providers           AGENTOPS_OAUTH_PROVIDERS           None (JSON, see docs/identity.md)
supabase_url              AGENTOPS_SUPABASE_URL              None (Supabase Auth disabled)
supabase_jwt_secret       AGENTOPS_SUPABASE_JWT_SECRET       None (verify with JWKS instead)
supabase_audience         AGENTOPS_SUPABASE_AUDIENCE         ``authenticated``
stream_heartbeat          AGENTOPS_STREAM_HEARTBEAT          15 seconds of quiet before a
                                                             stream's heartbeat
stream_max_age            AGENTOPS_STREAM_MAX_AGE            600 seconds: a stream then ends
                                                             (the SDK resumes it at once)
stream_backlog            AGENTOPS_STREAM_BACKLOG            32 events unsent to one stream
                                                             before it is dropped (``resync``)
stream_watch_interval     AGENTOPS_STREAM_WATCH_INTERVAL     0.25 seconds between two reads of
                                                             the versions of streamed orgs
log_format                AGENTOPS_LOG_FORMAT                ``json`` (or ``console``)
log_level                 AGENTOPS_LOG_LEVEL                 ``INFO``
sentry_dsn                SENTRY_DSN                         None (Sentry disabled)
demo                      AGENTOPS_DEMO                      ``false`` (``true``: what
                                                             ``agentops-hub demo`` sets: its
                                                             one-time sign-in links work)
========================  =================================  ===================================

Database URLs: ``sqlite:///path.db`` or ``postgresql+psycopg://user@host/db``; the hub picks the
async driver itself (aiosqlite, psycopg's async mode).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import secrets
from collections.abc import Mapping
from typing import Any

from croniter import croniter  # type: ignore[import-untyped]  # SAQ's own; it ships no types

__all__ = ["DEFAULT_DATABASE_URL", "Settings"]

DEFAULT_DATABASE_URL = "sqlite:///agentops.db"
_ENV_NAMES = {"sentry_dsn": "SENTRY_DSN"}  # Sentry's own variable


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """Everything ``create_app()`` and the CLI need; see the module docstring."""

    database_url: str = DEFAULT_DATABASE_URL
    redis_url: str | None = None
    queue_name: str = "agentops"
    # Fields that hold secrets stay out of repr(): a settings object printed in a traceback or a
    # log line must not show them.
    secret_key: str = dataclasses.field(
        default_factory=lambda: secrets.token_urlsafe(32), repr=False
    )
    public_url: str = "http://localhost:8000"
    max_body_bytes: int = 16 * 1024 * 1024
    max_batch_events: int = 10_000
    db_pool_size: int = 10
    access_token_ttl: int = 900
    refresh_token_ttl: int = 30 * 24 * 3600
    rate_limit_org: str = "6000/minute"
    rate_limit_key: str = "1200/minute"
    rate_limit_ingest: str = "6000000/minute"
    rate_limit_login: str = "10/minute"
    rate_limit_login_ip: str = "50/minute"
    rate_limit_auth_failures: str = "60/minute"
    trusted_proxies: str = ""
    hsts_max_age: int = 365 * 24 * 3600
    signup_open: bool = True
    pricing: bool = True
    rollups: bool = True
    upkeep: bool = True
    upkeep_partitions: str = "0 */6 * * *"
    upkeep_retention: str = "30 2 * * *"
    mail_url: str = dataclasses.field(default="console", repr=False)
    mail_from: str = "AgentOps Hub <hub@localhost>"
    webhooks_allow_private: bool = False
    webhooks_attempts: int = 5
    webhooks_backoff: int = 2
    webhooks_timeout: int = 10
    oauth_providers: str | None = dataclasses.field(default=None, repr=False)
    supabase_url: str | None = None
    supabase_jwt_secret: str | None = dataclasses.field(default=None, repr=False)
    supabase_audience: str = "authenticated"
    stream_heartbeat: float = 15.0
    stream_max_age: float = 600.0
    stream_backlog: int = 32
    stream_watch_interval: float = 0.25
    log_format: str = "json"
    log_level: str = "INFO"
    sentry_dsn: str | None = None
    demo: bool = False

    def __post_init__(self) -> None:
        if not self.database_url.startswith(("sqlite", "postgresql")):
            raise ValueError(
                f"AGENTOPS_DATABASE_URL must be a sqlite:// or postgresql:// URL, "
                f"got {self.database_url!r}"
            )
        if self.log_format not in ("json", "console"):
            raise ValueError(f"log_format must be json or console, got {self.log_format!r}")
        for name in (
            "max_body_bytes",
            "max_batch_events",
            "db_pool_size",
            "access_token_ttl",
            "refresh_token_ttl",
            "webhooks_attempts",
            "webhooks_timeout",
            "stream_heartbeat",
            "stream_max_age",
            "stream_backlog",
            "stream_watch_interval",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")
        for name in ("upkeep_partitions", "upkeep_retention"):
            if not croniter.is_valid(getattr(self, name)):
                raise ValueError(f"{name} must be a cron expression, got {getattr(self, name)!r}")
        if self.webhooks_backoff < 0:
            raise ValueError(f"webhooks_backoff must be 0 or more, got {self.webhooks_backoff!r}")
        if self.hsts_max_age < 0:
            raise ValueError(f"hsts_max_age must be 0 or more, got {self.hsts_max_age!r}")
        for proxy in self.trusted_proxy_networks:
            try:
                ipaddress.ip_network(proxy, strict=False)
            except ValueError:
                raise ValueError(
                    f"AGENTOPS_TRUSTED_PROXIES: {proxy!r} is not an IP address or network"
                ) from None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read ``AGENTOPS_*`` variables, then apply ``overrides``."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            variable = _ENV_NAMES.get(field.name, f"AGENTOPS_{field.name.upper()}")
            raw = environ.get(variable, "").strip()
            if raw:
                values[field.name] = _parse(field.name, str(field.type), raw)
        values.update({key: value for key, value in overrides.items() if value is not None})
        return cls(**values)

    @property
    def is_sqlite(self) -> bool:
        """True for the embedded SQLite database."""
        return self.database_url.startswith("sqlite")

    @property
    def trusted_proxy_networks(self) -> list[str]:
        """``trusted_proxies`` as a list (empty: no proxy is believed)."""
        return [proxy.strip() for proxy in self.trusted_proxies.split(",") if proxy.strip()]

    @property
    def served_over_https(self) -> bool:
        """Whether the hub's public address is https (then answers carry HSTS)."""
        return self.public_url.lower().startswith("https://")


_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def _parse(name: str, kind: str, raw: str) -> Any:
    if kind == "int":
        return int(raw)
    if kind == "float":
        return float(raw)
    if kind == "bool":
        if raw.lower() not in _TRUE | _FALSE:
            raise ValueError(f"{name} must be true or false, got {raw!r}")
        return raw.lower() in _TRUE
    return raw
