"""``/api/v1/auth``: sign-up (a new org and its owner) and sign-in, with a second factor.

Public: these routes run as nobody and are limited against brute force, per account and per
client address (``AGENTOPS_RATE_LIMIT_LOGIN`` and ``AGENTOPS_RATE_LIMIT_LOGIN_IP``): past either,
``429 too_many_attempts`` with ``Retry-After``. Each refusal changes nothing.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, Request, post
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.params import JSONBody
from sqlalchemy.ext.asyncio import AsyncSession

from agentops_server.api.problems import JSON_BODY_LIMIT, THROTTLED, problems
from agentops_server.api.v1.actors import client_of
from agentops_server.api.v1.openapi import ANYONE
from agentops_server.auth.guards import PUBLIC
from agentops_server.backends.rate_limit import FailedAuthentications, Throttle, account_key
from agentops_server.refusals import (
    Conflict,
    Forbidden,
    Invalid,
    Unauthenticated,
)
from agentops_server.services.identity import accounts
from agentops_server.services.identity.accounts import (
    MfaChallenge,
    SignedUp,
)
from agentops_server.services.identity.sessions import TokenPair
from agentops_server.settings import Settings
from agentops_server.values import Name, Text

__all__ = ["SignInController"]


class SignupForm(msgspec.Struct, forbid_unknown_fields=True):
    """A new org and its owner."""

    email: Text
    password: Text
    org_name: Name
    name: Name = Name("")
    org_slug: Text | None = None
    """Defaults to one made from ``org_name``."""


class LoginForm(msgspec.Struct, forbid_unknown_fields=True):
    """Email and password; ``org`` (id or slug) picks the org, by default the oldest one."""

    email: Text
    password: Text
    org: Text | None = None


class MfaLoginForm(msgspec.Struct, forbid_unknown_fields=True):
    """The ``mfa_token`` of the password step, and one code: a TOTP ``code`` or a
    ``recovery_code``."""

    mfa_token: Text
    code: Text | None = None
    recovery_code: Text | None = None


class SignInController(Controller):
    """Sign-up and sign-in."""

    path = "/auth"
    tags = ("auth",)
    request_max_body_size = JSON_BODY_LIMIT

    @post(
        "/signup",
        opt=PUBLIC,
        security=ANYONE,
        status_code=201,
        summary="Sign up: a new org, its owner and a session",
        responses=problems(
            Invalid("invalid_email", "the email is not an address"),
            Invalid(
                "weak_password",
                "the password is too short, repetitive or easy; the detail says why",
            ),
            Invalid("invalid_org_name", "the org name is blank"),
            Invalid("invalid_slug", "org_slug is not lower-case letters, digits and inner hyphens"),
            Conflict("email_taken", "an account with this email exists"),
            Conflict("slug_taken", "an org with this slug exists; send another org_slug"),
            Forbidden(
                "signup_closed", "AGENTOPS_SIGNUP_OPEN is false: accounts come by invitation only"
            ),
            THROTTLED,
        ),
    )
    async def signup(
        self,
        request: Request[Any, Any, State],
        db_session: NamedDependency[AsyncSession],
        settings: NamedDependency[Settings],
        throttle: NamedDependency[Throttle],
        data: JSONBody[SignupForm],
    ) -> SignedUp:
        """Make an org and its first user (its owner), signed in. Records ``org.created`` and
        ``member.added`` in the new org's audit log. A taken email answers 409 ``email_taken``
        (docs/decisions/0016)."""
        if not settings.signup_open:
            raise Forbidden(
                "signup_closed",
                "This hub makes accounts by invitation only: ask an admin of your org to invite "
                "you.",
            )
        await throttle.count("signup")
        return await accounts.signup(
            db_session,
            settings,
            email=data.email,
            password=data.password,
            name=data.name,
            org_name=data.org_name,
            org_slug=data.org_slug,
            client=client_of(request),
        )

    @post(
        "/login",
        opt=PUBLIC,
        security=ANYONE,
        status_code=200,
        summary="Sign in with email and password",
        responses=problems(
            Unauthenticated(
                "invalid_credentials",
                "the email or password is wrong (the same for an unknown email)",
            ),
            Forbidden("no_membership", "the user belongs to no org"),
            Forbidden("not_a_member", "the user is not a member of the org asked for"),
            THROTTLED,
        ),
    )
    async def login(
        self,
        request: Request[Any, Any, State],
        db_session: NamedDependency[AsyncSession],
        settings: NamedDependency[Settings],
        throttle: NamedDependency[Throttle],
        data: JSONBody[LoginForm],
    ) -> TokenPair | MfaChallenge:
        """Tokens for a session in ``org`` (by default the user's oldest org). A user with a
        second factor gets ``{"mfa_required": true, "mfa_token": …}`` instead: send it with a
        code to ``POST /auth/login/mfa`` within five minutes."""
        async with throttle.attempt("login", account_key(data.email)):
            return await accounts.sign_in(
                db_session,
                settings,
                email=data.email,
                password=data.password,
                org=data.org,
                client=client_of(request),
            )

    @post(
        "/login/mfa",
        opt=PUBLIC,
        security=ANYONE,
        status_code=200,
        summary="Finish signing in with a second-factor code",
        responses=problems(
            Invalid("mfa_code_required", "send exactly one of code and recovery_code"),
            Unauthenticated(
                "invalid_mfa_token",
                "the mfa_token is malformed, tampered with or for something else",
            ),
            Unauthenticated("mfa_token_expired", "more than five minutes since the password step"),
            Unauthenticated(
                "invalid_mfa_code",
                "the code or recovery code is wrong (or the recovery code is used)",
            ),
            Unauthenticated("mfa_code_reused", "this code was already used; wait for the next one"),
            THROTTLED,
        ),
    )
    async def login_mfa(
        self,
        *,
        request: Request[Any, Any, State],
        db_session: NamedDependency[AsyncSession],
        settings: NamedDependency[Settings],
        throttle: NamedDependency[Throttle],
        auth_failures: NamedDependency[FailedAuthentications],
        data: JSONBody[MfaLoginForm],
    ) -> TokenPair:
        """Trade the ``mfa_token`` of ``POST /auth/login`` and one code for tokens."""
        if (data.code is None) == (data.recovery_code is None):
            raise Invalid("mfa_code_required", "Send exactly one of code and recovery_code.")
        async with auth_failures.guard():
            pending = accounts.read_mfa_token(settings, data.mfa_token)
        async with throttle.attempt("mfa", pending.user_id.hex):
            return await accounts.finish_sign_in(
                db_session,
                settings,
                pending,
                code=data.code,
                recovery_code=data.recovery_code,
                client=client_of(request),
            )
