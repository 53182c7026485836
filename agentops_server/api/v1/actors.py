"""Who is acting in a request, for the audit log."""

from __future__ import annotations

from typing import Any

from litestar import Request

from agentops_server.auth.principal import Principal
from agentops_server.services.audit import Actor

__all__ = ["actor_of"]


def actor_of(request: Request[Any, Any, Any]) -> Actor:
    """The authenticated caller of ``request`` as an audit actor, with address and request id."""
    principal = request.scope.get("auth")
    if not isinstance(principal, Principal):
        raise TypeError("actor_of() needs an authenticated request")
    return Actor.of(principal, ip=client_ip(request), request_id=request_id(request))


def client_ip(request: Request[Any, Any, Any]) -> str | None:
    """The client's address as the server saw it."""
    return request.client.host if request.client else None


def request_id(request: Request[Any, Any, Any]) -> str | None:
    """The request id the logging middleware assigned (or the client sent)."""
    value = request.scope.get("state", {}).get("request_id") or request.headers.get("x-request-id")
    return str(value)[:64] if value else None
