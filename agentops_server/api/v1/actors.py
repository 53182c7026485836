"""Who is acting in a request, and from where: for the audit log, sessions and rate limits."""

from __future__ import annotations

import uuid
from typing import Any

from litestar import Request

from agentops_server.security.principal import Principal
from agentops_server.services.audit import Actor
from agentops_server.services.identity.accounts import Client

__all__ = ["actor_of", "client_ip", "client_of", "request_id", "user_id_of"]


def actor_of(request: Request[Any, Any, Any]) -> Actor:
    """The authenticated caller of ``request`` as an audit actor, with address and request id."""
    principal = request.scope.get("auth")
    if not isinstance(principal, Principal):
        raise TypeError("actor_of() needs an authenticated request")
    return Actor.of(principal, ip=client_ip(request), request_id=request_id(request))


def client_of(request: Request[Any, Any, Any]) -> Client:
    """Where ``request`` comes from (address, user agent, request id), signed in or not."""
    return Client(
        ip=client_ip(request),
        user_agent=request.headers.get("user-agent"),
        request_id=request_id(request),
    )


def user_id_of(principal: Principal) -> uuid.UUID:
    """The person behind ``principal``, on a route that needs ``account:self``."""
    # account:self is a person's permission: no API key holds it, so there is always a user.
    assert principal.user_id is not None, "account:self is a person's permission"
    return principal.user_id


def client_ip(request: Request[Any, Any, Any]) -> str | None:
    """The client's address as the server saw it."""
    return request.client.host if request.client else None


def request_id(request: Request[Any, Any, Any]) -> str | None:
    """The request id the logging middleware assigned (or the client sent)."""
    value = request.scope.get("state", {}).get("request_id") or request.headers.get("x-request-id")
    return str(value)[:64] if value else None
