"""How the pages answer a refusal: a person is sent to sign in, or shown what went wrong.

The JSON API answers problem+json (:mod:`agentops_server.api.problems`); a page answers with
the same status and code, as HTML: 401 becomes a redirect to the sign-in page (back to the page
afterwards), a refused CSRF token a 403 page that says to reload.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from litestar import Request, Response
from litestar.exceptions import HTTPException, PermissionDeniedException
from litestar.response import Redirect, Template
from litestar.types import ExceptionHandlersMap

from agentops_server.refusals import Refused, Unauthenticated

__all__ = ["EXCEPTION_HANDLERS", "sign_in_path"]


def sign_in_path(next_path: str) -> str:
    """The sign-in page, coming back to ``next_path`` (a path of this hub) afterwards."""
    return f"/sign-in?next={quote(next_path, safe='/')}"


def _refused(request: Request[Any, Any, Any], exc: Refused) -> Response[Any]:
    if isinstance(exc, Unauthenticated):
        back = request.url.path if request.method == "GET" else "/"
        return Redirect(sign_in_path(back), status_code=303)
    return _error_page(exc.status, exc.code, exc.detail)


def _csrf(_: Request[Any, Any, Any], exc: PermissionDeniedException) -> Response[Any]:
    return _error_page(
        exc.status_code,
        "csrf_failed",
        "The form's security token is missing or stale. Reload the page and try again.",
    )


def _http(_: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    return _error_page(exc.status_code, "http_error", str(exc.detail))


def _error_page(status: int, code: str, detail: str) -> Template:
    return Template(
        template_name="error.html",
        context={"status": status, "code": code, "detail": detail},
        status_code=status,
    )


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    Refused: _refused,
    PermissionDeniedException: _csrf,
    HTTPException: _http,
}
"""The pages' exception handlers (they take the place of the API's problem answers)."""
