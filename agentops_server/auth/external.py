"""The answers the API gives when an external identity (OAuth, Supabase) cannot act."""

from __future__ import annotations

from agentops_server.errors import Problem
from agentops_server.services.identities import (
    EmailNotVerified,
    EmailRequired,
    IdentityError,
    NoMembership,
    NotAMember,
    OrgRequired,
)

__all__ = ["identity_problem"]

_ANSWERS: dict[type[IdentityError], tuple[int, str]] = {
    EmailRequired: (403, "email_required"),
    EmailNotVerified: (403, "email_not_verified"),
    NotAMember: (403, "not_a_member"),
    NoMembership: (403, "no_membership"),
    OrgRequired: (400, "org_required"),
}


def identity_problem(exc: IdentityError) -> Problem:
    """The problem+json answer for ``exc``."""
    status, code = _ANSWERS[type(exc)]
    return Problem(status, code, str(exc))
