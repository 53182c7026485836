"""What the hub raises when it refuses a request: the one error tree of the hub.

A refusal has a stable ``code`` and a clear ``detail``; its kind alone decides the HTTP status of
the problem+json answer (:mod:`agentops_server.api.problems`), so no resource brings a status
table of its own, and the code below the HTTP layer never builds an answer::

    raise Conflict("last_owner", "The org's last owner can be neither demoted nor removed.")

Refused                 400  the base: catch it to catch every refusal
├── Invalid             400  the request itself is wrong (a bad email, an unknown role)
├── Unauthenticated     401  the credential is wrong, used up or expired (a password, a token)
├── Forbidden           403  the caller may not do this here (role escalation, another team)
├── NotFound            404  no such thing in this org (another org's ids included)
├── Conflict            409  the current state forbids it (the last owner, a taken slug)
├── Gone                410  it existed but is over (a revoked or expired invitation)
├── TooLarge            413  over a size limit
├── Unsupported         415  a kind of content the hub does not take
├── Unprocessable       422  well-formed, but what it asks for is refused (a policy denies it)
├── RateLimited         429  too many requests or attempts (``Retry-After`` says how long)
├── UpstreamFailed      502  a service outside the hub answered wrongly (an OAuth provider)
└── Unavailable         503  a service the hub needs did not answer (nothing was changed)

A new kind of refusal is a subclass with its ``status``; a refusal with a code of its own is an
instance (or a subclass naming its code, like ``SlugTaken``), never a new status.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

__all__ = [
    "Conflict",
    "Forbidden",
    "Gone",
    "Invalid",
    "NotFound",
    "RateLimited",
    "Refused",
    "TooLarge",
    "Unauthenticated",
    "Unavailable",
    "Unprocessable",
    "UpstreamFailed",
    "Unsupported",
]


class Refused(Exception):
    """A refused request: ``extra`` adds fields to the problem answer, ``headers`` headers
    (``Retry-After``, ``WWW-Authenticate``)."""

    status: ClassVar[int] = 400
    """The HTTP status of every refusal of this kind."""

    def __init__(
        self, code: str, detail: str, *, headers: Mapping[str, str] | None = None, **extra: Any
    ) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.headers = dict(headers or {})
        self.extra = extra


class Invalid(Refused):
    """The request is malformed or names something that cannot be."""

    status = 400


class Unauthenticated(Refused):
    """The credential offered does not prove who the caller is (or no longer does)."""

    status = 401


class Forbidden(Refused):
    """The caller's permissions do not reach this far."""

    status = 403


class NotFound(Refused):
    """The org has no such thing (or it belongs to another org: the same answer)."""

    status = 404


class Conflict(Refused):
    """The current state of the org forbids the change."""

    status = 409


class Gone(Refused):
    """The thing existed but is no longer usable."""

    status = 410


class TooLarge(Refused):
    """The content is over its size limit."""

    status = 413


class Unsupported(Refused):
    """The content is of a kind the hub does not take."""

    status = 415


class Unprocessable(Refused):
    """The request is well-formed, but what it asks for is refused on its merits (an
    approval's edited arguments that the org's policy denies)."""

    status = 422


class RateLimited(Refused):
    """Too many requests or attempts; ``Retry-After`` says when to try again."""

    status = 429


class UpstreamFailed(Refused):
    """A service outside the hub that this request needed answered with an error."""

    status = 502


class Unavailable(Refused):
    """A service the hub depends on failed; nothing was changed, and a retry can succeed."""

    status = 503
