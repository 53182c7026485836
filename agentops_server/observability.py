"""The hub's logs and error reports.

- :func:`configure_logging`: structlog, configured by the hub itself. Every line on stderr is
  one JSON object (or a readable console line with ``AGENTOPS_LOG_FORMAT=console``), whether it
  was logged through structlog or the standard library (``agentops_server``, uvicorn, anything
  else): stdlib records go through structlog's ``ProcessorFormatter``.
- :class:`RequestLoggingMiddleware`: a request id per request (the caller's sane
  ``X-Request-ID``, or a new one), echoed in the answer and bound into every line logged while
  the request runs; one ``request`` line per request with method, path, status and duration
  (uvicorn's own access log is switched off: it prints query strings as they came).
- :class:`PrincipalLogContextMiddleware`: after authentication, binds ``org_id`` and
  ``key_id`` / ``user_id`` for the rest of the request.
- :func:`configure_sentry`: Sentry's Litestar integration when ``SENTRY_DSN`` is set.

Never logged: headers (``Authorization`` included), bodies, and query values whose names say
secret (token, key, password, secret, code, state); those are redacted in log fields and Sentry
events. The database engines hide statements' parameters from the errors they raise
(:mod:`agentops_server.db.engine`), so a failed statement is logged without what was bound.
"""

from __future__ import annotations

import logging
import re
import sys
import time
import uuid
from typing import TYPE_CHECKING, Any, TextIO, cast
from urllib.parse import parse_qsl, urlencode

import structlog
from litestar.datastructures import MutableScopeHeaders
from litestar.enums import ScopeType
from litestar.exceptions import HTTPException
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, HTTPScope, Message, Receive, Scope, Send

from agentops_sdk import __version__
from agentops_server.refusals import Refused
from agentops_server.settings import Settings

if TYPE_CHECKING:
    from sentry_sdk.types import Event, Hint

__all__ = [
    "PrincipalLogContextMiddleware",
    "RequestLoggingMiddleware",
    "configure_logging",
    "configure_sentry",
]

REQUEST_ID_HEADER = "X-Request-ID"
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_SECRET_NAME = re.compile(
    r"(?:^|[_-])(?:token|key|password|passwd|secret|code|state|authorization)$", re.IGNORECASE
)
_REDACTED = "[redacted]"

_access_log = structlog.stdlib.get_logger("agentops_server.access")


def configure_logging(settings: Settings) -> None:
    """Route every log line through structlog, at ``settings.log_level``, as JSON lines
    (``settings.log_format == "json"``) or console lines. Safe to call again: it replaces what
    an earlier call installed."""
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _redact_secret_fields,
    ]
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    renderer: list[structlog.typing.Processor] = (
        [structlog.dev.ConsoleRenderer()]
        if settings.log_format == "console"
        else [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
    )
    handler = _HubLogHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *renderer],
        )
    )
    root = logging.getLogger()
    for previous in [h for h in root.handlers if isinstance(h, _HubLogHandler)]:
        root.removeHandler(previous)
    root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
    for name in ("uvicorn", "uvicorn.error"):  # their own handlers would print plain text
        server_logger = logging.getLogger(name)
        server_logger.handlers.clear()
        server_logger.propagate = True
    # Uvicorn's access lines carry raw query strings (secrets included): ours replace them.
    uvicorn_access = logging.getLogger("uvicorn.access")
    uvicorn_access.handlers.clear()
    uvicorn_access.propagate = False


def configure_sentry(settings: Settings) -> None:
    """Report errors to Sentry when ``settings.sentry_dsn`` is set; otherwise do nothing.

    Call it before building the app: the Litestar integration hooks into ``Litestar()``.
    No personal data, no local variables (they may hold keys) and no bodies are sent.
    """
    if not settings.sentry_dsn:
        return
    import sentry_sdk
    from sentry_sdk.integrations.litestar import LitestarIntegration

    sentry_sdk.init(
        dsn=settings.sentry_dsn,
        release=f"agentops-hub@{__version__}",
        integrations=[LitestarIntegration()],
        send_default_pii=False,
        include_local_variables=False,
        max_request_body_size="never",
        before_send=_redact_sentry_query,
    )


class RequestLoggingMiddleware(ASGIMiddleware):
    """Gives each request an id and logs one ``request`` line when it is answered.

    Put it first, so it sees the answers of every middleware after it. Context variables are
    cleared at the start of each request, so nothing of one request leaks into the next.
    """

    scopes = (ScopeType.HTTP,)

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        """Bind the request id, run the request, log its line."""
        request_id = _request_id(scope)
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        status = 500

        async def send_with_request_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableScopeHeaders.from_message(message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        try:
            await next_app(scope, receive, send_with_request_id)
        except Exception as exc:
            # Raised by a middleware after this one (authentication's 401s): the app's exception
            # handlers answer it outside this middleware, so name the request in that answer too.
            if isinstance(exc, HTTPException):
                status = exc.status_code
                exc.headers = {**(exc.headers or {}), REQUEST_ID_HEADER: request_id}
            elif isinstance(exc, Refused):
                status = exc.status
                exc.headers[REQUEST_ID_HEADER] = request_id
            raise
        finally:
            _access_log.info(
                "request",
                method=cast("HTTPScope", scope)["method"],
                path=scope["path"],
                **_query_field(scope),
                status=status,
                duration_ms=round((time.perf_counter() - started) * 1000, 2),
            )


class PrincipalLogContextMiddleware(ASGIMiddleware):
    """Binds the caller's ``org_id`` and ``key_id`` or ``user_id`` into the log context.

    Put it right after authentication; requests without ``scope["auth"]`` pass untouched.
    """

    scopes = (ScopeType.HTTP,)

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        """Bind who is calling, then run the request."""
        principal = scope.get("auth")
        fields = {
            name: str(value)
            for name in ("org_id", "key_id", "user_id")
            if (value := getattr(principal, name, None)) is not None
        }
        structlog.contextvars.bind_contextvars(**fields)
        await next_app(scope, receive, send)


class _HubLogHandler(logging.StreamHandler[TextIO]):
    """The handler :func:`configure_logging` installs, so a later call can replace it."""


def _request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            candidate = value.decode("latin-1")
            if _SANE_REQUEST_ID.fullmatch(candidate):
                return candidate
    return uuid.uuid4().hex


def _redact_query(query: str) -> str:
    return urlencode(
        [
            (name, _REDACTED if _SECRET_NAME.search(name) else value)
            for name, value in parse_qsl(query, keep_blank_values=True)
        ]
    )


def _query_field(scope: Scope) -> dict[str, str]:
    query = scope["query_string"].decode("latin-1")
    return {"query": _redact_query(query)} if query else {}


def _redact_secret_fields(
    _: Any, __: str, event_dict: structlog.typing.EventDict
) -> structlog.typing.EventDict:
    for name in event_dict:
        if _SECRET_NAME.search(name):
            event_dict[name] = _REDACTED
    return event_dict


def _redact_sentry_query(event: Event, _: Hint) -> Event:
    request = event.get("request")
    if request and isinstance(query := request.get("query_string"), str):
        request["query_string"] = _redact_query(query)
    return event
