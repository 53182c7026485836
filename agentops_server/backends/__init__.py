"""Pluggable infrastructure, each with an embedded default and a real backend for production.

- :mod:`~agentops_server.backends.rate_limit`: rate limits, in the process or on Redis.
- :mod:`~agentops_server.backends.mailer`: email to the log, to ``.eml`` files, or over SMTP.
- :mod:`~agentops_server.backends.derived_work`: work derived from committed changes, run off
  the request path in the process (a queue on Redis next).
- :mod:`~agentops_server.backends.live`: the org streams of live updates, fanned out in the
  process or over Redis pub/sub, with a version watch for changes made elsewhere.

``create_app`` builds one of each from the settings and injects it where it is needed.
"""

from agentops_server.backends.derived_work import DerivedWork, InProcessRunner
from agentops_server.backends.mailer import Email, Mailer, create_mailer
from agentops_server.backends.rate_limit import (
    RateLimiter,
    RateLimitResult,
    create_rate_limiter,
)

__all__ = [
    "DerivedWork",
    "InProcessRunner",
    "Email",
    "Mailer",
    "RateLimitResult",
    "RateLimiter",
    "create_mailer",
    "create_rate_limiter",
]
