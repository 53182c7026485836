"""Every error the hub returns is RFC 9457 ``application/problem+json`` with a stable ``code``.

Raise :class:`Problem` (a Litestar ``ProblemDetailsException``) from anywhere; the plugin built
by :func:`problem_details_plugin` also turns Litestar's own HTTP errors (validation, 401, 404,
405, 413...) and unexpected exceptions into problems with a code.
"""

from __future__ import annotations

import logging
from typing import Any

from litestar.exceptions import HTTPException, SerializationException, ValidationException
from litestar.plugins.problem_details import (
    ProblemDetailsConfig,
    ProblemDetailsException,
    ProblemDetailsPlugin,
)

__all__ = ["Problem", "problem_details_plugin"]

logger = logging.getLogger("agentops_server")

_CODES = {
    400: "bad_request",
    401: "invalid_api_key",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    500: "internal_error",
    503: "unavailable",
}


class Problem(ProblemDetailsException):
    """An error answer: ``Problem(404, "run_not_found", "no run 0190…")``."""

    def __init__(
        self,
        status_code: int,
        code: str,
        detail: str,
        *,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(
            detail=detail,
            status_code=status_code,
            headers=headers,
            title=code.replace("_", " ").capitalize(),
            type_=f"https://agentops-hub.dev/problems/{code}",
            extra={"code": code, **extra},
        )
        self.code = code


def problem_details_plugin() -> ProblemDetailsPlugin:
    """Problem details for our errors, Litestar's HTTP errors and anything unexpected."""
    return ProblemDetailsPlugin(
        ProblemDetailsConfig(
            exception_to_problem_detail_map={
                ValidationException: _from_validation,
                HTTPException: _from_http,
                Exception: _from_unexpected,
            }
        )
    )


def _from_validation(exc: ValidationException) -> Problem:
    errors = exc.extra if isinstance(exc.extra, list) else []
    return Problem(400, "validation_error", str(exc.detail), errors=errors)


def _from_http(exc: HTTPException) -> Problem:
    if isinstance(exc, Problem):
        return exc
    if isinstance(exc.__cause__, SerializationException):  # Litestar could not decode the body
        return Problem(400, "malformed_json", f"The body is not valid JSON: {exc.detail}")
    code = _CODES.get(exc.status_code, "http_error")
    return Problem(exc.status_code, code, str(exc.detail), headers=exc.headers)


def _from_unexpected(exc: Exception) -> Problem:
    logger.exception("unexpected error", exc_info=exc)
    return Problem(500, "internal_error", "The hub failed to handle this request.")
