"""Service refusals as problem+json answers: one status per kind of refusal.

The ``/api/v1`` router sets ``exception_handlers = REFUSALS``, so a service's
:class:`~agentops_server.refusals.Refused` raised by any of its routes becomes a
:class:`~agentops_server.errors.Problem` with the same code and detail.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response
from litestar.types import ExceptionHandlersMap

from agentops_server.errors import Problem
from agentops_server.refusals import (
    Conflict,
    Forbidden,
    Gone,
    Invalid,
    NotFound,
    Refused,
    TooLarge,
    Unauthenticated,
    Unavailable,
    Unsupported,
)

__all__ = ["JSON_BODY_LIMIT", "REFUSALS", "problem_of"]

JSON_BODY_LIMIT = 64 * 1024
"""The largest JSON body the org, member, team and key routes take: beyond, 413
``payload_too_large`` before anything is parsed."""

_STATUS: dict[type[Refused], int] = {
    Refused: 400,
    Invalid: 400,
    Unauthenticated: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    Gone: 410,
    TooLarge: 413,
    Unsupported: 415,
    Unavailable: 503,
}


def problem_of(refusal: Refused) -> Problem:
    """The problem answer for ``refusal``."""
    status = next(_STATUS[kind] for kind in type(refusal).__mro__ if kind in _STATUS)
    return Problem(status, refusal.code, refusal.detail, **refusal.extra)


def _answer(request: Request[Any, Any, Any], refusal: Refused) -> Response[Any]:
    return problem_of(refusal).to_response(request)


REFUSALS: ExceptionHandlersMap = {Refused: _answer}
"""``exception_handlers`` answering services' refusals (set on the ``/api/v1`` router)."""
