"""Every error the hub answers is RFC 9457 ``application/problem+json`` with a stable ``code``.

- A :class:`~agentops_server.refusals.Refused` raised anywhere (a service, a guard, the
  authentication middleware, a controller) is answered by :func:`problem_details_plugin`'s
  handler with the status of its kind: no route or resource maps statuses of its own.
- Litestar's own HTTP errors (validation, 404, 405, 413...) and unexpected exceptions become
  problems with a code too.
- The OpenAPI schema declares them: :func:`problems` lists a route's own refusals
  (``responses=problems(Conflict("slug_taken", "when the slug is another org's"))``) and
  :func:`declare_problems` adds to every route those any route of its kind may answer (a
  malformed request, a missing credential, a rate limit...), each as ``application/problem+json``
  with the :class:`ProblemBody` schema.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Mapping
from typing import Any

from litestar import Litestar, Request, Response
from litestar.exceptions import HTTPException, SerializationException, ValidationException
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.datastructures import ResponseSpec
from litestar.plugins.problem_details import (
    ProblemDetailsConfig,
    ProblemDetailsException,
    ProblemDetailsPlugin,
)

from agentops_server.refusals import (
    Forbidden,
    Invalid,
    NotFound,
    RateLimited,
    Refused,
    TooLarge,
    Unauthenticated,
    Unavailable,
)

__all__ = [
    "AUTH_FAILURES",
    "JSON_BODY_LIMIT",
    "MEDIA_TYPE",
    "Problem",
    "ProblemBody",
    "THROTTLED",
    "declare_problems",
    "problem_answer",
    "problem_details_plugin",
    "problem_of",
    "problems",
]

logger = logging.getLogger("agentops_server")

MEDIA_TYPE = "application/problem+json"
JSON_BODY_LIMIT = 64 * 1024
"""The largest JSON body the org, member, team and key routes take: beyond, 413
``payload_too_large`` before anything is parsed."""

THROTTLED = RateLimited(
    "too_many_attempts", "too many attempts for this account or from this address; see Retry-After"
)
"""The declaration of a route that :class:`~agentops_server.backends.rate_limit.Throttle` limits."""
AUTH_FAILURES = RateLimited(
    "too_many_attempts",
    "too many credentials that were not authentic came from this address; see Retry-After",
)
"""The declaration of a route that counts
:class:`~agentops_server.backends.rate_limit.FailedAuthentications`."""

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
"""The code of each of Litestar's own HTTP errors."""


@dataclasses.dataclass(frozen=True, slots=True)
class ProblemBody:
    """An RFC 9457 problem: ``code`` is stable, ``detail`` says what to do."""

    type: str
    title: str
    status: int
    detail: str
    code: str


class Problem(ProblemDetailsException):
    """An error answer: ``Problem(404, "run_not_found", "no run 0190…")``. Code outside this
    module raises a :class:`~agentops_server.refusals.Refused` instead."""

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


def problem_of(refusal: Refused) -> Problem:
    """The problem answer for ``refusal``: its kind's status, its code, detail and headers."""
    return Problem(
        refusal.status,
        refusal.code,
        refusal.detail,
        headers=refusal.headers or None,
        **refusal.extra,
    )


def problem_answer(refusal: Refused, request: Request[Any, Any, Any]) -> Response[Any]:
    """``refusal`` as a response, for code that must answer rather than raise (a middleware)."""
    return problem_of(refusal).to_response(request)


def problem_details_plugin() -> ProblemDetailsPlugin:
    """Problem details for refusals, Litestar's HTTP errors and anything unexpected."""
    return ProblemDetailsPlugin(
        ProblemDetailsConfig(
            exception_to_problem_detail_map={
                Refused: problem_of,
                ValidationException: _from_validation,
                HTTPException: _from_http,
                Exception: _from_unexpected,
            }
        )
    )


def problems(*refusals: Refused) -> dict[int, ResponseSpec]:
    """The OpenAPI responses of a route's own refusals, each given as the refusal with the
    circumstance as its detail: ``problems(Conflict("slug_taken", "another org has the
    slug"))``. The status is the kind's; refusals of one status share an entry."""
    by_status: dict[int, list[str]] = {}
    for refusal in refusals:
        by_status.setdefault(refusal.status, []).append(f"`{refusal.code}`: {refusal.detail}")
    return {status: _response(lines) for status, lines in sorted(by_status.items())}


def declare_problems(app: Litestar, prefix: str = "/api/") -> None:
    """Add to each route under ``prefix`` the problems any route of its kind may answer, beside
    those it declares itself (:func:`problems`), before the OpenAPI schema is first made."""
    for route in app.routes:
        for handler in getattr(route, "route_handlers", ()):
            if isinstance(handler, HTTPRouteHandler) and route.path.startswith(prefix):
                handler.responses = _merged(handler.responses or {}, _common(handler, route.path))


def _common(handler: HTTPRouteHandler, path: str) -> list[Refused]:
    """What any route like ``handler`` may answer, whatever it does."""
    common: list[Refused] = [
        Invalid("validation_error", "a parameter or the body does not fit the schema"),
        Invalid("malformed_json", "the body is not JSON"),
    ]
    if not handler.opt.get("public"):
        common += [
            Unauthenticated("unauthenticated", "no credential, or one that proves nothing"),
            Forbidden("permission_denied", "the caller's role or key does not allow this"),
            RateLimited("rate_limited", "the caller or its org is over its request limit"),
            RateLimited("too_many_attempts", "too many credentials that were not authentic"),
            Unavailable(
                "identity_provider_unavailable",
                "a Supabase token, and Supabase's signing keys cannot be fetched now",
            ),
        ]
    if re.search(r"\{", path):
        common.append(NotFound("not_found", "the path names nothing of this org"))
    if handler.http_methods - {"GET", "HEAD", "OPTIONS"}:
        common.append(TooLarge("payload_too_large", "the body is over the route's limit"))
    return common


def _merged(declared: Mapping[int, ResponseSpec], common: list[Refused]) -> dict[int, ResponseSpec]:
    merged = dict(declared)
    for status, spec in problems(*common).items():
        held = merged.get(status)
        if held is None:
            merged[status] = spec
        elif held.media_type == MEDIA_TYPE:
            merged[status] = _response([held.description or "", spec.description or ""])
    merged.setdefault(
        500, _response(["`internal_error`: the hub failed (it is logged; nothing was changed)"])
    )
    return merged


def _response(lines: list[str]) -> ResponseSpec:
    return ResponseSpec(
        ProblemBody,
        description="; ".join(line for line in lines if line),
        media_type=MEDIA_TYPE,
        generate_examples=False,
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
