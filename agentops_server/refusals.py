"""What a service raises when it refuses a request: a stable ``code`` and a clear ``detail``.

The class says what kind of refusal it is; the API layer turns each kind into its HTTP status
(:mod:`agentops_server.api.problems`), so services never speak HTTP::

    raise Conflict("last_owner", "The org's last owner can be neither demoted nor removed.")

Refused
├── Invalid          the request itself is wrong (a bad email, an unknown role)
├── Unauthenticated  the credential is wrong, used up or expired (a password, a code, a token)
├── Forbidden        the caller may not do this here (role escalation, another team)
├── NotFound         no such thing in this org (another org's ids included)
├── Conflict         the current state forbids it (the last owner, a taken slug)
├── Gone             it existed but is over (a revoked or expired invitation)
├── TooLarge         over a size limit
├── Unsupported      a kind of content the hub does not take
└── Unavailable      a service the hub needs did not answer (nothing was changed)
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "Conflict",
    "Forbidden",
    "Gone",
    "Invalid",
    "NotFound",
    "Refused",
    "TooLarge",
    "Unauthenticated",
    "Unavailable",
    "Unsupported",
]


class Refused(Exception):
    """A request a service refuses; ``extra`` adds fields to the error answer."""

    def __init__(self, code: str, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.extra = extra


class Invalid(Refused):
    """The request is malformed or names something that cannot be."""


class Unauthenticated(Refused):
    """The credential offered does not prove who the caller is (or no longer does)."""


class Forbidden(Refused):
    """The caller's permissions do not reach this far."""


class NotFound(Refused):
    """The org has no such thing (or it belongs to another org: the same answer)."""


class Conflict(Refused):
    """The current state of the org forbids the change."""


class Gone(Refused):
    """The thing existed but is no longer usable."""


class TooLarge(Refused):
    """The content is over its size limit."""


class Unsupported(Refused):
    """The content is of a kind the hub does not take."""


class Unavailable(Refused):
    """A service the hub depends on failed; nothing was changed."""
