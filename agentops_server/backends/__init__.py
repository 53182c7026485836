"""Pluggable infrastructure, each with an embedded default and a real backend for production.

- :mod:`~agentops_server.backends.rate_limit`: rate limits, in the process or on Redis.
- :mod:`~agentops_server.backends.mailer`: email to the log, to ``.eml`` files, or over SMTP.
- :mod:`~agentops_server.backends.derived_work`: work derived from committed changes, run off
  the request path in the process, or on Redis (:mod:`~agentops_server.backends.saq_queue`)
  with a durable record (:mod:`~agentops_server.backends.outbox`).
- :mod:`~agentops_server.backends.live`: the org streams of live updates, fanned out in the
  process or over Redis pub/sub, with a version watch for changes made elsewhere.

``create_app`` builds one of each from the settings and injects it where it is needed.
"""

from agentops_server.backends.derived_work import DerivedWork, InProcessRunner, Notice
from agentops_server.backends.mailer import Email, Mailer, create_mailer
from agentops_server.backends.outbox import Outbox
from agentops_server.backends.rate_limit import (
    RateLimiter,
    RateLimitResult,
    create_rate_limiter,
)
from agentops_server.backends.saq_queue import SaqQueue
from agentops_server.settings import Settings

__all__ = [
    "DerivedWork",
    "Email",
    "InProcessRunner",
    "Mailer",
    "Notice",
    "Outbox",
    "RateLimitResult",
    "RateLimiter",
    "SaqQueue",
    "create_derived_work",
    "create_mailer",
    "create_rate_limiter",
]


def create_derived_work(settings: Settings) -> DerivedWork:
    """The queue on Redis when ``redis_url`` is set (run by ``agentops-hub worker``), else the
    runner in the hub process."""
    if settings.redis_url is None:
        return InProcessRunner()
    return SaqQueue(settings.redis_url, Outbox(settings.database_url), name=settings.queue_name)
